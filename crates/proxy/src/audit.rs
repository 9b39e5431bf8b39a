//! One audit record per proxied request or refusal. Records name credentials, never values.
//!
//! Every record is built by [`AuditEvent::new`] from the request's [`Target`] and its
//! [`Outcome`]: allowed, refused by any phase (a [`Refusal`]), or refused before an HTTP answer
//! could be given (the connection limit, a tunnel's TLS).

use std::net::SocketAddr;
use std::sync::Arc;

use crate::phases::Refusal;
use crate::proxy::SecretScope;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    Refused,
}

/// Which layer the record is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// The outer `CONNECT` (recorded only when it is refused, or the tunnel's TLS fails).
    Connect,
    Https,
    Http,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    pub server: String,
    /// The user whose instance of the server made the request (per-user or per-session).
    pub user: Option<i64>,
    /// The tool call the gateway said was running when the request was made.
    pub tool_call: Option<String>,
    pub scheme: Scheme,
    pub method: String,
    pub host: String,
    pub port: u16,
    /// The path with query values removed (`/v1/search?q=&key=`).
    pub path: String,
    /// The status the server saw (a refusal's own status, or the upstream's); 0 if none was sent.
    pub status: u16,
    pub request_bytes: u64,
    pub response_bytes: u64,
    /// Names (`env`) of the credentials injected into this request.
    pub credentials: Vec<String>,
    pub decision: Decision,
    pub reason: Option<String>,
    /// A placeholder was sent where its credential may not go.
    pub exfiltration: bool,
    /// The address the proxy connected to (or would have), after the policy check.
    pub upstream: Option<SocketAddr>,
}

/// What a request is about, for the checks and the audit record.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) scheme: Scheme,
    pub(crate) method: String,
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) path: String,
}

impl Target {
    /// A refused connection: nothing of a request is known yet.
    pub(crate) fn connection() -> Self {
        Target {
            scheme: Scheme::Connect,
            method: String::new(),
            host: String::new(),
            port: 0,
            path: String::new(),
        }
    }
}

/// What happened between the proxy and an upstream, as far as a record states it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Exchange {
    /// Names (`env`) of the credentials injected, never their values.
    pub(crate) credentials: Vec<String>,
    pub(crate) request_bytes: u64,
    pub(crate) upstream: Option<SocketAddr>,
}

/// How a request ended, as its record states it.
#[derive(Debug)]
pub(crate) struct Outcome {
    status: u16,
    decision: Decision,
    reason: Option<String>,
    exfiltration: bool,
    exchange: Exchange,
}

impl Outcome {
    /// Sent upstream; `status` is the upstream's.
    pub(crate) fn allowed(status: u16, exchange: Exchange) -> Self {
        Outcome {
            status,
            decision: Decision::Allowed,
            reason: None,
            exfiltration: false,
            exchange,
        }
    }

    /// Refused before any HTTP answer could be given (status 0).
    pub(crate) fn unanswered(reason: String) -> Self {
        Outcome {
            status: 0,
            decision: Decision::Refused,
            reason: Some(reason),
            exfiltration: false,
            exchange: Exchange::default(),
        }
    }

    /// Refused by a phase; the status is the one the server was answered with.
    pub(crate) fn refused(refusal: Refusal) -> Self {
        Outcome {
            status: refusal.status.as_u16(),
            decision: Decision::Refused,
            reason: Some(refusal.reason),
            exfiltration: refusal.exfiltration,
            exchange: refusal.exchange,
        }
    }
}

