//! Every `tools/call` into the audit log, off the call's path: records go through a bounded
//! queue to one writer task; when the store cannot keep up, records are dropped and counted
//! in a warning rather than slowing calls down.

use gig_gateway::audit::{CallRecord, CallRecorder};
use gig_store::{AuditEntry, Store};
use tokio::sync::mpsc;

const QUEUE: usize = 8192;

#[derive(Debug, Clone)]
pub struct StoreCallAudit {
    queue: mpsc::Sender<CallRecord>,
}

impl StoreCallAudit {
    /// Starts the writer task on the current runtime.
    pub fn start(store: Store) -> Self {
        let (queue, mut calls) = mpsc::channel::<CallRecord>(QUEUE);
        tokio::spawn(async move {
            while let Some(call) = calls.recv().await {
                let detail = serde_json::json!({
                    "tool": call.tool,
                    "profile": call.profile_id,
                    "user": call.user_id,
                    "client": call.client,
                    "durationMs": call.duration.as_secs_f64() * 1000.0,
                });
                let target = format!("{}/{}", call.backend, call.backend_tool);
                let entry = AuditEntry {
                    actor: &call.principal,
                    action: "tool.call",
                    target: &target,
                    result: call.outcome,
                    detail: &detail,
                };
                if let Err(e) = store.append_audit(&entry).await {
                    tracing::error!(error = %e, "cannot write a tool-call audit record");
                }
            }
        });
        StoreCallAudit { queue }
    }
}

impl CallRecorder for StoreCallAudit {
    fn record(&self, call: CallRecord) {
        if self.queue.try_send(call).is_err() {
            tracing::warn!("tool-call audit queue full: a record was dropped");
        }
    }
}
