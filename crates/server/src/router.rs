//! The one HTTP router: `/mcp` and the health endpoints, the control plane's `/api` (with the
//! OAuth authorization server for `/mcp` beside it), and the
//! console at `/` — every surface shares one listener, one origin and one shutdown. The console
//! is mounted with or without the control plane: without it, its pages say how to turn `/api`
//! on (they only ever call `/api`).

use std::sync::Arc;

use axum::Router;
use gig_config::GatewayConfig;
use gig_gateway::Hub;
use gig_gateway::audit::CallRecorder;
use gig_gateway::http::HttpState;
use tokio_util::sync::CancellationToken;

/// Builds the router. `mcp_shutdown` ends every MCP stream and session when cancelled. With
/// no control plane (`api` is `None`), every `/api` route says how to turn it on. Every
/// `tools/call` goes to the audit log (with the control plane) and, with `metrics`, so do
/// refusals and the open-session count.
pub fn build(
    config: &GatewayConfig,
    hub: Arc<Hub>,
    api: Option<Arc<gig_api::ApiState>>,
    metrics: Option<Arc<gig_metrics::Metrics>>,
    mcp_shutdown: CancellationToken,
) -> (Router, Arc<HttpState>) {
    let audit = api
        .as_ref()
        .map(|api| api.call_audit.clone() as Arc<dyn CallRecorder>);
    let calls = metrics
        .as_ref()
        .map(|m| Arc::new(gig_metrics::MetricsRecorder(m.clone())) as Arc<dyn CallRecorder>);
    let extras = gig_gateway::http::McpExtras {
        resolver: api
            .as_ref()
            .map(|api| api.mcp_tokens.clone() as Arc<dyn gig_gateway::http::PrincipalResolver>),
        recorder: gig_metrics::CallFanOut::of(audit.into_iter().chain(calls).collect()),
        oauth: api.as_ref().map(|api| api.oauth.challenge()),
        continuation: Some(Arc::new(gig_telemetry::W3cTraceContext)),
        auth_observer: metrics.as_ref().map(|m| {
            Arc::new(gig_metrics::AuthFailures(m.clone()))
                as Arc<dyn gig_gateway::http::AuthObserver>
        }),
    };
    let (mcp, state) = gig_gateway::http::router(config, hub, extras, mcp_shutdown);
    if let Some(metrics) = &metrics {
        metrics.watch_sessions(state.clone());
    }
    let api = match api {
        Some(api) => gig_api::router(api),
        None => gig_api::disabled_router(),
    };
    (mcp.merge(api).merge(gig_dashboard::router()), state)
}