impl AuditEvent {
    /// The one constructor of audit records: every path (allowed, refused at any phase, failed)
    /// goes through it. `response_bytes` starts at 0 and is counted as the body streams.
    pub(crate) fn new(
        server: &str,
        scope: SecretScope,
        tool_call: Option<String>,
        target: &Target,
        outcome: Outcome,
    ) -> Self {
        let Outcome {
            status,
            decision,
            reason,
            exfiltration,
            exchange,
        } = outcome;
        AuditEvent {
            server: server.to_string(),
            user: match scope {
                SecretScope::User(id) => Some(id),
                SecretScope::Server | SecretScope::Nobody => None,
            },
            tool_call,
            scheme: target.scheme,
            method: target.method.clone(),
            host: target.host.clone(),
            port: target.port,
            path: target.path.clone(),
            status,
            request_bytes: exchange.request_bytes,
            response_bytes: 0,
            credentials: exchange.credentials,
            decision,
            reason,
            exfiltration,
            upstream: exchange.upstream,
        }
    }
}

/// Records an allowed request's event once its response body ends (or is abandoned), with the
/// response bytes counted and a body error as its reason.
pub(crate) struct AuditGuard {
    sink: Arc<dyn AuditSink>,
    event: Option<AuditEvent>,
}

impl AuditGuard {
    pub(crate) fn new(sink: Arc<dyn AuditSink>, event: AuditEvent) -> Self {
        AuditGuard {
            sink,
            event: Some(event),
        }
    }
    pub(crate) fn add_bytes(&mut self, n: usize) {
        if let Some(e) = &mut self.event {
            e.response_bytes += n as u64;
        }
    }
    pub(crate) fn finish(&mut self, error: Option<String>) {
        if let Some(mut e) = self.event.take() {
            if error.is_some() {
                e.reason = error;
            }
            self.sink.record(e);
        }
    }
}

impl Drop for AuditGuard {
    fn drop(&mut self) {
        self.finish(None);
    }
}

pub trait AuditSink: Send + Sync + 'static {
    /// Called once per request; must not block (hand off to a channel for slow storage).
    fn record(&self, event: AuditEvent);
}

/// Logs every record through `tracing` (target `gig_proxy::audit`).
#[derive(Debug, Default, Clone, Copy)]
pub struct TracingAudit;

impl AuditSink for TracingAudit {
    fn record(&self, e: AuditEvent) {
        tracing::info!(
            target: "gig_proxy::audit",
            server = %e.server,
            tool_call = e.tool_call.as_deref().unwrap_or(""),
            method = %e.method,
            host = %e.host,
            port = e.port,
            path = %e.path,
            status = e.status,
            request_bytes = e.request_bytes,
            response_bytes = e.response_bytes,
            credentials = ?e.credentials,
            decision = ?e.decision,
            reason = e.reason.as_deref().unwrap_or(""),
            exfiltration = e.exfiltration,
            "egress"
        );
    }
}

