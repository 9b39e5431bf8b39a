//! The scrape listener: `GET /metrics` on its own address (`GIG_METRICS_LISTEN`), with no
//! authentication and nothing else on it, so it never shares `/mcp`'s port or its token.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use crate::families::Metrics;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("GIG_METRICS_LISTEN: cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A bound scrape listener, not yet serving.
#[derive(Debug)]
pub struct MetricsListener {
    listener: tokio::net::TcpListener,
}

impl MetricsListener {
    pub async fn bind(addr: SocketAddr) -> Result<Self, ListenError> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ListenError::Bind { addr, source })?;
        Ok(MetricsListener { listener })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves `/metrics` until `stop` is cancelled.
    pub async fn serve(self, metrics: Arc<Metrics>, stop: CancellationToken) {
        let router = Router::new().route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move { ([(CONTENT_TYPE, OPENMETRICS)], metrics.render()).into_response() }
            }),
        );
        if let Err(e) = axum::serve(self.listener, router)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
        {
            tracing::warn!(error = %e, "metrics listener stopped");
        }
    }
}
