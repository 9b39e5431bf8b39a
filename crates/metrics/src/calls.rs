//! Every finished `tools/call`, as the gateway's [`CallRecorder`] hands it over.

use std::sync::Arc;

use gig_gateway::audit::{CallRecord, CallRecorder};

use crate::families::{Metrics, OperationLabels};

/// Feeds `mcp_server_operation_duration_seconds`; the principal is never a label.
#[derive(Debug, Clone)]
pub struct MetricsRecorder(pub Arc<Metrics>);

impl CallRecorder for MetricsRecorder {
    fn record(&self, call: CallRecord) {
        let error_type = match call.outcome {
            "ok" => "",
            other => other,
        };
        self.0
            .operation_duration
            .get_or_create(&OperationLabels {
                mcp_method_name: "tools/call".to_owned(),
                gen_ai_tool_name: call.backend_tool,
                server: call.backend,
                error_type: error_type.to_owned(),
            })
            .observe(call.duration.as_secs_f64());
    }
}

/// Hands every record to each recorder in turn (the audit log and the metrics), so the
/// gateway's one recorder slot serves both.
#[derive(Debug, Clone)]
pub struct CallFanOut(pub Vec<Arc<dyn CallRecorder>>);

impl CallFanOut {
    /// `None` when there is nothing to record into; the recorder itself when there is one.
    pub fn of(recorders: Vec<Arc<dyn CallRecorder>>) -> Option<Arc<dyn CallRecorder>> {
        match recorders.len() {
            0 => None,
            1 => recorders.into_iter().next(),
            _ => Some(Arc::new(CallFanOut(recorders))),
        }
    }
}

impl CallRecorder for CallFanOut {
    fn record(&self, call: CallRecord) {
        if let Some((last, others)) = self.0.split_last() {
            for recorder in others {
                recorder.record(call.clone());
            }
            last.record(call);
        }
    }
}
