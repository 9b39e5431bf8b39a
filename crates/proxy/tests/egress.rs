//! The egress proxy end to end on loopback: real TLS, real HTTP stacks, a recording upstream.

mod support;

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use gig_proxy::*;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

struct World {
    ca: TestCa,
    up: Upstream,
    p: ProxyUnderTest,
    sb: Sandbox,
}

async fn world() -> World {
    world_with(ProxyLimits::default(), &[]).await
}

async fn world_with(limits: ProxyLimits, extra_rules: &[String]) -> World {
    let ca = TestCa::new();
    let up = Upstream::https(&ca, &[b"h2", b"http/1.1"]).await;
    let p = start_proxy(&ca, limits);
    let sb = Sandbox::start(
        &p.proxy,
        "fetch",
        policy(up.addr.port(), extra_rules),
        placeholders(),
    )
    .await;
    World { ca, up, p, sb }
}

impl World {
    fn url(&self, host: &str, path: &str) -> String {
        format!("https://{host}:{}{path}", self.up.addr.port())
    }
    fn target(&self, host: &str) -> String {
        format!("{host}:{}", self.up.addr.port())
    }
    /// A CONNECT tunnel to `host` on the upstream's port, then TLS with `host` as SNI, HTTP/1.1.
    async fn http1_tunnel(&self, host: &str) -> TlsStream<TcpStream> {
        let target = self.target(host);
        self.sb
            .tunnel(&self.p.proxy, &target, host, &[b"http/1.1"])
            .await
            .unwrap()
    }
    /// Sends `raw` alone through a fresh HTTP/1.1 tunnel to `host`; returns the response's
    /// status and text.
    async fn send_raw(&self, host: &str, raw: &str) -> (u16, String) {
        let mut tls = self.http1_tunnel(host).await;
        tls.write_all(raw.as_bytes()).await.unwrap();
        read_response(&mut BufReader::new(&mut tls), false).await
    }
}

fn assert_no_secret(text: &str) {
    for secret in [SECRET_HEADER, SECRET_QUERY, SECRET_BASIC, SECRET_PLAIN] {
        assert!(
            !text.contains(secret),
            "a real secret reached the sandbox: {text}"
        );
        let encoded =
            percent_encoding::utf8_percent_encode(secret, percent_encoding::NON_ALPHANUMERIC)
                .to_string();
        assert!(
            !text.contains(&encoded),
            "an encoded secret reached the sandbox: {text}"
        );
    }
    let basic = STANDARD.encode(format!("svc:{SECRET_BASIC}"));
    assert!(
        !text.contains(&basic),
        "the basic credential reached the sandbox: {text}"
    );
}

async fn echo_through(w: &World, http1: bool, path: &str) -> (reqwest::Response, String) {
    let client = w.sb.client(&w.p.proxy, http1);
    let resp = client
        .get(w.url("api.example.test", path))
        .query(&[("key", w.sb.ph("MAPS_KEY").as_str()), ("q", "hello")])
        // The server sets its own Authorization: the injected one must win.
        .header(
            "authorization",
            format!("Bearer {}", w.sb.ph("OPENAI_API_KEY")),
        )
        .send()
        .await
        .unwrap();
    let headers = format!("{:?}", resp.headers());
    assert_no_secret(&headers);
    let status = resp.status();
    let body = resp.text().await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_no_secret(&body);
    // Rebuild a response just for the headers' sake.
    let client2 = w.sb.client(&w.p.proxy, http1);
    let head = client2
        .head(w.url("api.example.test", "/plain"))
        .send()
        .await
        .unwrap();
    (head, format!("{headers}\n{body}"))
}

