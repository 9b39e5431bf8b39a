//! Serving the one HTTP router until shutdown, then draining: new requests get 503, calls in
//! flight get up to the grace period, then MCP sessions close and every backend is stopped.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::serve::ListenerExt;
use gig_config::GatewayConfig;
use gig_gateway::Hub;
use tokio_util::sync::CancellationToken;

/// Connections still open this long after the grace period are closed regardless.
const CLOSE_MARGIN: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    DataDir(#[from] gig_runtime::data_dir::DataDirError),
    #[error("HTTP server failed: {0}")]
    Serve(std::io::Error),
}

/// Binds `GIG_LISTEN`.
pub async fn bind(config: &GatewayConfig) -> Result<tokio::net::TcpListener, ServeError> {
    tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: config.listen,
            source,
        })
}

/// Serves `hub` on `listener` until `shutdown`, then drains and stops the hub; when this
/// returns, every backend's process has been killed.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: GatewayConfig,
    hub: Arc<Hub>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    serve_with_api(listener, config, hub, None, shutdown).await
}

/// Like [`serve`], with the control plane's `/api` on.
pub async fn serve_with_api(
    listener: tokio::net::TcpListener,
    config: GatewayConfig,
    hub: Arc<Hub>,
    api: Option<Arc<gig_api::ApiState>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    gig_runtime::data_dir::prepare(&config.store.data_dir)?;
    let local = listener.local_addr().map_err(ServeError::Serve)?;
    let mcp_shutdown = CancellationToken::new();
    let (router, state) = crate::router::build(&config, hub.clone(), api, mcp_shutdown.clone());
    tracing::info!(listen = %local, public_url = %config.public_url, backends = hub.backends().len(), "gateway listening");

    let grace = config.limits.shutdown_grace;
    let drain_state = state.clone();
    // Connections that never finish (a stalled client) must not keep the backends alive:
    // once shutdown has begun, the server gets the grace period plus a margin, then stops.
    let stopping = CancellationToken::new();
    let stopping_signal = stopping.clone();
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
        stopping_signal.cancel();
    };
    // Without TCP_NODELAY a response written in pieces (SSE: headers, then an event) waits for
    // the client's delayed ACK: a ~40 ms floor per call (decision 46).
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let serve = axum::serve(listener, router).with_graceful_shutdown(drain);
    let served = tokio::select! {
        served = serve => served,
        () = async {
            stopping.cancelled().await;
            tokio::time::sleep(grace + CLOSE_MARGIN).await;
        } => {
            tracing::warn!("connections still open after the grace period; closing them");
            Ok(())
        }
    };
    hub.stop().await;
    tracing::info!("HTTP stopped, backends stopped");
    served.map_err(ServeError::Serve)
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
