//! Gig'MCP's core: one MCP endpoint in front of many MCP servers.
//!
//! Owns aggregation (naming, routing, the catalog), supervision (start, restart with backoff,
//! bounded calls) and the `/mcp` HTTP surface. It treats every backend as hostile: a backend
//! can fail its own calls and nothing else. It never reads the environment itself (see
//! `gig-config`) and never holds a credential beyond the static token's digest.

pub mod aggregator;
pub mod backend;
pub mod catalog;
mod client;
pub mod egress;
pub mod http;
pub mod hub;
pub mod installed;
pub mod naming;
pub mod rugpull;
pub mod sandboxed;
pub mod stdout_guard;

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use gig_config::{GatewayConfig, ServerSpec};
use tokio_util::sync::CancellationToken;

pub use backend::{Launcher, StdioLauncher};

/// A backend's name and how to start it.
pub type NamedLauncher = (String, Box<dyn Launcher>);
pub use hub::Hub;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error(
        "server {0:?} is declared sandboxed, but the sandbox is unavailable (bubblewrap or bootstrap missing)"
    )]
    SandboxUnavailable(String),
    #[error("HTTP server failed: {0}")]
    Serve(std::io::Error),
}

/// Creates the data directory with mode 0711, tightening an existing one: nobody else may list
/// it, and every file holding state is 0600. Others may traverse it only to reach
/// [`public_dir`], whose contents (extracted images, the proxy's CA certificate) bubblewrap,
/// running as an unprivileged user, must read.
pub fn prepare_data_dir(path: &Path) -> Result<(), GatewayError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let fail = |path: &Path| {
        let path = path.to_owned();
        move |source| GatewayError::DataDir { path, source }
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o711)
        .create(path)
        .map_err(fail(path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o711)).map_err(fail(path))?;
    let public = public_dir(path);
    std::fs::DirBuilder::new()
        .mode(0o755)
        .create(&public)
        .or_else(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => Ok(()),
            _ => Err(e),
        })
        .map_err(fail(&public))?;
    std::fs::set_permissions(&public, std::fs::Permissions::from_mode(0o755)).map_err(fail(&public))
}

/// The world-readable part of the data directory: nothing secret ever goes here.
pub fn public_dir(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("public")
}

/// Launchers for the backends declared in the servers file. Sandboxed ones need a spawner
/// and the bootstrap binary; without them a sandboxed declaration is refused (never run
/// unsandboxed by accident).
pub fn launchers(
    specs: Vec<ServerSpec>,
    parent_env: &[(String, String)],
    sandbox: Option<std::sync::Arc<sandboxed::SandboxRuntime>>,
) -> Result<Vec<NamedLauncher>, GatewayError> {
    specs
        .into_iter()
        .map(|spec| {
            let launcher: Box<dyn Launcher> = match (&spec.sandbox, &sandbox) {
                (None, _) => Box::new(StdioLauncher::new(
                    spec.name.clone(),
                    spec.command,
                    parent_env.to_vec(),
                )),
                (Some(policy), Some(runtime)) => Box::new(sandboxed::SandboxLauncher::new(
                    spec.name.clone(),
                    sandboxed::SandboxLaunch {
                        command: spec.command.clone(),
                        policy: policy.clone(),
                        source: sandboxed::ProgramSource::HostPath,
                    },
                    runtime.clone(),
                )),
                (Some(_), None) => return Err(GatewayError::SandboxUnavailable(spec.name)),
            };
            Ok((spec.name, launcher))
        })
        .collect()
}

/// Launchers for servers that are all plain stdio children (tests, and files without
/// sandboxed entries).
pub fn stdio_launchers(
    specs: Vec<ServerSpec>,
    parent_env: &[(String, String)],
) -> Vec<NamedLauncher> {
    specs
        .into_iter()
        .map(|spec| {
            let launcher = StdioLauncher::new(spec.name.clone(), spec.command, parent_env.to_vec());
            (spec.name, Box::new(launcher) as Box<dyn Launcher>)
        })
        .collect()
}

/// Runs the gateway until `shutdown` resolves, then drains: new requests get 503, calls in
/// flight get up to the grace period, then sessions close and every backend is stopped.
pub async fn run(
    config: GatewayConfig,
    backends: Vec<NamedLauncher>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), GatewayError> {
    let listener = bind(&config).await?;
    serve(listener, config, backends, shutdown).await
}

async fn bind(config: &GatewayConfig) -> Result<tokio::net::TcpListener, GatewayError> {
    tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| GatewayError::Bind {
            addr: config.listen,
            source,
        })
}

/// Binds `GIG_LISTEN` and serves a hub the caller built (with a tool gate, say).
pub async fn run_hub(
    config: GatewayConfig,
    hub: Arc<Hub>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), GatewayError> {
    let listener = bind(&config).await?;
    serve_hub(listener, config, hub, shutdown).await
}

/// Like [`run`], on a listener the caller bound (tests bind port 0).
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: GatewayConfig,
    backends: Vec<NamedLauncher>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), GatewayError> {
    let hub = Hub::start(config.limits, backends, CancellationToken::new());
    serve_hub(listener, config, hub, shutdown).await
}

/// Serves `hub` on `listener` until `shutdown`, then drains and stops the hub.
pub async fn serve_hub(
    listener: tokio::net::TcpListener,
    config: GatewayConfig,
    hub: Arc<Hub>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), GatewayError> {
    prepare_data_dir(&config.store.data_dir)?;
    let local = listener.local_addr().map_err(GatewayError::Serve)?;
    let mcp_shutdown = CancellationToken::new();
    let (router, state) = http::router(&config, hub.clone(), mcp_shutdown.clone());
    tracing::info!(listen = %local, public_url = %config.public_url, backends = hub.backends().len(), "gateway listening");

    let grace = config.limits.shutdown_grace;
    let drain_state = state.clone();
    let drain = async move {
        shutdown.await;
        tracing::info!("shutting down: draining calls in flight");
        drain_state.draining.store(true, Ordering::Release);
        if tokio::time::timeout(grace, drain_state.posts_drained())
            .await
            .is_err()
        {
            tracing::warn!(
                grace_secs = grace.as_secs(),
                "calls still in flight after the grace period"
            );
        }
        mcp_shutdown.cancel();
    };
    // Connections that never finish (a stalled client) must not keep the backends alive:
    // once shutdown has begun, the server gets the grace period plus a margin, then stops.
    let stopping = CancellationToken::new();
    let stopping_signal = stopping.clone();
    let drain = async move {
        drain.await;
        stopping_signal.cancel();
    };
    let serve = axum::serve(listener, router).with_graceful_shutdown(drain);
    let served = tokio::select! {
        served = serve => served,
        () = async {
            stopping.cancelled().await;
            tokio::time::sleep(grace + std::time::Duration::from_secs(5)).await;
        } => {
            tracing::warn!("connections still open after the grace period; closing them");
            Ok(())
        }
    };
    hub.stop().await;
    tracing::info!("gateway stopped");
    served.map_err(GatewayError::Serve)
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the process still dies on the default action.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
