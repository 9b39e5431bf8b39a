//! Real components for the proxy tests: a recording HTTPS upstream on loopback with its own test
//! CA, a proxy per sandbox on loopback, a reqwest client behind it, and a raw TLS tunnel for the
//! tricks a well-behaved client never does.
#![allow(dead_code)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use gig_policy::EgressPolicy;
use gig_proxy::*;
use http::{Request, Response, Version};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::client::TlsStream;
use tokio_util::sync::CancellationToken;

pub const SECRET_HEADER: &str = "sk-real-header-secret-0123456789abcdef";
pub const SECRET_QUERY: &str = "real-query-secret/with+odd=chars-42";
pub const SECRET_BASIC: &str = "real-basic-password-abcdefghijklmnop";
pub const SECRET_PLAIN: &str = "real-plain-http-secret-0987654321";

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A CA for test upstreams (not the proxy's runtime CA).
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pub der: CertificateDer<'static>,
}

impl TestCa {
    pub fn new() -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        }
    }

    pub fn server_config(&self, names: &[&str], alpn: &[&[u8]]) -> rustls::ServerConfig {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        // A subject of its own: with rcgen's default (the CA's too), OpenSSL-based clients
        // (mitmproxy in the bench) take the leaf for self-signed.
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "test upstream");
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .unwrap();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        config
    }
}

#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    pub version: Version,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
}

/// An upstream that records every request it gets and answers by path:
/// `/echo` echoes credentials back in headers and a chunked body, `/gzip` the same gzipped,
/// `/redirect` redirects to a host no policy allows, anything else says `ok`.
pub struct Upstream {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    cancel: CancellationToken,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl Upstream {
    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
    pub fn last(&self) -> Seen {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("the upstream saw no request")
    }

    pub async fn https(ca: &TestCa, alpn: &[&[u8]]) -> Self {
        let names = [
            "api.example.test",
            "other.example.test",
            "*.wild.example.test",
            "127.0.0.1",
        ];
        let config = Arc::new(ca.server_config(&names, alpn));
        Self::start(Some(tokio_rustls::TlsAcceptor::from(config))).await
    }

    pub async fn plain() -> Self {
        Self::start(None).await
    }

    async fn start(tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let cancel = CancellationToken::new();
        let (seen2, cancel2) = (seen.clone(), cancel.clone());
        tokio::spawn(async move {
            loop {
                let (tcp, _) = tokio::select! {
                    _ = cancel2.cancelled() => return,
                    a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
                };
                let seen = seen2.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| handle(seen.clone(), req));
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    match tls {
                        Some(acceptor) => {
                            let Ok(stream) = acceptor.accept(tcp).await else {
                                return;
                            };
                            let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                        }
                        None => {
                            let _ = builder.serve_connection(TokioIo::new(tcp), svc).await;
                        }
                    }
                });
            }
        });
        Upstream { addr, seen, cancel }
    }
}

type TestBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

async fn handle(
    seen: Arc<Mutex<Vec<Seen>>>,
    req: Request<Incoming>,
) -> Result<Response<TestBody>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    seen.lock().unwrap().push(Seen {
        method: parts.method.to_string(),
        uri: parts.uri.to_string(),
        version: parts.version,
        headers: parts.headers.clone(),
        body: body.clone(),
    });
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_default()
    };
    let echo = format!(
        "auth={};key={};query={};body={}",
        header("authorization"),
        header("x-api-key"),
        parts.uri.query().unwrap_or(""),
        String::from_utf8_lossy(&body)
    );
    let mut resp = Response::builder()
        .header("x-echo-auth", header("authorization"))
        .header("x-echo-query", parts.uri.query().unwrap_or(""));
    let payload = match parts.uri.path() {
        "/echo" => echo.into_bytes(),
        "/gzip" => {
            resp = resp.header("content-encoding", "gzip");
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            gz.write_all(echo.as_bytes()).unwrap();
            gz.finish().unwrap()
        }
        "/redirect" => {
            let r = resp
                .status(302)
                .header("location", "https://evil.example.test/steal")
                .body(Full::new(Bytes::new()).boxed())
                .unwrap();
            return Ok(r);
        }
        _ => {
            return Ok(resp
                .body(Full::new(Bytes::from_static(b"ok")).boxed())
                .unwrap());
        }
    };
    // Small chunks, so every echoed secret is split across frames (chunked on HTTP/1.1).
    let frames: Vec<Result<Frame<Bytes>, Infallible>> = payload
        .chunks(5)
        .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
        .collect();
    Ok(resp
        .body(StreamBody::new(futures::stream::iter(frames)).boxed())
        .unwrap())
}

