//! Against a real TLS server on loopback (which the policy refuses unless allowed).

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;

struct Server {
    port: u16,
    roots: tempfile::NamedTempFile,
}

/// Serves `/doc` (JSON, max-age 60), `/big` (2 MiB), `/slow` (never answers), `/moved` (302 to
/// `/doc`), anything else 404 — over TLS with a fresh CA written to `roots`.
async fn server() -> Server {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf_params =
        rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
    let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();
    let mut roots = tempfile::NamedTempFile::new().unwrap();
    roots.write_all(ca.pem().as_bytes()).unwrap();

    let tls = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut head = vec![0; 4096];
                let n = tls.read(&mut head).await.unwrap_or(0);
                let request = String::from_utf8_lossy(&head[..n]);
                let path = request.split(' ').nth(1).unwrap_or("").to_owned();
                let (status, extra, body) = match path.as_str() {
                    "/doc" => (
                        "200 OK",
                        "Cache-Control: max-age=60\r\n",
                        r#"{"a":1}"#.into(),
                    ),
                    "/big" => ("200 OK", "", format!("\"{}\"", "x".repeat(2 << 20))),
                    "/slow" => {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        return;
                    }
                    "/moved" => ("302 Found", "Location: /doc\r\n", String::new()),
                    _ => ("404 Not Found", "", String::new()),
                };
                let response = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(response.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    Server { port, roots }
}

fn url(s: &str) -> url::Url {
    s.parse().unwrap()
}

const SECOND: Duration = Duration::from_secs(1);

#[tokio::test]
async fn loopback_is_refused_unless_allowed() {
    let server = server().await;
    let strict = Outbound::new(vec![], Some(server.roots.path())).unwrap();
    for target in [
        format!("https://127.0.0.1:{}/doc", server.port),
        format!("https://localhost:{}/doc", server.port),
    ] {
        let err = strict
            .get_json(&url(&target), 1024, 5 * SECOND)
            .await
            .unwrap_err();
        assert!(
            matches!(err, OutboundError::Refused { why, .. } if why.contains("loopback")),
            "{target}: {err}"
        );
    }
    let allowed = Outbound::new(
        vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()],
        Some(server.roots.path()),
    )
    .unwrap();
    let doc = allowed
        .get_json(
            &url(&format!("https://localhost:{}/doc", server.port)),
            1024,
            5 * SECOND,
        )
        .await
        .unwrap();
    assert_eq!(doc.value, serde_json::json!({"a": 1}));
    assert_eq!(doc.max_age, Some(Duration::from_secs(60)));
}

#[tokio::test]
async fn size_time_redirects_scheme_and_trust_are_bounded() {
    let server = server().await;
    let allow = || vec!["127.0.0.1/32".parse().unwrap()];
    let outbound = Outbound::new(allow(), Some(server.roots.path())).unwrap();
    let at = |path: &str| url(&format!("https://127.0.0.1:{}{path}", server.port));

    let err = outbound
        .get_json(&at("/big"), 64 * 1024, 5 * SECOND)
        .await
        .unwrap_err();
    assert!(matches!(err, OutboundError::TooLarge(_)), "{err}");
    let err = outbound
        .get_json(&at("/slow"), 1024, SECOND)
        .await
        .unwrap_err();
    assert!(matches!(err, OutboundError::Timeout(_)), "{err}");
    let err = outbound
        .get_json(&at("/moved"), 1024, 5 * SECOND)
        .await
        .unwrap_err();
    assert!(matches!(err, OutboundError::Status(302)), "{err}");
    let err = outbound
        .get_json(
            &url(&format!("http://127.0.0.1:{}/doc", server.port)),
            1024,
            5 * SECOND,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, OutboundError::NotHttps), "{err}");

    // Without the test CA the server's certificate is not trusted.
    let untrusting = Outbound::new(allow(), None).unwrap();
    let err = untrusting
        .get_json(&at("/doc"), 1024, 5 * SECOND)
        .await
        .unwrap_err();
    assert!(matches!(err, OutboundError::Unreachable { .. }), "{err}");
}

#[test]
fn cache_lifetime_is_read_from_cache_control() {
    let headers = |v: &str| {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(reqwest::header::CACHE_CONTROL, v.parse().unwrap());
        h
    };
    assert_eq!(
        max_age(&headers("public, max-age=300")),
        Some(Duration::from_secs(300))
    );
    assert_eq!(max_age(&headers("max-age=300, no-store")), None);
    assert_eq!(max_age(&headers("private")), None);
}
