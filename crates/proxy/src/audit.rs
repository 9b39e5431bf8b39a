//! One audit record per proxied request or refusal. Records name credentials, never values.

use std::net::SocketAddr;

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