/// Collects audit events.
#[derive(Default)]
pub struct Audit(pub Mutex<Vec<AuditEvent>>);

impl AuditSink for Audit {
    fn record(&self, event: AuditEvent) {
        self.0.lock().unwrap().push(event);
    }
}

impl Audit {
    pub fn events(&self) -> Vec<AuditEvent> {
        self.0.lock().unwrap().clone()
    }
    pub fn last(&self) -> AuditEvent {
        self.events().last().cloned().expect("no audit event")
    }
}

pub struct ProxyUnderTest {
    pub proxy: EgressProxy,
    pub audit: Arc<Audit>,
}

pub fn resolver() -> StaticResolver {
    let lo: IpAddr = "127.0.0.1".parse().unwrap();
    let mut r = StaticResolver::new();
    for name in [
        "api.example.test",
        "other.example.test",
        "wild.example.test",
        "badwild.example.test",
        "a.wild.example.test",
        "evil.example.test",
        "wrongname.example.test",
        "plain.example.test",
        "loop.example.test",
    ] {
        r = r.insert(name, [lo]);
    }
    r.insert("loopback2.example.test", ["127.0.0.2".parse().unwrap()])
        .insert("private.example.test", ["10.0.0.5".parse().unwrap()])
        .insert("meta.example.test", ["169.254.169.254".parse().unwrap()])
        .insert(
            "mixed.example.test",
            ["127.0.0.1".parse().unwrap(), "192.168.1.1".parse().unwrap()],
        )
}

pub fn start_proxy(ca: &TestCa, limits: ProxyLimits) -> ProxyUnderTest {
    let audit = Arc::new(Audit::default());
    let secrets = StaticSecrets::new()
        .with("OPENAI_API_KEY", SECRET_HEADER)
        .with("MAPS_KEY", SECRET_QUERY)
        .with("BASIC_PW", SECRET_BASIC)
        .with("PLAIN_KEY", SECRET_PLAIN);
    let config = ProxyConfig {
        extra_roots: vec![ca.der.clone()],
        public_roots: false,
        resolver: Arc::new(resolver()),
        limits,
    };
    let proxy = EgressProxy::new(
        RuntimeCa::generate().unwrap(),
        config,
        Arc::new(secrets),
        audit.clone(),
    )
    .unwrap();
    ProxyUnderTest { proxy, audit }
}

/// The policy most tests use: the upstream's names on its port, and four credentials.
pub fn policy(upstream_port: u16, extra_rules: &[String]) -> EgressPolicy {
    let mut allow: Vec<String> = [
        "api.example.test",
        "other.example.test",
        "*.wild.example.test",
        "wrongname.example.test",
        "loopback2.example.test",
        "private.example.test",
        "meta.example.test",
        "mixed.example.test",
    ]
    .iter()
    .map(|h| format!("{h}:{upstream_port}"))
    .collect();
    allow.extend(extra_rules.iter().cloned());
    let credentials = serde_json::json!([
        {"env": "OPENAI_API_KEY", "hosts": ["api.example.test"],
         "inject": {"type": "header", "name": "Authorization", "template": "Bearer {}"}},
        {"env": "MAPS_KEY", "hosts": ["api.example.test"], "inject": {"type": "query", "param": "key"}},
        {"env": "BASIC_PW", "hosts": ["other.example.test"], "inject": {"type": "basic", "username": "svc"}},
        {"env": "PLAIN_KEY", "hosts": ["plain.example.test"],
         "inject": {"type": "header", "name": "X-Api-Key", "template": "{}"}},
    ]);
    EgressPolicy {
        allow: allow.iter().map(|r| r.parse().unwrap()).collect(),
        allow_addresses: vec!["127.0.0.1/32".parse().unwrap()],
        credentials: serde_json::from_value(credentials).unwrap(),
    }
}

pub fn placeholders() -> HashMap<String, String> {
    ["OPENAI_API_KEY", "MAPS_KEY", "BASIC_PW", "PLAIN_KEY"]
        .iter()
        .map(|e| (e.to_string(), new_placeholder()))
        .collect()
}

