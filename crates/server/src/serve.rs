//! Serving the one HTTP router until shutdown, then draining: new requests get 503, calls in
//! flight get up to the grace period, then MCP sessions close and every backend is stopped.
//!
//! The accept loop is our own (not `axum::serve`) because every connection is admitted first:
//! at most `GIG_MAX_CONNECTIONS` (kept below the open-file limit, see [`connections`]) and
//! `GIG_MAX_CONNECTIONS_PER_IP`, and each must deliver a request's headers within
//! `GIG_HEADER_READ_TIMEOUT_SECS`; a connection refused or too slow is closed.

mod body_read;
mod connections;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use gig_config::GatewayConfig;
use gig_gateway::Hub;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt as _;

use connections::{Admission, FD_RESERVE, effective_max_connections};

/// Connections still open this long after the grace period are closed regardless.
const CLOSE_MARGIN: Duration = Duration::from_secs(5);
/// Pause after an accept error that is not the peer's (out of descriptors): retrying at once
/// would spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(200);

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
    serve_with_api(listener, config, hub, None, None, shutdown).await
}

/// Like [`serve`], with the control plane's `/api` on.
pub async fn serve_with_api(
    listener: tokio::net::TcpListener,
    config: GatewayConfig,
    hub: Arc<Hub>,
    api: Option<Arc<gig_api::ApiState>>,
    metrics: Option<Arc<gig_metrics::Metrics>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    gig_runtime::data_dir::prepare(&config.store.data_dir)?;
    let local = listener.local_addr().map_err(ServeError::Serve)?;
    let mcp_shutdown = CancellationToken::new();
    let api_streams_end = api.as_ref().map(|api| api.streams_end.clone());
    let (router, state) =
        crate::router::build(&config, hub.clone(), api, metrics, mcp_shutdown.clone());
    tracing::info!(listen = %local, public_url = %config.public_url, backends = hub.backends().len(), "gateway listening");

    let grace = config.limits.shutdown_grace;
    let drain_state = state.clone();
    let api_streams = api_streams_end;
    // Connections that never finish (a stalled client) must not keep the backends alive:
    // once shutdown has begun, the server gets the grace period plus a margin, then stops.
    let stopping = CancellationToken::new();
    let stopping_signal = stopping.clone();
    let drain = async move {
        shutdown.await;
        tracing::info!("shutting down: draining calls in flight");
        drain_state.draining.store(true, Ordering::Release);
        if let Some(streams) = &api_streams {
            streams.cancel();
        }
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
    let limits = &config.limits;
    let max_connections = effective_max_connections(limits.max_connections);
    if max_connections < limits.max_connections {
        tracing::warn!(
            configured = limits.max_connections,
            applied = max_connections,
            reserve = FD_RESERVE,
            "GIG_MAX_CONNECTIONS lowered to fit the open-file limit (raise it with `ulimit -n`)"
        );
    }
    let admission = Admission::new(max_connections, limits.max_connections_per_ip);
    let served = accept_loop(
        listener,
        router,
        admission,
        limits.header_read_timeout,
        drain,
    );
    let served = tokio::select! {
        served = served => served,
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

/// Accepts and serves connections until `drain` completes, then asks every connection to
/// finish its current request and waits for them all to close.
async fn accept_loop(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    admission: Arc<Admission>,
    header_read_timeout: Duration,
    drain: impl Future<Output = ()>,
) -> Result<(), std::io::Error> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // Also bounds how long an idle keep-alive connection is kept.
        .header_read_timeout(header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let closing = CancellationToken::new();
    let connections = TaskTracker::new();
    let mut drain = std::pin::pin!(drain);
    loop {
        let (tcp, peer) = tokio::select! {
            () = &mut drain => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::select! {
                        () = &mut drain => break,
                        () = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => continue,
                    }
                }
            },
        };
        let admitted = match admission.admit(peer.ip()) {
            Ok(admitted) => admitted,
            Err(refused) => {
                tracing::debug!(%peer, ?refused, "connection refused: too many open");
                drop(tcp);
                continue;
            }
        };
        // Without TCP_NODELAY a response written in pieces (SSE: headers, then an event) waits
        // for the client's delayed ACK: a ~40 ms floor per call (decision 46).
        let _ = tcp.set_nodelay(true);
        connections.spawn(serve_connection(
            builder.clone(),
            tcp,
            peer,
            router.clone(),
            header_read_timeout,
            closing.clone(),
            admitted,
        ));
    }
    drop(listener);
    closing.cancel();
    connections.close();
    connections.wait().await;
    Ok(())
}

/// Serves one connection. Until its first request has arrived it must do so within the header
/// timeout (hyper's own timer covers HTTP/1 headers, not the wait for the protocol preface);
/// when `closing` fires it finishes the request under way and closes.
async fn serve_connection(
    builder: auto::Builder<TokioExecutor>,
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    router: axum::Router,
    header_read_timeout: Duration,
    closing: CancellationToken,
    admitted: connections::Admitted,
) {
    let _admitted = admitted;
    let first_request = Arc::new(AtomicBool::new(false));
    let seen = first_request.clone();
    let service =
        hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
            seen.store(true, Ordering::Relaxed);
            let version = request.version();
            let (request, body_read) = body_read::track(request);
            let response = router.clone().oneshot(request.map(axum::body::Body::new));
            async move {
                let mut response = response.await?;
                body_read::mark_unread_close(version, &body_read, &mut response);
                Ok::<_, std::convert::Infallible>(response)
            }
        });
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(tcp), service);
    let mut connection = std::pin::pin!(connection);
    let first_deadline = tokio::time::sleep(header_read_timeout);
    let mut first_deadline = std::pin::pin!(first_deadline);
    let mut watching_first = true;
    let mut shutting_down = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            () = &mut first_deadline, if watching_first => {
                if !first_request.load(Ordering::Relaxed) {
                    tracing::debug!(%peer, "no request within the header timeout; closing");
                    return;
                }
                watching_first = false;
            }
            () = closing.cancelled(), if !shutting_down => {
                connection.as_mut().graceful_shutdown();
                shutting_down = true;
            }
        }
    }
}

/// Errors that concern one connection only (the peer gave up during the handshake).
fn is_connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
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
