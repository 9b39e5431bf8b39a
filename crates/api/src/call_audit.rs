//! Every `tools/call` into the audit log, off the call's path (through the gateway's
//! [`AuditWriter`]: a bounded queue, held and retried while the database is unreachable).

use gig_gateway::audit::{CallRecord, CallRecorder};
use gig_gateway::audit_writer::{AuditWriter, OwnedAuditEntry};
use gig_store::Store;

const QUEUE: usize = 8192;

#[derive(Debug, Clone)]
pub struct StoreCallAudit {
    writer: AuditWriter<CallRecord>,
}

impl StoreCallAudit {
    /// Starts the writer task on the current runtime.
    pub fn start(store: Store) -> Self {
        StoreCallAudit {
            writer: AuditWriter::start(store, "tool-call", QUEUE, entry),
        }
    }
}

fn entry(call: CallRecord) -> OwnedAuditEntry {
    OwnedAuditEntry {
        detail: serde_json::json!({
            "tool": call.tool,
            "profile": call.profile_id,
            "user": call.user_id,
            "client": call.client,
            "durationMs": call.duration.as_secs_f64() * 1000.0,
        }),
        target: format!("{}/{}", call.backend, call.backend_tool),
        actor: call.principal,
        action: "tool.call",
        result: call.outcome,
    }
}

impl CallRecorder for StoreCallAudit {
    fn record(&self, call: CallRecord) {
        self.writer.send(call);
    }
}
