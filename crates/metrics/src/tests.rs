use std::sync::{Arc, Mutex};
use std::time::Duration;

use gig_gateway::audit::{CallRecord, CallRecorder};
use gig_gateway::backend::BackendStatus;
use gig_proxy::{AuditEvent, AuditSink, Decision, Scheme};

use super::*;

fn call(outcome: &'static str, principal: &str) -> CallRecord {
    CallRecord {
        principal: principal.into(),
        user_id: None,
        profile_id: None,
        client: None,
        tool: "echo_echo".into(),
        backend: "echo".into(),
        backend_tool: "echo".into(),
        outcome,
        duration: Duration::from_millis(3),
    }
}

fn line<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    text.lines().find(|l| l.starts_with(prefix))
}

#[test]
fn tool_calls_are_named_after_the_opentelemetry_conventions() {
    let metrics = Metrics::new();
    let recorder = MetricsRecorder(metrics.clone());
    recorder.record(call("ok", "operator"));
    recorder.record(call("ok", "user:7:secret@example.com profile:3"));
    recorder.record(call("tool_error", "operator"));
    let text = metrics.render();
    let ok = r#"mcp_server_operation_duration_seconds_count{mcp_method_name="tools/call",gen_ai_tool_name="echo",server="echo",error_type=""} 2"#;
    assert!(text.contains(ok), "{text}");
    assert!(text.contains(r#"error_type="tool_error"} 1"#), "{text}");
    assert!(text.contains("# UNIT mcp_server_operation_duration_seconds seconds"));
    // Who called is audit material, never a label.
    assert!(!text.contains("secret@example.com"));
    assert!(text.ends_with("# EOF\n"));
}

#[derive(Debug, Default)]
struct Counting(Mutex<usize>);

impl CallRecorder for Counting {
    fn record(&self, _call: CallRecord) {
        *self.0.lock().unwrap() += 1;
    }
}

#[test]
fn the_fan_out_gives_every_recorder_every_call() {
    assert!(CallFanOut::of(Vec::new()).is_none());
    let (a, b) = (Arc::new(Counting::default()), Arc::new(Counting::default()));
    let fan = CallFanOut::of(vec![a.clone(), b.clone()]).unwrap();
    fan.record(call("ok", "operator"));
    fan.record(call("error", "operator"));
    assert_eq!((*a.0.lock().unwrap(), *b.0.lock().unwrap()), (2, 2));
}

fn event(decision: Decision, credentials: &[&str], exfiltration: bool) -> AuditEvent {
    AuditEvent {
        server: "fetch".into(),
        user: None,
        tool_call: None,
        scheme: Scheme::Https,
        method: "GET".into(),
        host: "api.example.com".into(),
        port: 443,
        path: "/v1?key=".into(),
        status: 200,
        request_bytes: 0,
        response_bytes: 0,
        credentials: credentials.iter().map(|c| c.to_string()).collect(),
        decision,
        reason: None,
        exfiltration,
        upstream: None,
    }
}

#[test]
fn egress_is_counted_by_decision_injection_and_exfiltration_without_hosts() {
    let metrics = Metrics::new();
    let sink = AuditFanOut(vec![Arc::new(EgressMetrics(metrics.clone()))]);
    sink.record(event(Decision::Allowed, &["API_KEY"], false));
    sink.record(event(Decision::Allowed, &[], false));
    sink.record(event(Decision::Refused, &[], true));
    let text = metrics.render();
    assert!(text.contains(r#"gig_egress_requests_total{server="fetch",decision="allowed"} 2"#));
    assert!(text.contains(r#"gig_egress_requests_total{server="fetch",decision="refused"} 1"#));
    assert!(text.contains(r#"gig_egress_credential_injections_total{server="fetch"} 1"#));
    assert!(text.contains(r#"gig_egress_exfiltration_attempts_total{server="fetch"} 1"#));
    assert!(!text.contains("api.example.com"));
}

#[derive(Debug)]
struct Fixed(Mutex<Vec<(String, BackendStatus, bool)>>);

impl BackendSource for Fixed {
    fn backends(&self) -> Vec<(String, BackendStatus, bool)> {
        self.0.lock().unwrap().clone()
    }
}

#[test]
fn backends_are_sampled_at_scrape_and_restarts_never_go_back() {
    let metrics = Metrics::new();
    let down = |restarts| BackendStatus::Down {
        reason: "exited".into(),
        restarts,
    };
    let source = Arc::new(Fixed(Mutex::new(vec![
        ("echo".into(), BackendStatus::Up { tools: 1 }, true),
        ("time".into(), BackendStatus::Up { tools: 2 }, false),
        ("fetch".into(), down(2), true),
    ])));
    metrics.watch_backends(source.clone());
    let text = metrics.render();
    assert!(
        line(&text, "gig_sandboxes_running ")
            .unwrap()
            .ends_with(" 1")
    );
    assert!(text.contains(r#"gig_backend_up{server="fetch",state="down"} 1"#));
    assert!(text.contains(r#"gig_backend_restarts_total{server="fetch"} 2"#));
    // Back up (the hub no longer shows the count), then down again once more.
    source.0.lock().unwrap()[2].1 = BackendStatus::Up { tools: 1 };
    let text = metrics.render();
    assert!(
        line(&text, "gig_sandboxes_running ")
            .unwrap()
            .ends_with(" 2")
    );
    assert!(!text.contains(r#"server="fetch",state="down""#));
    assert!(text.contains(r#"gig_backend_restarts_total{server="fetch"} 2"#));
    source.0.lock().unwrap()[2].1 = down(3);
    assert!(
        metrics
            .render()
            .contains(r#"gig_backend_restarts_total{server="fetch"} 3"#)
    );
    // An uninstalled backend leaves the state gauges.
    source.0.lock().unwrap().truncate(1);
    assert!(!metrics.render().contains(r#"gig_backend_up{server="time""#));
}

#[test]
fn installs_and_vault_operations() {
    let metrics = Metrics::new();
    metrics.install_finished(InstallVia::Boot, Outcome::Ok, Duration::from_millis(800));
    metrics.install_finished(InstallVia::Api, Outcome::Error, Duration::from_secs(2));
    metrics.vault_operation("write", Outcome::Ok);
    let text = metrics.render();
    assert!(text.contains(r#"gig_install_duration_seconds_count{via="boot",outcome="ok"} 1"#));
    assert!(text.contains(r#"gig_install_duration_seconds_count{via="api",outcome="error"} 1"#));
    assert!(text.contains(r#"gig_vault_operations_total{operation="write",outcome="ok"} 1"#));
}

#[tokio::test]
async fn the_listener_serves_metrics_and_nothing_else() {
    let metrics = Metrics::new();
    let listener = MetricsListener::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let served = tokio::spawn(listener.serve(metrics, stop.clone()));
    let get = |path: &'static str| async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        tcp.read_to_string(&mut answer).await.unwrap();
        answer
    };
    let answer = get("/metrics").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("application/openmetrics-text"));
    assert!(answer.contains("gig_build_info"));
    assert!(get("/mcp").await.starts_with("HTTP/1.1 404"));
    stop.cancel();
    served.await.unwrap();
}
