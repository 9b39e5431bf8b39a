//! Attacks from the reliability review, each tried against a real gateway over loopback and
//! expected to fail: slow-header connection exhaustion, held-back bodies past the session cap,
//! a session used by another principal, a huge declared body, `/readyz` read through a
//! rebinding host, a backend that stops reading its stdin, and a refusal that would leave a
//! reused connection dead. Waits are generous bounds on hangs, never performance assertions.

// Tests hand the environment to children.
#![allow(clippy::disallowed_methods)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use gig_gateway::NamedLauncher;
use gig_gateway::launcher::{Connection, LaunchFuture, Launcher};
use gig_test_util::eventually;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use common::{Gateway, TOKEN, config, connect, stdio_backends, stdio_spec};

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;

fn echo_backend() -> Vec<NamedLauncher> {
    stdio_backends(vec![stdio_spec("echo-mcp")])
}

/// Raw HTTP/1.1 request head for a POST to `/mcp` declaring `length` body bytes.
fn post_head(host: &str, length: usize, extra: &str) -> String {
    format!(
        "POST /mcp HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n\
         Content-Length: {length}\r\nConnection: close\r\n{extra}\r\n"
    )
}

/// The status code of the response on `tcp` (reads the status line only).
async fn status_of(tcp: TcpStream) -> Option<u16> {
    let mut lines = BufReader::new(tcp).lines();
    let line = lines.next_line().await.ok()??;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Initializes a session with the operator's token from `source`; returns its id.
async fn initialize_from(url: &str, source: std::net::IpAddr) -> reqwest::Response {
    let client = reqwest::Client::builder()
        .local_address(source)
        .build()
        .unwrap();
    client
        .post(url)
        .bearer_auth(TOKEN)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .body(INITIALIZE)
        .send()
        .await
        .expect("the gateway answers")
}

/// 300 connections trickling one header line at a time: beyond the per-address cap they are
/// closed at once, the rest when the header timeout passes, and a fresh client is served all
/// along (from another loopback address, since the attackers hold this one's quota).
#[tokio::test]
async fn slow_header_connections_cannot_exhaust_the_gateway() {
    let gateway = Gateway::start(
        &[
            ("GIG_MAX_CONNECTIONS_PER_IP", "50"),
            ("GIG_HEADER_READ_TIMEOUT_SECS", "2"),
        ],
        echo_backend(),
    )
    .await;
    let closed = Arc::new(AtomicUsize::new(0));
    let mut slow = Vec::new();
    for _ in 0..300 {
        let Ok(mut tcp) = TcpStream::connect(gateway.addr).await else {
            closed.fetch_add(1, Ordering::SeqCst);
            continue;
        };
        let closed = closed.clone();
        slow.push(tokio::spawn(async move {
            let _ = tcp
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                .await;
            let mut buf = [0u8; 256];
            loop {
                tokio::select! {
                    read = tcp.read(&mut buf) => if !matches!(read, Ok(n) if n > 0) { break },
                    () = tokio::time::sleep(Duration::from_millis(500)) => {
                        if tcp.write_all(b"X-Slow: 1\r\n").await.is_err() {
                            break;
                        }
                    }
                }
            }
            closed.fetch_add(1, Ordering::SeqCst);
        }));
    }

    let response = initialize_from(&gateway.url(), "127.0.0.2".parse().unwrap()).await;
    assert_eq!(response.status(), 200, "a fresh client is served");
    assert!(response.headers().contains_key("mcp-session-id"));

    let all_closed = eventually(Duration::from_secs(60), async || {
        (closed.load(Ordering::SeqCst) == 300).then_some(())
    })
    .await;
    assert!(
        all_closed.is_some(),
        "{} of 300 slow connections still open",
        300 - closed.load(Ordering::SeqCst)
    );
    // Their slots are free again: this address is served too.
    let response = initialize_from(&gateway.url(), "127.0.0.1".parse().unwrap()).await;
    assert_eq!(response.status(), 200);
    gateway.stop().await;
}

/// 40 initialize requests send their headers, hold their bodies back, then finish them all:
/// with a cap of 5 sessions, at most 5 sessions are opened and the rest are refused before
/// their bodies are read.
#[tokio::test]
async fn held_back_bodies_cannot_open_sessions_past_the_cap() {
    let gateway = Gateway::start(&[("GIG_MAX_SESSIONS", "5")], echo_backend()).await;
    let mut held = Vec::new();
    for _ in 0..40 {
        let mut tcp = TcpStream::connect(gateway.addr).await.unwrap();
        tcp.write_all(post_head("127.0.0.1", INITIALIZE.len(), "").as_bytes())
            .await
            .unwrap();
        held.push(tcp);
    }
    let mut answers = Vec::new();
    for mut tcp in held {
        answers.push(tokio::spawn(async move {
            let _ = tcp.write_all(INITIALIZE.as_bytes()).await;
            tokio::time::timeout(Duration::from_secs(30), status_of(tcp))
                .await
                .ok()
                .flatten()
        }));
    }
    let mut opened = 0;
    let mut refused = 0;
    for answer in answers {
        match answer.await.unwrap() {
            Some(200) => opened += 1,
            Some(503) => refused += 1,
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert!(opened <= 5, "{opened} sessions opened past a cap of 5");
    assert_eq!(opened + refused, 40);
    gateway.stop().await;
}

/// A 1 GB declared body is refused with 413 without the gateway waiting for it.
#[tokio::test]
async fn a_huge_declared_body_is_refused_at_once() {
    let gateway = Gateway::start(&[], echo_backend()).await;
    let mut tcp = TcpStream::connect(gateway.addr).await.unwrap();
    tcp.write_all(post_head("127.0.0.1", 1 << 30, "").as_bytes())
        .await
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), status_of(tcp))
        .await
        .expect("answered without the body");
    assert_eq!(status, Some(413));
    gateway.stop().await;
}

/// The response head on `tcp`, lower-cased, up to the blank line.
async fn head_of(tcp: &mut TcpStream) -> String {
    let mut reader = BufReader::new(tcp);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        let read = reader
            .read_line(&mut line)
            .await
            .expect("the gateway answers");
        if read == 0 || line == "\r\n" {
            return head.to_ascii_lowercase();
        }
        head.push_str(&line);
    }
}

