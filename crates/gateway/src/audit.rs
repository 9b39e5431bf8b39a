//! What the gateway records about each `tools/call`: who (the principal, and the profile when
//! there is one), which tool (as the caller named it and where it went), the outcome and the
//! duration — never the arguments or the result, which may hold anything.

use std::time::Duration;

use rmcp::model::{ErrorData, ServerResult};

use crate::naming::Origin;
use crate::profile::Principal;

/// One finished `tools/call`.
#[derive(Debug, Clone)]
pub struct CallRecord {
    /// `operator`, or the profile's label (`user:ID:EMAIL profile:ID`).
    pub principal: String,
    pub user_id: Option<i64>,
    pub profile_id: Option<i64>,
    /// The OAuth client acting for the user, when there is one.
    pub client: Option<String>,
    /// The name the caller used.
    pub tool: String,
    pub backend: String,
    pub backend_tool: String,
    /// `ok`, `tool_error` (the tool answered `isError`), or `error`.
    pub outcome: &'static str,
    pub duration: Duration,
}

impl CallRecord {
    pub fn new(
        caller: &Principal,
        tool: String,
        origin: &Origin,
        answer: &Result<ServerResult, ErrorData>,
        duration: Duration,
    ) -> Self {
        let (principal, user_id, profile_id, client) = match caller {
            Principal::Operator => ("operator".to_owned(), None, None, None),
            Principal::Profile(view) => (
                view.label.clone(),
                Some(view.user_id),
                Some(view.profile_id),
                view.client.as_ref().map(|c| c.client_id.clone()),
            ),
        };
        let outcome = match answer {
            Ok(ServerResult::CallToolResult(r)) if r.is_error == Some(true) => "tool_error",
            Ok(_) => "ok",
            Err(_) => "error",
        };
        CallRecord {
            principal,
            user_id,
            profile_id,
            client,
            tool,
            backend: origin.backend.clone(),
            backend_tool: origin.item.clone(),
            outcome,
            duration,
        }
    }
}

/// Receives every call record. Must not block: implementations queue and write elsewhere.
pub trait CallRecorder: Send + Sync + std::fmt::Debug {
    fn record(&self, call: CallRecord);
}
