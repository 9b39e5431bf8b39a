//! `gigmcp`: the gateway. Thin by design: read configuration, set up logging, hand over to
//! `gig-gateway`.

use anyhow::Context;
use clap::{Parser, Subcommand};
use gig_config::{GatewayConfig, LogFormat, ProcessEnv, parse_servers_file};

#[derive(Parser)]
#[command(
    version,
    about = "Gig'MCP: one MCP endpoint in front of many MCP servers"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (the default). Configuration comes from GIG_* variables.
    Serve,
}

fn init_logging(format: LogFormat, filter: &str) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .with_context(|| format!("GIG_LOG={filter:?} is not a valid log filter"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let config = GatewayConfig::from_env(&ProcessEnv)?;
            init_logging(config.log_format, &config.log_filter)?;
            runtime(config.worker_threads)?.block_on(serve(config))
        }
    }
}

/// One thread by default: on small machines, cross-thread wake-ups cost more than the
/// parallelism gains (DESIGN.md, decision 18).
fn runtime(threads: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(threads);
        builder
    };
    Ok(builder.enable_all().build()?)
}

async fn serve(config: GatewayConfig) -> anyhow::Result<()> {
    let specs = match &config.servers_file {
        Some(path) => parse_servers_file(path)?,
        None => {
            tracing::warn!("GIG_SERVERS_FILE is not set: no backends");
            Vec::new()
        }
    };
    let parent_env: Vec<(String, String)> = std::env::vars().collect();
    let backends = gig_gateway::stdio_launchers(specs, &parent_env);
    gig_gateway::run(config, backends, gig_gateway::shutdown_signal()).await?;
    Ok(())
}
