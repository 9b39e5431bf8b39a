//! The metric families and their labels, registered once in one [`Registry`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

use crate::sampled::{BackendSource, SessionSource};

/// OpenTelemetry's advice for `mcp.server.operation.duration`, with sub-millisecond buckets
/// in front: a call through the gateway to a local server takes a fraction of a millisecond.
const CALL_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0,
    120.0, 300.0,
];
/// Installs pull and verify an image: seconds to minutes.
const INSTALL_BUCKETS: &[f64] = &[
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// `mcp.method.name`, `gen_ai.tool.name`, the backend (`server`) and `error.type` (empty when
/// the call succeeded; `tool_error` when the tool answered `isError`; `error` otherwise).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct OperationLabels {
    pub(crate) mcp_method_name: String,
    pub(crate) gen_ai_tool_name: String,
    pub(crate) server: String,
    pub(crate) error_type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ServerLabels {
    pub(crate) server: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct BackendStateLabels {
    pub(crate) server: String,
    pub(crate) state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct EgressLabels {
    pub(crate) server: String,
    pub(crate) decision: &'static str,
}

/// How an operation ended.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Error,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Error => "error",
        }
    }
}

impl<T, E> From<&Result<T, E>> for Outcome {
    fn from(result: &Result<T, E>) -> Self {
        if result.is_ok() {
            Outcome::Ok
        } else {
            Outcome::Error
        }
    }
}

/// Where an install was asked for.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum InstallVia {
    /// `GIG_INSTALL` at start.
    Boot,
    /// The control plane (`/api`).
    Api,
}

