//! Prometheus metrics for the gateway: the metric families, the recorders that feed them from
//! the extension points other crates already offer (`gig_gateway::audit::CallRecorder` for
//! every `tools/call`, `gig_proxy::AuditSink` for egress, `gig_proxy::SecretSource` for vault
//! reads, the hub's backend states sampled at scrape time, the control plane's `Operations` for installs
//! and credential writes), and the scrape listener.
//!
//! Owns: names and labels (MCP calls follow the OpenTelemetry MCP semantic conventions in
//! Prometheus form — `mcp_server_operation_duration_seconds{mcp_method_name, gen_ai_tool_name,
//! server, error_type}`; the gateway's own families are `gig_*`), and the exposition, which is
//! `prometheus-client`'s OpenMetrics text, never hand-written.
//!
//! Must never: serve on `/mcp`'s listener (scrapes need no client token, so they get their own
//! address), label with an unbounded or identifying value (no principal, host, path or
//! argument: a label's values are bounded by the catalog and the servers installed), or block a
//! recorder's caller (every record is a few atomic increments).

#![forbid(unsafe_code)]

mod calls;
mod egress;
mod families;
mod listener;
mod operations;
mod sampled;

pub use calls::{CallFanOut, MetricsRecorder};
pub use egress::{AuditFanOut, CountedSecrets, EgressMetrics};
pub use families::{InstallVia, Metrics, Outcome};
pub use listener::{ListenError, MetricsListener};
pub use operations::MeteredOperations;
pub use sampled::{AuthFailures, BackendSource, HubBackends, SessionSource};

#[cfg(test)]
mod tests;
