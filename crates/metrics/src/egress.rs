//! The egress proxy's records and the vault reads it makes, counted on their way to the
//! audit log and the vault.

use std::sync::Arc;

use futures::future::BoxFuture;
use gig_proxy::{
    AuditEvent, AuditSink, Decision, SecretError, SecretScope, SecretSource, Zeroizing,
};

use crate::families::{EgressLabels, Metrics, Outcome, ServerLabels};

/// Counts requests by decision, credential injections and exfiltration attempts per server.
#[derive(Debug, Clone)]
pub struct EgressMetrics(pub Arc<Metrics>);

impl AuditSink for EgressMetrics {
    fn record(&self, event: AuditEvent) {
        let decision = match event.decision {
            Decision::Allowed => "allowed",
            Decision::Refused => "refused",
        };
        let metrics = &self.0;
        metrics
            .egress_requests
            .get_or_create(&EgressLabels {
                server: event.server.clone(),
                decision,
            })
            .inc();
        let server = ServerLabels {
            server: event.server,
        };
        if !event.credentials.is_empty() {
            metrics
                .egress_injections
                .get_or_create(&server)
                .inc_by(event.credentials.len() as u64);
        }
        if event.exfiltration {
            metrics.egress_exfiltration.get_or_create(&server).inc();
        }
    }
}

/// Hands every egress record to each sink in turn (the store's audit log and the metrics).
pub struct AuditFanOut(pub Vec<Arc<dyn AuditSink>>);

impl std::fmt::Debug for AuditFanOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditFanOut")
            .field("sinks", &self.0.len())
            .finish()
    }
}

impl AuditSink for AuditFanOut {
    fn record(&self, event: AuditEvent) {
        if let Some((last, others)) = self.0.split_last() {
            for sink in others {
                sink.record(event.clone());
            }
            last.record(event);
        }
    }
}

/// A [`SecretSource`] that counts its reads (`gig_vault_operations_total{operation="read"}`);
/// the value passes through untouched and is never looked at.
pub struct CountedSecrets {
    inner: Arc<dyn SecretSource>,
    metrics: Arc<Metrics>,
}

impl CountedSecrets {
    pub fn new(inner: Arc<dyn SecretSource>, metrics: Arc<Metrics>) -> Self {
        CountedSecrets { inner, metrics }
    }
}

impl std::fmt::Debug for CountedSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CountedSecrets").finish_non_exhaustive()
    }
}

impl SecretSource for CountedSecrets {
    fn secret<'a>(
        &'a self,
        server: &'a str,
        scope: SecretScope,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Zeroizing<String>, SecretError>> {
        Box::pin(async move {
            let value = self.inner.secret(server, scope, name).await;
            self.metrics.vault_operation("read", Outcome::from(&value));
            value
        })
    }
}
