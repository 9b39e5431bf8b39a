//! Tool approvals (the rug-pull check over `/api`): a tool whose definition changed since it
//! was trusted stays hidden from every client until someone with the permission approves
//! exactly the changed definition they were shown.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::{Extension, http::StatusCode};
use serde::Deserialize;

use crate::ApiState;
use crate::error::ApiError;
use crate::extract::ApiPath;
use crate::routes::{audit, body};
use crate::schema::{Approvals, ErrorBody, PendingChange};
use crate::session::Caller;

/// A definition as readable JSON, for the diff.
fn pretty(definition: Option<&str>) -> String {
    definition
        .and_then(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_default()
}

/// Changed tool definitions waiting for approval, each with a unified diff.
#[utoipa::path(get, path = "/api/approvals", tag = "servers",
    responses((status = 200, body = Approvals),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The role does not allow it", body = ErrorBody)))]
pub(crate) async fn list(State(state): State<Arc<ApiState>>) -> Result<Json<Approvals>, ApiError> {
    let pending = state
        .store
        .list_pending_fingerprints()
        .await?
        .into_iter()
        .filter_map(|f| {
            let proposed_sha256 = f.pending_fingerprint?;
            let (current, proposed) = (
                pretty(f.definition.as_deref()),
                pretty(f.pending_definition.as_deref()),
            );
            let diff = similar::TextDiff::from_lines(&current, &proposed)
                .unified_diff()
                .header("trusted", "changed")
                .to_string();
            Some(PendingChange {
                server: f.server,
                tool: f.tool,
                current_sha256: f.sha256,
                proposed_sha256,
                current: (!current.is_empty()).then_some(current),
                proposed: (!proposed.is_empty()).then_some(proposed),
                diff,
            })
        })
        .collect();
    Ok(Json(Approvals { pending }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Approval {
    /// The `proposed_sha256` being approved: a later change is never covered.
    #[schema(min_length = 64, max_length = 64, pattern = "^[0-9a-fA-F]{64}$")]
    sha256: String,
}

/// Trusts the changed definition `sha256` of a tool; running gateways show it within seconds.
#[utoipa::path(post, path = "/api/approvals/{server}/{tool}", tag = "servers",
    request_body = Approval,
    params(("server" = String, Path, description = "Server name"),
        ("tool" = String, Path, description = "Tool name as the server reports it")),
    responses((status = 204, description = "Approved"),
        (status = 400, description = "Invalid request", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The role does not allow it", body = ErrorBody),
        (status = 404, description = "No such pending change (or a newer one replaced it)", body = ErrorBody)))]
pub(crate) async fn approve(
    State(state): State<Arc<ApiState>>,
    Extension(caller): Extension<Caller>,
    ApiPath((server, tool)): ApiPath<(String, String)>,
    request: Result<Json<Approval>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let approval = body(request)?;
    let hex = approval.sha256.len() == 64 && approval.sha256.bytes().all(|b| b.is_ascii_hexdigit());
    if !hex {
        return Err(ApiError::bad_request("sha256 is 64 hex characters"));
    }
    let server = crate::servers::server_name(&server)?;
    // The server's own name for its tool: any text it chose (kept hashed when long).
    crate::extract::plain_text(&tool, "tool", 256)?;
    match state
        .store
        .approve_fingerprint(&server, &tool, &approval.sha256)
        .await
    {
        Ok(()) => {}
        Err(gig_store::StoreError::NotFound { .. }) => {
            return Err(ApiError::not_found("pending change with that fingerprint"));
        }
        Err(e) => return Err(e.into()),
    }
    let detail = serde_json::json!({"tool": tool, "approved": approval.sha256});
    audit(
        &state,
        &caller.actor(),
        "tool.definition_approved",
        &format!("{server}/{tool}"),
        detail,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