#[tokio::test]
async fn header_and_query_credentials_are_injected_and_scrubbed_over_h2_and_h1() {
    let w = world().await;
    for (http1, version) in [
        (false, http::Version::HTTP_2),
        (true, http::Version::HTTP_2),
    ] {
        let before = w.up.count();
        let (_, seen_by_client) = echo_through(&w, http1, "/echo").await;
        let seen = w.up.seen.lock().unwrap()[before].clone();
        assert_eq!(
            seen.version, version,
            "the proxy talks h2 to an h2 upstream"
        );
        assert_eq!(
            seen.headers["authorization"],
            format!("Bearer {SECRET_HEADER}").as_str()
        );
        assert_eq!(seen.headers.get_all("authorization").iter().count(), 1);
        let query = seen.uri.split_once('?').unwrap().1;
        let encoded =
            percent_encoding::utf8_percent_encode(SECRET_QUERY, percent_encoding::NON_ALPHANUMERIC)
                .to_string();
        assert!(query.contains(&format!("key={encoded}")), "{query}");
        assert_eq!(query.matches("key=").count(), 1, "{query}");
        assert!(query.contains("q=hello"));
        // The client sees its placeholders where the upstream echoed the secrets.
        assert!(
            seen_by_client.contains(&w.sb.ph("OPENAI_API_KEY")),
            "{seen_by_client}"
        );
        assert!(
            seen_by_client.contains(&w.sb.ph("MAPS_KEY")),
            "{seen_by_client}"
        );
    }
    let allowed: Vec<_> =
        w.p.audit
            .events()
            .into_iter()
            .filter(|e| e.path.starts_with("/echo"))
            .collect();
    assert_eq!(allowed.len(), 2);
    for e in allowed {
        assert_eq!(e.decision, Decision::Allowed);
        assert_eq!(e.server, "fetch");
        assert_eq!(e.status, 200);
        assert_eq!(e.path, "/echo?key=&q=");
        assert_eq!(
            e.credentials,
            vec!["OPENAI_API_KEY".to_string(), "MAPS_KEY".into()]
        );
        assert!(e.response_bytes > 0);
        assert_no_secret(&format!("{e:?}"));
    }
}

#[tokio::test]
async fn gzip_echo_is_decompressed_and_scrubbed() {
    let w = world().await;
    for http1 in [false, true] {
        let (_, text) = echo_through(&w, http1, "/gzip").await;
        assert!(text.contains(&w.sb.ph("OPENAI_API_KEY")), "{text}");
        assert!(text.contains("auth=Bearer"), "not decompressed: {text}");
    }
}

#[tokio::test]
async fn basic_credential_is_injected_and_its_echo_scrubbed() {
    let w = world().await;
    let client = w.sb.client(&w.p.proxy, false);
    let resp = client
        .get(w.url("other.example.test", "/echo"))
        .send()
        .await
        .unwrap();
    let headers = format!("{:?}", resp.headers());
    let body = resp.text().await.unwrap();
    let seen = w.up.last();
    let expected = format!("Basic {}", STANDARD.encode(format!("svc:{SECRET_BASIC}")));
    assert_eq!(seen.headers["authorization"], expected.as_str());
    assert_no_secret(&headers);
    assert_no_secret(&body);
    let fake = STANDARD.encode(format!("svc:{}", w.sb.ph("BASIC_PW")));
    assert!(body.contains(&fake), "{body}");
    // Only BASIC_PW goes to other.example.test.
    assert_eq!(w.p.audit.last().credentials, vec!["BASIC_PW".to_string()]);
}

#[tokio::test]
async fn h2_client_reaches_an_http1_only_upstream() {
    let ca = TestCa::new();
    let up = Upstream::https(&ca, &[b"http/1.1"]).await;
    let p = start_proxy(&ca, ProxyLimits::default());
    let sb = Sandbox::start(&p.proxy, "s", policy(up.addr.port(), &[]), placeholders()).await;
    let resp = sb
        .client(&p.proxy, false)
        .post(format!("https://api.example.test:{}/echo", up.addr.port()))
        .body("payload")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    let body = resp.text().await.unwrap();
    assert_no_secret(&body);
    let seen = up.last();
    assert_eq!(seen.version, http::Version::HTTP_11);
    assert_eq!(seen.body, b"payload");
    assert_eq!(
        seen.headers["host"],
        format!("api.example.test:{}", up.addr.port()).as_str()
    );
    assert_eq!(
        seen.headers["authorization"],
        format!("Bearer {SECRET_HEADER}").as_str()
    );
}