/// The path of a request target with every query value dropped.
pub fn redact_query(path_and_query: &str) -> String {
    match path_and_query.split_once('?') {
        None => path_and_query.to_string(),
        Some((path, query)) => {
            let keys: Vec<String> = query
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| format!("{}=", p.split('=').next().unwrap_or("")))
                .collect();
            format!("{path}?{}", keys.join("&"))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use http::StatusCode;

    use super::*;

    #[test]
    fn audit_paths_keep_keys_and_drop_values() {
        assert_eq!(redact_query("/a/b"), "/a/b");
        assert_eq!(redact_query("/s?q=secret&key=abc&flag"), "/s?q=&key=&flag=");
    }

    #[derive(Default)]
    struct Events(Mutex<Vec<AuditEvent>>);
    impl AuditSink for Events {
        fn record(&self, event: AuditEvent) {
            self.0.lock().unwrap().push(event);
        }
    }

    const SECRET: &str = "sk-live-the-real-key";

    fn target() -> Target {
        Target {
            scheme: Scheme::Https,
            method: "POST".into(),
            host: "api.example.test".into(),
            port: 443,
            path: redact_query(&format!("/v1?key={SECRET}&q=1")),
        }
    }

    fn exchange() -> Exchange {
        Exchange {
            credentials: vec!["OPENAI_API_KEY".into()],
            request_bytes: 12,
            upstream: Some("203.0.113.7:443".parse().unwrap()),
        }
    }

    /// Every outcome a request can have, as the phases produce them.
    fn outcomes() -> Vec<Outcome> {
        vec![
            Outcome::allowed(200, exchange()),
            Outcome::unanswered("TLS SNI \"x\" does not match the CONNECT host y".into()),
            Outcome::refused(Refusal::forbidden(
                "egress to x:443 is not in this server's allowlist",
            )),
            Outcome::refused(Refusal::exfiltration(
                "the placeholder of credential OPENAI_API_KEY was sent to x, which is not one of its hosts",
            )),
            Outcome::refused(
                Refusal::upstream("connecting to 203.0.113.7:443 failed").with(exchange()),
            ),
            Outcome::refused(
                Refusal::response("the response is encoded with \"br\"", "encoded with \"br\"")
                    .with(exchange()),
            ),
        ]
    }

    #[test]
    fn each_outcome_makes_one_event_with_names_and_no_values() {
        let events: Vec<AuditEvent> = outcomes()
            .into_iter()
            .map(|o| {
                AuditEvent::new(
                    "srv",
                    SecretScope::User(7),
                    Some("call-1".into()),
                    &target(),
                    o,
                )
            })
            .collect();
        for e in &events {
            assert_eq!(e.server, "srv");
            assert_eq!(e.user, Some(7));
            assert_eq!(e.tool_call.as_deref(), Some("call-1"));
            assert_eq!(e.path, "/v1?key=&q=");
            assert_eq!(e.response_bytes, 0);
            assert!(!format!("{e:?}").contains(SECRET), "{e:?}");
        }
        let allowed = &events[0];
        assert_eq!(allowed.decision, Decision::Allowed);
        assert_eq!((allowed.status, allowed.reason.as_deref()), (200, None));
        assert_eq!(allowed.credentials, ["OPENAI_API_KEY"]);
        assert_eq!(allowed.request_bytes, 12);
        assert!(allowed.upstream.is_some());
        let unanswered = &events[1];
        assert_eq!(
            (unanswered.status, unanswered.decision),
            (0, Decision::Refused)
        );
        assert_eq!(events[2].status, StatusCode::FORBIDDEN.as_u16());
        assert!(!events[2].exfiltration && events[2].credentials.is_empty());
        assert!(events[3].exfiltration);
        assert_eq!(events[4].status, 502);
        assert_eq!(events[4].credentials, ["OPENAI_API_KEY"]);
        assert_eq!(
            events[5].reason.as_deref(),
            Some("the response is encoded with \"br\"")
        );
        for e in &events[1..] {
            assert_eq!(e.decision, Decision::Refused);
            assert!(e.reason.is_some());
        }
    }

    #[test]
    fn the_guard_records_exactly_once() {
        let event = || {
            AuditEvent::new(
                "srv",
                SecretScope::Server,
                None,
                &target(),
                Outcome::allowed(200, exchange()),
            )
        };
        // Finished, then dropped: one record, with the bytes counted.
        let sink = Arc::new(Events::default());
        let mut guard = AuditGuard::new(sink.clone(), event());
        guard.add_bytes(5);
        guard.add_bytes(6);
        guard.finish(None);
        guard.add_bytes(100);
        guard.finish(Some("late".into()));
        drop(guard);
        let events = sink.0.lock().unwrap().clone();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].response_bytes, 11);
        assert_eq!(events[0].reason, None);
        // Abandoned: the drop records it.
        let sink = Arc::new(Events::default());
        drop(AuditGuard::new(sink.clone(), event()));
        assert_eq!(sink.0.lock().unwrap().len(), 1);
        // A body error becomes the reason; the decision stays what it was.
        let sink = Arc::new(Events::default());
        AuditGuard::new(sink.clone(), event()).finish(Some("response body: reset".into()));
        let events = sink.0.lock().unwrap().clone();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].reason.as_deref(), Some("response body: reset"));
        assert_eq!(events[0].decision, Decision::Allowed);
    }
}
