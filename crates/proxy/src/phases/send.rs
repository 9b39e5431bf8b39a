//! Phase 6, send: hop-by-hop headers dropped, the body sent whole (so it is exactly what was
//! scanned), an uncompressed answer asked for when it will be scrubbed, and the request sent to
//! exactly the addresses the policy checked ([`crate::upstream`], which never follows a
//! redirect). The upstream's own hop-by-hop headers are dropped from its answer.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request, header};
use http_body_util::Full;
use hyper::body::Incoming;

use super::Refusal;
use super::inject::Injected;
use crate::audit::Exchange;
use crate::upstream::{Destination, Upstream};

/// The upstream's answer, and what the record says about the exchange.
#[derive(Debug)]
pub(crate) struct Sent<B = Incoming> {
    pub(crate) parts: http::response::Parts,
    pub(crate) body: B,
    pub(crate) exchange: Exchange,
}

pub(crate) async fn send(
    upstream: &Upstream,
    dest: &Destination,
    mut parts: http::request::Parts,
    body: Bytes,
    injected: &Injected,
) -> Result<Sent, Refusal> {
    prepare(&mut parts.headers, !injected.scrub.is_empty());
    let request_bytes = body.len() as u64;
    let upstream_req = Request::from_parts(parts, Full::new(body));
    let mut exchange = Exchange {
        credentials: injected.credentials.clone(),
        request_bytes,
        upstream: None,
    };
    let (resp, addr) = match upstream.send(dest, upstream_req).await {
        Ok(r) => r,
        Err(e) => return Err(Refusal::upstream(e.to_string()).with(exchange)),
    };
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    exchange.upstream = Some(addr);
    Ok(Sent {
        parts,
        body,
        exchange,
    })
}

/// The request head as it leaves: no hop-by-hop headers, no `Content-Length` or `Expect` (the
/// body is sent whole), and `Accept-Encoding: identity` when the answer will be scrubbed.
fn prepare(headers: &mut HeaderMap, scrubbing: bool) {
    strip_hop_by_hop(headers);
    headers.remove(header::CONTENT_LENGTH);
    headers.remove(header::EXPECT);
    if scrubbing {
        // Ask for an uncompressed answer so scrubbing stays cheap (a compressed one is still
        // decompressed and scrubbed, see the scrub phase).
        headers.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("identity"),
        );
    }
}

const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "proxy-connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use http::StatusCode;

    use super::*;
    use crate::phases::Answer;
    use crate::scan::ScrubSet;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn hop_by_hop_and_framing_headers_do_not_leave() {
        let mut h = headers(&[
            ("connection", "keep-alive, x-private"),
            ("x-private", "dropped because Connection names it"),
            ("proxy-authorization", "Basic abc"),
            ("te", "trailers"),
            ("content-length", "3"),
            ("expect", "100-continue"),
            ("accept-encoding", "gzip"),
            ("x-kept", "1"),
        ]);
        prepare(&mut h, false);
        let names: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["accept-encoding", "x-kept"]);
        assert_eq!(h[header::ACCEPT_ENCODING], "gzip");
        prepare(&mut h, true);
        assert_eq!(h[header::ACCEPT_ENCODING], "identity");
    }

    #[tokio::test]
    async fn a_failed_upstream_is_a_502_that_records_what_was_injected() {
        // A port nothing listens on (bound, then closed).
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let tls = rustls::ClientConfig::builder_with_provider(crate::crypto_provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        let upstream = Upstream::new(tls, Duration::from_secs(2), Duration::from_secs(1), 1);
        let dest = Destination {
            host: "plain.example.test".into(),
            port: addr.port(),
            addrs: vec![addr],
            tls: false,
        };
        let (parts, ()) = Request::post("/x").body(()).unwrap().into_parts();
        let injected = Injected {
            credentials: vec!["HDR".into()],
            scrub: Arc::new(ScrubSet::new(&[])),
        };
        let r = send(
            &upstream,
            &dest,
            parts,
            Bytes::from_static(b"hello"),
            &injected,
        )
        .await
        .unwrap_err();
        assert_eq!(r.status, StatusCode::BAD_GATEWAY);
        assert_eq!(r.answer, Answer::Upstream);
        assert!(
            r.reason
                .starts_with(&format!("connecting to {addr} failed"))
        );
        assert_eq!(r.exchange.credentials, ["HDR"]);
        assert_eq!(r.exchange.request_bytes, 5);
        assert_eq!(r.exchange.upstream, None);
    }
}
