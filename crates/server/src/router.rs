//! The one HTTP router: `/mcp` and the health endpoints today; the control plane's `/api` and
//! the dashboard at `/` are merged here as they land, so every surface shares one listener,
//! one origin and one shutdown.

use std::sync::Arc;

use axum::Router;
use gig_config::GatewayConfig;
use gig_gateway::Hub;
use gig_gateway::http::HttpState;
use tokio_util::sync::CancellationToken;

/// Builds the router. `mcp_shutdown` ends every MCP stream and session when cancelled.
pub fn build(
    config: &GatewayConfig,
    hub: Arc<Hub>,
    mcp_shutdown: CancellationToken,
) -> (Router, Arc<HttpState>) {
    gig_gateway::http::router(config, hub, mcp_shutdown)
}