#[tokio::test]
async fn redirects_are_passed_to_the_server_not_followed() {
    let w = world().await;
    let resp =
        w.sb.client(&w.p.proxy, false)
            .get(w.url("api.example.test", "/redirect"))
            .send()
            .await
            .unwrap();
    assert_eq!(resp.status(), 302);
    assert_eq!(
        resp.headers()["location"],
        "https://evil.example.test/steal"
    );
    assert_eq!(w.up.count(), 1);
}

#[tokio::test]
async fn tool_call_is_stamped_on_audit_records() {
    let w = world().await;
    w.sb.egress.set_tool_call(Some(gig_proxy::ToolCall {
        name: "search#42".into(),
        span: tracing::Span::none(),
    }));
    let client = w.sb.client(&w.p.proxy, false);
    client
        .get(w.url("api.example.test", "/"))
        .send()
        .await
        .unwrap();
    assert_eq!(w.p.audit.last().tool_call.as_deref(), Some("search#42"));
    w.sb.egress.set_tool_call(None);
    client
        .get(w.url("api.example.test", "/"))
        .send()
        .await
        .unwrap();
    assert_eq!(w.p.audit.last().tool_call, None);
}

/// CONNECT-level refusals: each is a 403 with a reason, audited, and the upstream sees nothing.
#[tokio::test]
async fn connect_refusals() {
    let w = world().await;
    let port = w.up.addr.port();
    let ph = w.sb.ph("OPENAI_API_KEY");
    let proxy_auth = format!(
        "Proxy-Authorization: Basic {}\r\n",
        STANDARD.encode(format!("u:{ph}"))
    );
    let cases: Vec<(String, String, &str)> = vec![
        (
            format!("evil.example.test:{port}"),
            String::new(),
            "not in this server's allowlist",
        ),
        (
            format!("api.example.test:{}", port + 1),
            String::new(),
            "not in this server's allowlist",
        ),
        (
            format!("wild.example.test:{port}"),
            String::new(),
            "not in this server's allowlist",
        ),
        (
            format!("badwild.example.test:{port}"),
            String::new(),
            "not in this server's allowlist",
        ),
        (
            format!("127.0.0.1:{port}"),
            String::new(),
            "not in this server's allowlist",
        ),
        (
            format!("loopback2.example.test:{port}"),
            String::new(),
            "loopback address",
        ),
        (
            format!("private.example.test:{port}"),
            String::new(),
            "private address",
        ),
        (
            format!("meta.example.test:{port}"),
            String::new(),
            "link-local",
        ),
        (
            format!("mixed.example.test:{port}"),
            String::new(),
            "192.168.1.1",
        ),
        (
            format!("api.example.test:{port}"),
            format!("X-Token: {ph}\r\n"),
            "CONNECT request",
        ),
        (
            format!("api.example.test:{port}"),
            proxy_auth,
            "CONNECT request",
        ),
    ];
    for (target, headers, reason) in cases {
        let before = w.p.audit.events().len();
        let (status, text, _) = w.sb.connect(&target, &headers).await;
        assert_eq!(status, 403, "{target}: {text}");
        assert!(
            text.contains(reason),
            "{target}: expected {reason:?} in {text}"
        );
        let event = w.p.audit.last();
        assert_eq!(w.p.audit.events().len(), before + 1);
        assert_eq!(event.decision, Decision::Refused);
        assert_eq!(event.exfiltration, reason == "CONNECT request", "{event:?}");
    }
    assert_eq!(w.up.count(), 0);
    // The wildcard does match below its domain.
    let resp =
        w.sb.client(&w.p.proxy, false)
            .get(w.url("a.wild.example.test", "/"))
            .send()
            .await
            .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(w.up.count(), 1);
}