/// A request refused before its body was read leaves the body on the wire, so the gateway
/// closes the connection after answering; the answer must say so, or a client reusing the
/// connection sends its next request into a closed socket. A request whose body was read
/// keeps its connection.
#[tokio::test]
async fn a_refusal_that_leaves_the_body_unread_says_the_connection_closes() {
    let gateway = Gateway::start(&[], echo_backend()).await;
    let mut tcp = TcpStream::connect(gateway.addr).await.unwrap();
    let head = format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer wrong\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        INITIALIZE.len()
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let refused = head_of(&mut tcp).await;
    assert!(refused.starts_with("http/1.1 401"), "{refused}");
    assert!(refused.contains("connection: close"), "{refused}");

    let mut tcp = TcpStream::connect(gateway.addr).await.unwrap();
    let request = post_head("127.0.0.1", INITIALIZE.len(), "").replace("Connection: close\r\n", "");
    tcp.write_all(format!("{request}{INITIALIZE}").as_bytes())
        .await
        .unwrap();
    let served = head_of(&mut tcp).await;
    assert!(served.starts_with("http/1.1 200"), "{served}");
    assert!(!served.contains("connection: close"), "{served}");
    gateway.stop().await;
}

/// A page that reached the gateway through a rebinding name learns whether it is ready, not
/// which backends it has.
#[tokio::test]
async fn readyz_names_backends_only_to_allowed_hosts() {
    let gateway = Gateway::start(&[], echo_backend()).await;
    let readyz = format!("http://{}/readyz", gateway.addr);
    let client = reqwest::Client::new();
    let foreign = client
        .get(&readyz)
        .header("host", "rebind.attacker.example")
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 200);
    let body = foreign.text().await.unwrap();
    assert!(
        body.contains("\"ready\":true") && !body.contains("echo"),
        "{body}"
    );
    let local = client
        .get(&readyz)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(local.contains("echo"), "{local}");
    gateway.stop().await;
}

/// Resolves one profile token to a profile principal.
#[derive(Debug)]
struct OneProfile;

const PROFILE_TOKEN: &str = "profile-token-0123456789";

impl gig_gateway::http::PrincipalResolver for OneProfile {
    fn resolve<'a>(
        &'a self,
        token: &'a str,
    ) -> futures::future::BoxFuture<
        'a,
        Result<gig_gateway::profile::Principal, gig_gateway::http::TokenRefusal>,
    > {
        Box::pin(async move {
            (token == PROFILE_TOKEN)
                .then(|| {
                    let filter = gig_gateway::profile::ProfileFilter::parse(
                        &serde_json::json!({"tools": []}),
                    )
                    .unwrap();
                    gig_gateway::profile::Principal::Profile(Arc::new(
                        gig_gateway::profile::ProfileView::new(7, 7, "p".into(), filter),
                    ))
                })
                .ok_or(gig_gateway::http::TokenRefusal::Invalid)
        })
    }
}

/// A session answers only the principal that opened it; anyone else gets 404 as if it did
/// not exist.
#[tokio::test]
async fn another_principals_session_id_gets_404() {
    let data = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = config(&[], addr, data.path());
    let hub = gig_gateway::Hub::start(
        config.limits,
        echo_backend(),
        tokio_util::sync::CancellationToken::new(),
    );
    let extras = gig_gateway::http::McpExtras {
        resolver: Some(Arc::new(OneProfile)),
        recorder: None,
        oauth: None,
        auth_observer: None,
        continuation: None,
    };
    let shutdown = tokio_util::sync::CancellationToken::new();
    let (router, _state) =
        gig_gateway::http::router(&config, hub.clone(), extras, shutdown.clone());
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    let url = format!("http://{addr}/mcp");

    let opened = initialize_from(&url, "127.0.0.1".parse().unwrap()).await;
    assert_eq!(opened.status(), 200);
    let session = opened.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let initialized = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
    let send = |token: &'static str| {
        reqwest::Client::new()
            .post(&url)
            .bearer_auth(token)
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .header("mcp-session-id", &session)
            .header("mcp-protocol-version", "2025-06-18")
            .body(initialized)
            .send()
    };
    assert_eq!(send(PROFILE_TOKEN).await.unwrap().status(), 404);
    assert!(send(TOKEN).await.unwrap().status().is_success());
    shutdown.cancel();
    server.abort();
    hub.stop().await;
}

