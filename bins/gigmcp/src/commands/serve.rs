//! `gigmcp serve` (the default): the gateway, until SIGTERM or SIGINT.

use gig_config::{GatewayConfig, ProcessEnv};

pub async fn run(config: GatewayConfig) -> anyhow::Result<()> {
    Ok(gig_server::run(config, &ProcessEnv).await?)
}