impl InstallVia {
    fn label(self) -> &'static str {
        match self {
            InstallVia::Boot => "boot",
            InstallVia::Api => "api",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct InstallLabels {
    pub(crate) via: &'static str,
    pub(crate) outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct AuthLabels {
    pub(crate) surface: &'static str,
    pub(crate) reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct VaultLabels {
    pub(crate) operation: &'static str,
    pub(crate) outcome: &'static str,
}

/// Every family the gateway exposes, and where hub state is sampled from at scrape time.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub(crate) operation_duration: HistogramFamily<OperationLabels>,
    pub(crate) backend_state: Family<BackendStateLabels, Gauge>,
    pub(crate) sandboxes_running: Gauge,
    pub(crate) backend_restarts: Family<ServerLabels, Counter>,
    pub(crate) egress_requests: Family<EgressLabels, Counter>,
    pub(crate) egress_injections: Family<ServerLabels, Counter>,
    pub(crate) egress_exfiltration: Family<ServerLabels, Counter>,
    pub(crate) install_duration: HistogramFamily<InstallLabels>,
    pub(crate) uninstalls: Family<InstallLabels, Counter>,
    pub(crate) vault_operations: Family<VaultLabels, Counter>,
    pub(crate) sessions_open: Gauge,
    pub(crate) auth_failures: Family<AuthLabels, Counter>,
    pub(crate) backends: Mutex<Option<Arc<dyn BackendSource>>>,
    pub(crate) sessions: Mutex<Option<Arc<dyn SessionSource>>>,
    /// The highest restart count seen per backend (the hub shows it only while one is down).
    pub(crate) restarts_seen: Mutex<HashMap<String, u32>>,
}

fn histogram_family<L>(buckets: fn() -> Histogram) -> HistogramFamily<L>
where
    L: Clone + std::hash::Hash + Eq,
{
    Family::new_with_constructor(buckets)
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::default();
        let operation_duration =
            histogram_family::<OperationLabels>(|| Histogram::new(CALL_BUCKETS.iter().copied()));
        registry.register_with_unit(
            "mcp_server_operation_duration",
            "MCP requests the gateway served, by method, tool and backend (OpenTelemetry mcp.server.operation.duration); error_type is empty on success",
            Unit::Seconds,
            operation_duration.clone(),
        );
        let backend_state = Family::<BackendStateLabels, Gauge>::default();
        registry.register(
            "gig_backend_up",
            "1 for each backend's current state (starting, up, down), sampled at scrape",
            backend_state.clone(),
        );
        let sandboxes_running = Gauge::default();
        registry.register(
            "gig_sandboxes_running",
            "Sandboxed backends whose server is up, sampled at scrape",
            sandboxes_running.clone(),
        );
        let backend_restarts = Family::<ServerLabels, Counter>::default();
        registry.register(
            "gig_backend_restarts",
            "Times a backend went down and was restarted",
            backend_restarts.clone(),
        );
        let egress_requests = Family::<EgressLabels, Counter>::default();
        registry.register(
            "gig_egress_requests",
            "Requests sandboxed servers made through the egress proxy, by decision (allowed, refused)",
            egress_requests.clone(),
        );
        let egress_injections = Family::<ServerLabels, Counter>::default();
        registry.register(
            "gig_egress_credential_injections",
            "Credentials the egress proxy put in place of their placeholders",
            egress_injections.clone(),
        );
        let egress_exfiltration = Family::<ServerLabels, Counter>::default();
        registry.register(
            "gig_egress_exfiltration_attempts",
            "Requests that carried a placeholder to a host its credential may not go to",
            egress_exfiltration.clone(),
        );
        let install_duration =
            histogram_family::<InstallLabels>(|| Histogram::new(INSTALL_BUCKETS.iter().copied()));
        registry.register_with_unit(
            "gig_install_duration",
            "Installs from the signed index (resolve, pull, verify, extract, record)",
            Unit::Seconds,
            install_duration.clone(),
        );
        let uninstalls = Family::<InstallLabels, Counter>::default();
        registry.register(
            "gig_uninstalls",
            "Uninstalls asked of the running gateway",
            uninstalls.clone(),
        );
        let vault_operations = Family::<VaultLabels, Counter>::default();
        registry.register(
            "gig_vault_operations",
            "Vault reads (the egress proxy's secret lookups) and writes (credentials set or deleted over /api)",
            vault_operations.clone(),
        );
        let sessions_open = Gauge::default();
        registry.register(
            "gig_mcp_sessions",
            "MCP sessions open on /mcp, sampled at scrape",
            sessions_open.clone(),
        );
        let auth_failures = Family::<AuthLabels, Counter>::default();
        registry.register(
            "gig_auth_failures",
            "Requests refused for their credentials, by surface (mcp) and reason (missing, invalid_token, insufficient_scope)",
            auth_failures.clone(),
        );
        registry.register(
            "gig_build",
            "The gateway's version",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        Arc::new(Metrics {
            registry,
            operation_duration,
            backend_state,
            sandboxes_running,
            backend_restarts,
            egress_requests,
            egress_injections,
            egress_exfiltration,
            install_duration,
            uninstalls,
            vault_operations,
            sessions_open,
            auth_failures,
            backends: Mutex::new(None),
            sessions: Mutex::new(None),
            restarts_seen: Mutex::new(HashMap::new()),
        })
    }

    /// Samples backend states from `source` at every scrape.
    pub fn watch_backends(&self, source: Arc<dyn BackendSource>) {
        *self.backends.lock().unwrap_or_else(PoisonError::into_inner) = Some(source);
    }

    /// Samples open sessions from `source` at every scrape.
    pub fn watch_sessions(&self, source: Arc<dyn SessionSource>) {
        *self.sessions.lock().unwrap_or_else(PoisonError::into_inner) = Some(source);
    }

    /// One request refused for its credentials.
    pub fn auth_failed(&self, surface: &'static str, reason: &'static str) {
        self.auth_failures
            .get_or_create(&AuthLabels { surface, reason })
            .inc();
    }

    /// One install's end.
    pub fn install_finished(&self, via: InstallVia, outcome: Outcome, took: Duration) {
        self.install_duration
            .get_or_create(&InstallLabels {
                via: via.label(),
                outcome: outcome.label(),
            })
            .observe(took.as_secs_f64());
    }

    pub fn uninstall_finished(&self, via: InstallVia, outcome: Outcome) {
        self.uninstalls
            .get_or_create(&InstallLabels {
                via: via.label(),
                outcome: outcome.label(),
            })
            .inc();
    }

    /// A vault operation (`read`, `write`, `delete`).
    pub fn vault_operation(&self, operation: &'static str, outcome: Outcome) {
        self.vault_operations
            .get_or_create(&VaultLabels {
                operation,
                outcome: outcome.label(),
            })
            .inc();
    }

    /// The exposition (OpenMetrics text), with hub state sampled now.
    pub fn render(&self) -> String {
        self.sample_backends();
        self.sample_sessions();
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}