/// A backend speaking just enough MCP by hand over an in-memory pipe, which stops reading
/// its stdin for good once `stall` is called.
struct StallingBackend {
    launches: Arc<AtomicUsize>,
}

fn reply(id: &serde_json::Value, result: serde_json::Value) -> String {
    format!(
        "{}\n",
        serde_json::json!({"jsonrpc": "2.0", "id": id, "result": result})
    )
}

impl Launcher for StallingBackend {
    fn launch(&self) -> LaunchFuture<'_> {
        self.launches.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            let (gateway_side, backend_side) = tokio::io::duplex(64 * 1024);
            let (gateway_read, gateway_write) = tokio::io::split(gateway_side);
            let (backend_read, mut backend_write) = tokio::io::split(backend_side);
            let task = tokio::spawn(async move {
                let mut lines = BufReader::new(backend_read).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let Ok(message) = serde_json::from_str::<serde_json::Value>(&line) else {
                        continue;
                    };
                    let id = &message["id"];
                    let answer = match message["method"].as_str() {
                        Some("initialize") => reply(
                            id,
                            serde_json::json!({"protocolVersion": "2025-06-18",
                                "capabilities": {"tools": {}},
                                "serverInfo": {"name": "stall", "version": "1"}}),
                        ),
                        Some("tools/list") => reply(
                            id,
                            serde_json::json!({"tools": [
                                {"name": "echo", "inputSchema": {"type": "object"}},
                                {"name": "stall", "inputSchema": {"type": "object"}}]}),
                        ),
                        Some("tools/call") if message["params"]["name"] == "stall" => {
                            // Never read again; keep the pipe open.
                            std::future::pending::<()>().await;
                            unreachable!()
                        }
                        Some("tools/call") => reply(
                            id,
                            serde_json::json!({"content": [{"type": "text", "text": "ok"}]}),
                        ),
                        _ => continue,
                    };
                    if backend_write.write_all(answer.as_bytes()).await.is_err() {
                        break;
                    }
                }
            });
            Ok(Connection {
                channel: gig_gateway::launcher::Channel::Lines {
                    reader: Box::pin(gateway_read),
                    writer: Box::pin(gateway_write),
                },
                guard: Box::new(AbortOnDrop(task)),
                on_tool_call: None,
                stderr: None,
            })
        })
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Found by a hostile read: a backend that stops reading made calls of 1 MB wait past their
/// deadline and let queued arguments grow memory without bound. Now every call ends within
/// its deadline, calls beyond the queued-bytes budget are refused at once, and the backend is
/// restarted.
#[tokio::test]
async fn a_backend_that_stops_reading_holds_neither_calls_nor_memory() {
    use rmcp::model::CallToolRequestParams;

    let launches = Arc::new(AtomicUsize::new(0));
    let backend: Box<dyn Launcher> = Box::new(StallingBackend {
        launches: launches.clone(),
    });
    let gateway = Gateway::start(
        &[
            ("GIG_CALL_TIMEOUT_SECS", "2"),
            ("GIG_MAX_MESSAGE_BYTES", "2097152"),
        ],
        vec![(gig_config::ServerName::parse("stall").unwrap(), backend)],
    )
    .await;
    let client = Arc::new(connect(&gateway.url(), ()).await.expect("client connects"));
    let stall = {
        let client = client.clone();
        tokio::spawn(async move {
            let _ = client
                .call_tool(CallToolRequestParams::new("stall_stall"))
                .await;
        })
    };
    let big = "x".repeat(1 << 20);
    let mut calls = Vec::new();
    for _ in 0..16 {
        let client = client.clone();
        let args = serde_json::json!({"data": big});
        calls.push(tokio::spawn(async move {
            let call = CallToolRequestParams::new("stall_echo")
                .with_arguments(args.as_object().unwrap().clone());
            tokio::time::timeout(Duration::from_secs(30), client.call_tool(call)).await
        }));
    }
    let mut refused_for_bytes = 0;
    for call in calls {
        let outcome = call
            .await
            .unwrap()
            .expect("the call ended within its deadline");
        let error = outcome
            .expect_err("a stalled backend cannot answer")
            .to_string();
        if error.contains("bytes of calls queued") {
            refused_for_bytes += 1;
        }
    }
    assert!(
        refused_for_bytes > 0,
        "16 calls of 1 MB all queued for a backend with an 8 MB budget"
    );
    let restarted = eventually(Duration::from_secs(30), async || {
        (launches.load(Ordering::SeqCst) >= 2).then_some(())
    })
    .await;
    assert!(restarted.is_some(), "the stalled backend was not restarted");
    stall.abort();
    drop(client);
    gateway.stop().await;
}
