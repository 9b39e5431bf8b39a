//! State read at scrape time rather than counted as it happens: the hub's backends and the
//! sessions open on `/mcp`.

use std::sync::{Arc, PoisonError};

use gig_gateway::Hub;
use gig_gateway::backend::BackendStatus;

use crate::families::{BackendStateLabels, Metrics, ServerLabels};

/// Where backend states come from at each scrape (the hub; a fixed list in tests).
pub trait BackendSource: Send + Sync + std::fmt::Debug {
    /// Each backend's name, status, and whether it runs in a sandbox.
    fn backends(&self) -> Vec<(String, BackendStatus, bool)>;
}

/// Where the open-session count comes from at each scrape.
pub trait SessionSource: Send + Sync + std::fmt::Debug {
    /// `None` when it cannot be read without waiting (the last value stays).
    fn open_sessions(&self) -> Option<usize>;
}

impl SessionSource for gig_gateway::http::HttpState {
    fn open_sessions(&self) -> Option<usize> {
        gig_gateway::http::HttpState::open_sessions(self)
    }
}

/// Counts `/mcp`'s refusals into `gig_auth_failures_total{surface="mcp"}`.
#[derive(Debug, Clone)]
pub struct AuthFailures(pub Arc<Metrics>);

impl gig_gateway::http::AuthObserver for AuthFailures {
    fn refused(&self, reason: &'static str) {
        self.0.auth_failed("mcp", reason);
    }
}

impl Metrics {
    pub(crate) fn sample_sessions(&self) {
        let source = self
            .sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(open) = source.and_then(|s| s.open_sessions()) {
            self.sessions_open.set(open as i64);
        }
    }
}

/// The running hub; `sandboxed` says which backends run in a sandbox (installed servers and
/// servers-file entries with a `sandbox` block).
pub struct HubBackends<F> {
    pub hub: Arc<Hub>,
    pub sandboxed: F,
}

impl<F> std::fmt::Debug for HubBackends<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubBackends").finish_non_exhaustive()
    }
}

impl<F: Fn(&str) -> bool + Send + Sync> BackendSource for HubBackends<F> {
    fn backends(&self) -> Vec<(String, BackendStatus, bool)> {
        self.hub
            .backends()
            .iter()
            .map(|b| (b.name.clone(), b.status(), (self.sandboxed)(&b.name)))
            .collect()
    }
}

impl Metrics {
    pub(crate) fn sample_backends(&self) {
        let source = self
            .backends
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let Some(source) = source else { return };
        let backends = source.backends();
        // Uninstalled backends disappear from the state gauges.
        self.backend_state.clear();
        let mut running = 0;
        let mut seen = self
            .restarts_seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for (server, status, sandboxed) in backends {
            let state = match &status {
                BackendStatus::Starting => "starting",
                BackendStatus::Up { .. } => "up",
                BackendStatus::Down { .. } => "down",
            };
            if sandboxed && state == "up" {
                running += 1;
            }
            if let BackendStatus::Down { restarts, .. } = status {
                let before = seen.entry(server.clone()).or_insert(0);
                if restarts > *before {
                    self.backend_restarts
                        .get_or_create(&ServerLabels {
                            server: server.clone(),
                        })
                        .inc_by(u64::from(restarts - *before));
                    *before = restarts;
                }
            }
            self.backend_state
                .get_or_create(&BackendStateLabels { server, state })
                .set(1);
        }
        self.sandboxes_running.set(running);
    }
}