#[tokio::test]
async fn an_empty_allowlist_denies_everything() {
    let ca = TestCa::new();
    let up = Upstream::https(&ca, &[b"h2", b"http/1.1"]).await;
    let p = start_proxy(&ca, ProxyLimits::default());
    let sb = Sandbox::start(
        &p.proxy,
        "nothing",
        gig_policy::EgressPolicy::default(),
        Default::default(),
    )
    .await;
    let (status, text, _) = sb
        .connect(&format!("api.example.test:{}", up.addr.port()), "")
        .await;
    assert_eq!(status, 403, "{text}");
    let err = sb
        .client(&p.proxy, false)
        .get(format!("https://api.example.test:{}/", up.addr.port()))
        .send()
        .await;
    assert!(err.is_err());
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn listed_ip_literal_is_allowed_with_an_ip_leaf() {
    let ca = TestCa::new();
    let up = Upstream::https(&ca, &[b"h2", b"http/1.1"]).await;
    let p = start_proxy(&ca, ProxyLimits::default());
    let rule = format!("127.0.0.1:{}", up.addr.port());
    let sb = Sandbox::start(
        &p.proxy,
        "ip",
        policy(up.addr.port(), &[rule]),
        placeholders(),
    )
    .await;
    let resp = sb
        .client(&p.proxy, true)
        .get(format!("https://127.0.0.1:{}/", up.addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(up.count(), 1);
}

/// Requests inside a tunnel whose names disagree with the tunnel's.
#[tokio::test]
async fn name_mismatches_inside_the_tunnel_are_refused() {
    let w = world().await;
    let port = w.up.addr.port();
    let api = w.target("api.example.test");
    let cases = [
        format!("GET / HTTP/1.1\r\nHost: other.example.test:{port}\r\n\r\n"),
        format!("GET / HTTP/1.1\r\nHost: {api}\r\nHost: other.example.test:{port}\r\n\r\n"),
        format!("GET https://other.example.test:{port}/ HTTP/1.1\r\nHost: {api}\r\n\r\n"),
        format!(
            "GET / HTTP/1.1\r\nHost: api.example.test:{}\r\n\r\n",
            port + 1
        ),
    ];
    for raw in cases {
        let (status, text) = w.send_raw("api.example.test", &raw).await;
        assert!(status == 403 || status == 400, "{raw:?} → {status} {text}");
        assert_eq!(w.p.audit.last().decision, Decision::Refused);
    }
    assert_eq!(w.up.count(), 0);
}

#[tokio::test]
async fn sni_that_differs_from_the_connect_host_ends_the_tunnel() {
    let w = world().await;
    let result =
        w.sb.tunnel(
            &w.p.proxy,
            &w.target("api.example.test"),
            "other.example.test",
            &[b"http/1.1"],
        )
        .await;
    assert!(result.is_err(), "the handshake must fail");
    let e = w.p.audit.last();
    assert_eq!(e.decision, Decision::Refused);
    assert!(
        e.reason.unwrap().contains("SNI"),
        "audit names the SNI mismatch"
    );
    assert_eq!(w.up.count(), 0);
}

#[tokio::test]
async fn h2_authority_that_differs_from_sni_is_refused() {
    let w = world().await;
    let port = w.up.addr.port();
    let tls =
        w.sb.tunnel(
            &w.p.proxy,
            &w.target("api.example.test"),
            "api.example.test",
            &[b"h2"],
        )
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(tls),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    for (authority, host_header) in [
        (format!("other.example.test:{port}"), None),
        (
            format!("api.example.test:{port}"),
            Some(format!("other.example.test:{port}")),
        ),
    ] {
        let mut req = http::Request::get(format!("https://{authority}/"));
        if let Some(h) = &host_header {
            req = req.header("host", h);
        }
        let resp = send
            .send_request(req.body(Full::new(Bytes::new())).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), 403, "{authority} / {host_header:?}");
    }
    // The same connection still works for the right authority.
    let resp = send
        .send_request(
            http::Request::get(format!("https://api.example.test:{port}/"))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(w.up.count(), 1);
}

/// A placeholder sent to a host that is allowed, but not one of its credential's hosts.
#[tokio::test]
async fn placeholders_to_other_hosts_are_refused_as_exfiltration() {
    let w = world().await;
    let ph = w.sb.ph("OPENAI_API_KEY");
    let client = w.sb.client(&w.p.proxy, false);
    let url = w.url("other.example.test", "/");
    let pct: String = ph.bytes().map(|b| format!("%{b:02X}")).collect();
    let json: String = ph.chars().map(|c| format!("\\u{:04x}", c as u32)).collect();
    let requests = vec![
        ("raw header", client.get(&url).header("x-leak", ph.clone())),
        ("url-encoded query", client.get(format!("{url}?k={pct}"))),
        ("raw in path", client.get(format!("{url}{ph}"))),
        (
            "json-escaped body",
            client.post(&url).body(format!("{{\"k\":\"{json}\"}}")),
        ),
        (
            "base64 basic",
            client.get(&url).header(
                "authorization",
                format!("Basic {}", STANDARD.encode(format!("x:{ph}"))),
            ),
        ),
        (
            "gzip body",
            client
                .post(&url)
                .header("content-encoding", "gzip")
                .body(gzip(format!("{{\"key\":\"{ph}\"}}").as_bytes())),
        ),
    ];
    for (what, req) in requests {
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 403, "{what}");
        let text = resp.text().await.unwrap();
        assert!(text.contains("OPENAI_API_KEY"), "{what}: {text}");
        let e = w.p.audit.last();
        assert!(e.exfiltration, "{what}: {e:?}");
        assert_eq!(e.host, "other.example.test");
    }
    assert_eq!(w.up.count(), 0);
}

#[tokio::test]
async fn a_placeholder_split_across_tls_records_is_found() {
    let w = world().await;
    let ph = w.sb.ph("OPENAI_API_KEY");
    let other = w.target("other.example.test");
    let mut tls = w.http1_tunnel("other.example.test").await;
    let (a, b) = ph.split_at(20);
    let head = format!(
        "POST /upload HTTP/1.1\r\nHost: {other}\r\nContent-Length: {}\r\n\r\nleak=",
        5 + ph.len()
    );
    write_parts(&mut tls, &[head.as_bytes(), a.as_bytes(), b.as_bytes()]).await;
    let (status, text) = read_response(&mut BufReader::new(&mut tls), false).await;
    assert_eq!(status, 403, "{text}");
    assert!(w.p.audit.last().exfiltration);
    assert_eq!(w.up.count(), 0);
}

#[tokio::test]
async fn only_the_bad_one_of_two_pipelined_requests_is_refused() {
    let w = world().await;
    let ph = w.sb.ph("OPENAI_API_KEY");
    let other = w.target("other.example.test");
    let mut tls = w.http1_tunnel("other.example.test").await;
    let both = format!(
        "GET /first HTTP/1.1\r\nHost: {other}\r\n\r\nGET /second HTTP/1.1\r\nHost: {other}\r\nX-Leak: {ph}\r\n\r\n"
    );
    tls.write_all(both.as_bytes()).await.unwrap();
    let mut reader = BufReader::new(&mut tls);
    let (first, _) = read_response(&mut reader, false).await;
    let (second, text) = read_response(&mut reader, false).await;
    assert_eq!((first, second), (200, 403), "{text}");
    assert_eq!(w.up.count(), 1);
    assert!(w.up.last().uri.ends_with("/first"));
}

#[tokio::test]
async fn smuggling_and_oversized_headers_are_refused() {
    let w = world().await;
    let api = w.target("api.example.test");
    let smuggle = format!(
        "POST / HTTP/1.1\r\nHost: {api}\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: {api}\r\n\r\n"
    );
    let oversized = format!(
        "GET / HTTP/1.1\r\nHost: {api}\r\nX-Big: {}\r\n\r\n",
        "a".repeat(100 * 1024)
    );
    let two_lengths = format!(
        "POST / HTTP/1.1\r\nHost: {api}\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"
    );
    for (what, raw, expected) in [
        ("CL+TE", smuggle, [400u16, 403]),
        ("oversized", oversized, [431, 431]),
        ("two content-lengths", two_lengths, [400, 400]),
    ] {
        let (status, text) = w.send_raw("api.example.test", &raw).await;
        assert!(expected.contains(&status), "{what}: {status} {text}");
    }
    assert_eq!(w.up.count(), 0);
}

#[tokio::test]
async fn a_request_looping_back_to_the_proxy_is_refused() {
    let ca = TestCa::new();
    let up = Upstream::https(&ca, &[b"h2", b"http/1.1"]).await;
    let p = start_proxy(&ca, ProxyLimits::default());
    // Bind first so the policy can name the proxy's own port.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_addr = listener.local_addr().unwrap();
    let rules = [
        format!("loop.example.test:{}", proxy_addr.port()),
        format!("http://loop.example.test:{}", proxy_addr.port()),
    ];
    let egress = Arc::new(
        SandboxEgress::new("looper", policy(up.addr.port(), &rules), placeholders()).unwrap(),
    );
    let cancel = tokio_util::sync::CancellationToken::new();
    let _guard = cancel.clone().drop_guard();
    tokio::spawn({
        let p = p.proxy.clone();
        let c = cancel.clone();
        async move { p.serve(listener, egress, c).await }
    });
    let mut tcp = tokio::net::TcpStream::connect(proxy_addr).await.unwrap();
    let target = format!("loop.example.test:{}", proxy_addr.port());
    tcp.write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let (status, text) = read_response(&mut BufReader::new(&mut tcp), true).await;
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("loops back"), "{text}");
    let mut tcp = tokio::net::TcpStream::connect(proxy_addr).await.unwrap();
    tcp.write_all(format!("GET http://{target}/ HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let (status, text) = read_response(&mut BufReader::new(&mut tcp), false).await;
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("loops back"), "{text}");
}

#[tokio::test]
async fn plain_http_needs_an_http_rule_and_explicit_credential_permission() {
    let ca = TestCa::new();
    let https_up = Upstream::https(&ca, &[b"h2", b"http/1.1"]).await;
    let plain = Upstream::plain().await;
    let p = start_proxy(&ca, ProxyLimits::default());
    let rule = format!("http://plain.example.test:{}", plain.addr.port());
    let pol = policy(https_up.addr.port(), &[rule]);
    let phs = placeholders();
    let strict = Sandbox::start(&p.proxy, "strict", pol.clone(), phs.clone()).await;
    let client = strict.client(&p.proxy, true);
    let plain_url = format!("http://plain.example.test:{}/", plain.addr.port());

    // Allowed without credentials; none injected.
    let resp = client.get(&plain_url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(plain.count(), 1);
    assert!(plain.last().headers.get("x-api-key").is_none());
    assert!(p.audit.last().credentials.is_empty());
    // The placeholder over plain HTTP is refused unless explicitly allowed.
    let resp = client
        .get(&plain_url)
        .header("x-api-key", strict.ph("PLAIN_KEY"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert!(resp.text().await.unwrap().contains("plain HTTP"));
    assert_eq!(plain.count(), 1);
    // Plain HTTP to a host allowed only for TLS, and absolute-form https, are refused.
    let resp = client
        .get(format!("http://api.example.test:{}/", https_up.addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(https_up.count(), 0);
    // Absolute-form target that disagrees with Host.
    let mut tcp = tokio::net::TcpStream::connect(strict.addr).await.unwrap();
    tcp.write_all(
        format!(
            "GET {plain_url} HTTP/1.1\r\nHost: api.example.test:{}\r\n\r\n",
            https_up.addr.port()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let (status, _) = read_response(&mut BufReader::new(&mut tcp), false).await;
    assert_eq!(status, 403);
    // Smuggling on the outer connection too.
    let mut tcp = tokio::net::TcpStream::connect(strict.addr).await.unwrap();
    tcp.write_all(
        format!(
            "POST {plain_url} HTTP/1.1\r\nHost: plain.example.test:{}\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            plain.addr.port()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let (status, _) = read_response(&mut BufReader::new(&mut tcp), false).await;
    assert!(status == 400 || status == 403, "{status}");
    assert_eq!(plain.count(), 1);

    // With explicit permission the credential is injected over plain HTTP.
    let egress = SandboxEgress::new("lenient", pol, phs.clone())
        .unwrap()
        .allow_credential_over_plain_http("PLAIN_KEY")
        .unwrap();
    let lenient = Sandbox::serve(&p.proxy, Arc::new(egress), phs).await;
    let resp = lenient
        .client(&p.proxy, true)
        .get(&plain_url)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(plain.last().headers["x-api-key"], SECRET_PLAIN);
    assert_eq!(p.audit.last().credentials, vec!["PLAIN_KEY".to_string()]);
}

#[tokio::test]
async fn a_bad_upstream_certificate_is_refused() {
    let trusted = TestCa::new();
    let untrusted = TestCa::new();
    let bad = Upstream::https(&untrusted, &[b"h2", b"http/1.1"]).await;
    let p = start_proxy(&trusted, ProxyLimits::default());
    let sb = Sandbox::start(&p.proxy, "s", policy(bad.addr.port(), &[]), placeholders()).await;
    let client = sb.client(&p.proxy, false);
    let resp = client
        .get(format!("https://api.example.test:{}/", bad.addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    assert!(p.audit.last().reason.unwrap().contains("TLS"));
    assert_eq!(bad.count(), 0);

    // Right CA, wrong name: the certificate does not cover wrongname.example.test.
    let good = Upstream::https(&trusted, &[b"h2", b"http/1.1"]).await;
    let sb = Sandbox::start(
        &p.proxy,
        "s2",
        policy(good.addr.port(), &[]),
        placeholders(),
    )
    .await;
    let resp = sb
        .client(&p.proxy, false)
        .get(format!(
            "https://wrongname.example.test:{}/",
            good.addr.port()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    assert_eq!(good.count(), 0);
}

#[tokio::test]
async fn two_sandboxes_with_different_policies_at_once() {
    let ca = TestCa::new();
    let up = Upstream::https(&ca, &[b"h2", b"http/1.1"]).await;
    let p = start_proxy(&ca, ProxyLimits::default());
    let port = up.addr.port();
    let only = |host: &str| gig_policy::EgressPolicy {
        allow: vec![format!("{host}:{port}").parse().unwrap()],
        allow_addresses: vec!["127.0.0.1/32".parse().unwrap()],
        credentials: vec![],
    };
    let a = Sandbox::start(&p.proxy, "a", only("api.example.test"), Default::default()).await;
    let b = Sandbox::start(
        &p.proxy,
        "b",
        only("other.example.test"),
        Default::default(),
    )
    .await;
    let (ca_, cb) = (a.client(&p.proxy, false), b.client(&p.proxy, false));
    let api = format!("https://api.example.test:{port}/");
    let other = format!("https://other.example.test:{port}/");
    let (ra, rb, xa, xb) = tokio::join!(
        ca_.get(&api).send(),
        cb.get(&other).send(),
        ca_.get(&other).send(),
        cb.get(&api).send()
    );
    assert_eq!(ra.unwrap().status(), 200);
    assert_eq!(rb.unwrap().status(), 200);
    assert!(xa.is_err() && xb.is_err(), "cross requests must be refused");
    assert_eq!(up.count(), 2);
    let refused: Vec<_> = p
        .audit
        .events()
        .into_iter()
        .filter(|e| e.decision == Decision::Refused)
        .map(|e| (e.server, e.host))
        .collect();
    assert!(refused.contains(&("a".into(), "other.example.test".into())));
    assert!(refused.contains(&("b".into(), "api.example.test".into())));
}

#[tokio::test]
async fn connections_beyond_the_limit_get_503() {
    let limits = ProxyLimits {
        max_connections_per_sandbox: 2,
        ..ProxyLimits::default()
    };
    let w = world_with(limits, &[]).await;
    // Two connections that hold their permits (a tunnel each).
    let _t1 = w.sb.connect(&w.target("api.example.test"), "").await;
    let _t2 = w.sb.connect(&w.target("api.example.test"), "").await;
    let mut third = tokio::net::TcpStream::connect(w.sb.addr).await.unwrap();
    let (status, text) = read_response(&mut BufReader::new(&mut third), false).await;
    assert_eq!(status, 503, "{text}");
    drop(_t1);
    drop(_t2);
}

#[tokio::test]
async fn a_slow_header_is_cut_off() {
    let limits = ProxyLimits {
        header_read_timeout: std::time::Duration::from_millis(200),
        ..ProxyLimits::default()
    };
    let w = world_with(limits, &[]).await;
    let mut tcp = tokio::net::TcpStream::connect(w.sb.addr).await.unwrap();
    tcp.write_all(b"CONNECT api.example.test:1 HTTP/1.1\r\nHost: a")
        .await
        .unwrap();
    let mut buf = Vec::new();
    // The proxy closes the connection (with or without a 408); a generous bound keeps a
    // regression from hanging the suite.
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        tcp.read_to_end(&mut buf),
    )
    .await
    .expect("the proxy never closed a connection whose header stalled");
    assert!(read.is_ok() || buf.is_empty());
    assert_eq!(w.up.count(), 0);
}

#[tokio::test]
async fn ca_certificate_verifies_minted_leaves_for_real_clients() {
    let w = world().await;
    assert!(
        w.p.proxy
            .ca()
            .cert_pem()
            .starts_with("-----BEGIN CERTIFICATE-----")
    );
    // reqwest trusting only the CA PEM is the check; do it over both ALPN results.
    for http1 in [false, true] {
        let resp =
            w.sb.client(&w.p.proxy, http1)
                .get(w.url("api.example.test", "/"))
                .send()
                .await
                .unwrap();
        let expected = if http1 {
            http::Version::HTTP_11
        } else {
            http::Version::HTTP_2
        };
        assert_eq!(resp.version(), expected);
    }
    let _ = &w.ca;
}

/// To its own host, a placeholder is accepted only where the proxy writes the real value (the
/// declared header, query parameter or Basic auth): anywhere else the upstream could reflect
/// the real value in a form the scrubber does not know, so it is refused as exfiltration.
#[tokio::test]
async fn a_placeholder_outside_its_declared_position_is_refused_even_to_its_own_host() {
    let w = world().await;
    let ph = w.sb.ph("OPENAI_API_KEY");
    let maps = w.sb.ph("MAPS_KEY");
    let client = w.sb.client(&w.p.proxy, false);
    let url = w.url("api.example.test", "/v1/chat");
    let requests = vec![
        (
            "in the body",
            client
                .post(&url)
                .body(format!("{{\"prompt\":\"spell out {ph}\"}}")),
        ),
        (
            "in another header",
            client.get(&url).header("x-other", ph.clone()),
        ),
        ("in the query", client.get(format!("{url}?echo={ph}"))),
        (
            "maps key in a header",
            client.get(&url).header("x-maps", maps.clone()),
        ),
    ];
    for (what, req) in requests {
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 403, "{what}");
        let e = w.p.audit.last();
        assert!(e.exfiltration, "{what}: {e:?}");
    }
    assert_eq!(w.up.count(), 0, "a refused request reached the upstream");

    // In the declared positions it works: the header and the query parameter get real values.
    let resp = client
        .get(format!("{url}?key={maps}"))
        .header("authorization", format!("Bearer {ph}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(w.up.count(), 1);
}
