//! `/api/oauth/grants`: the clients a user has let in, and taking one back (which ends every
//! token issued under it within the resolver's 1.5 s).

use std::sync::Arc;

use axum::extract::State;
use axum::{Extension, Json};
use http::StatusCode;

use crate::ApiState;
use crate::error::ApiError;
use crate::extract::ApiPath;
use crate::routes::audit;
use crate::schema::{ErrorBody, OAuthGrantInfo, OAuthGrants};
use crate::session::Caller;

/// The caller's live OAuth grants, newest first.
#[utoipa::path(get, path = "/api/oauth/grants", tag = "oauth",
    responses((status = 200, body = OAuthGrants), (status = 401, description = "Not signed in", body = ErrorBody)))]
pub(crate) async fn list(
    State(state): State<Arc<ApiState>>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<OAuthGrants>, ApiError> {
    let grants = state
        .store
        .list_oauth_grants(caller.user.id)
        .await?
        .into_iter()
        .map(|g| OAuthGrantInfo {
            id: g.id,
            client_id: g.client_id,
            client_name: g.client_name,
            profile_id: g.profile_id,
            scope: g.scope,
            created_at: g.created_at.unix_timestamp(),
            last_used_at: g.last_used_at.map(|t| t.unix_timestamp()),
        })
        .collect();
    Ok(Json(OAuthGrants { grants }))
}

/// Revokes one of the caller's grants and every token under it.
#[utoipa::path(delete, path = "/api/oauth/grants/{id}", tag = "oauth",
    params(("id" = i64, Path, description = "Grant id from the list")),
    responses((status = 204, description = "Revoked"), (status = 400, description = "Invalid request", body = ErrorBody), (status = 401, description = "Not signed in", body = ErrorBody), (status = 403, description = "The role does not allow it, or CSRF failed", body = ErrorBody), (status = 404, description = "No such item (or not yours)", body = ErrorBody)))]
pub(crate) async fn revoke(
    State(state): State<Arc<ApiState>>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, ApiError> {
    if !state
        .store
        .revoke_oauth_grant(id, Some(caller.user.id))
        .await?
    {
        return Err(ApiError::not_found("grant"));
    }
    audit(
        &state,
        &caller.actor(),
        "oauth.revoked",
        &format!("grant:{id}"),
        serde_json::json!({}),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