/// One sandbox listener on loopback, served until dropped.
pub struct Sandbox {
    pub addr: SocketAddr,
    pub egress: Arc<SandboxEgress>,
    pub placeholders: HashMap<String, String>,
    cancel: CancellationToken,
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl Sandbox {
    pub async fn start(
        proxy: &EgressProxy,
        name: &str,
        policy: EgressPolicy,
        placeholders: HashMap<String, String>,
    ) -> Self {
        let egress = Arc::new(SandboxEgress::new(name, policy, placeholders.clone()).unwrap());
        Self::serve(proxy, egress, placeholders).await
    }

    pub async fn serve(
        proxy: &EgressProxy,
        egress: Arc<SandboxEgress>,
        placeholders: HashMap<String, String>,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cancel = CancellationToken::new();
        let (p, e, c) = (proxy.clone(), egress.clone(), cancel.clone());
        tokio::spawn(async move { p.serve(listener, e, c).await });
        Sandbox {
            addr,
            egress,
            placeholders,
            cancel,
        }
    }

    pub fn ph(&self, env: &str) -> String {
        self.placeholders[env].clone()
    }

    /// reqwest behind this sandbox's proxy, trusting only the runtime CA.
    pub fn client(&self, proxy: &EgressProxy, http1: bool) -> reqwest::Client {
        let ca = reqwest::Certificate::from_pem(proxy.ca().cert_pem().as_bytes()).unwrap();
        let mut b = reqwest::Client::builder()
            .proxy(reqwest::Proxy::all(format!("http://{}", self.addr)).unwrap())
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30));
        if http1 {
            b = b.http1_only();
        }
        b.build().unwrap()
    }

    /// A raw CONNECT; returns the proxy's status line code, headers+body text, and the stream.
    pub async fn connect(&self, target: &str, extra_headers: &str) -> (u16, String, TcpStream) {
        let mut tcp = TcpStream::connect(self.addr).await.unwrap();
        tcp.write_all(
            format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n{extra_headers}\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
        let mut reader = BufReader::new(tcp);
        let (status, text) = read_response(&mut reader, true).await;
        (status, text, reader.into_inner())
    }

    /// CONNECT to `target`, then TLS with `sni`, trusting the runtime CA.
    pub async fn tunnel(
        &self,
        proxy: &EgressProxy,
        target: &str,
        sni: &str,
        alpn: &[&[u8]],
    ) -> std::io::Result<TlsStream<TcpStream>> {
        let (status, text, tcp) = self.connect(target, "").await;
        assert_eq!(status, 200, "CONNECT {target} failed: {text}");
        tls_connect(proxy, tcp, sni, alpn).await
    }
}

pub async fn tls_connect(
    proxy: &EgressProxy,
    tcp: TcpStream,
    sni: &str,
    alpn: &[&[u8]],
) -> std::io::Result<TlsStream<TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(proxy.ca().cert_der().clone()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from(sni.to_string()).unwrap(), tcp)
        .await
}

/// Reads one HTTP/1.1 response (Content-Length or chunked); returns status and head+body text.
/// `head_only` stops after the head (for CONNECT's 200).
pub async fn read_response<R: tokio::io::AsyncBufRead + Unpin>(
    r: &mut R,
    connect: bool,
) -> (u16, String) {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).await.unwrap_or(0) == 0 {
            break;
        }
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    if status == 0 || (connect && status == 200) {
        return (status, head);
    }
    let lower = head.to_ascii_lowercase();
    let mut body = Vec::new();
    if let Some(len) = lower
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
    {
        body.resize(len, 0);
        r.read_exact(&mut body).await.unwrap();
    } else if lower.contains("transfer-encoding: chunked") {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).await.unwrap();
            let n = usize::from_str_radix(size.trim(), 16).unwrap();
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk).await.unwrap();
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    }
    (status, head + &String::from_utf8_lossy(&body))
}

/// Writes `parts` as separate writes (separate TLS records), flushing each.
pub async fn write_parts<W: AsyncWrite + Unpin>(w: &mut W, parts: &[&[u8]]) {
    for p in parts {
        w.write_all(p).await.unwrap();
        w.flush().await.unwrap();
    }
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}
