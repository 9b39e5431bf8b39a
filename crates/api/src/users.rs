//! Users and their roles, and impersonation: an admin acting as another user gets exactly
//! that user's permissions (never more), every response says so, and every audit row names
//! both.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::{Extension, Json};
use gig_config::Role;
use http::StatusCode;
use serde::Deserialize;

use crate::ApiState;
use crate::error::ApiError;
use crate::routes::{audit, body};
use crate::session::{Caller, user_label};

pub(crate) async fn users(
    State(state): State<Arc<ApiState>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let mut out = Vec::new();
    for user in state.store.list_users().await? {
        let role = state.store.list_roles(user.id).await?.into_iter().next();
        out.push(serde_json::json!({
            "id": user.id,
            "email": user.email,
            "name": user.display_name,
            "role": role,
        }));
    }
    Ok(Json(serde_json::json!({ "users": out })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RoleChange {
    role: String,
}

pub(crate) async fn set_role(
    State(state): State<Arc<ApiState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<i64>,
    request: Result<Json<RoleChange>, JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let change = body(request)?;
    let role = parse_role(&change.role)?;
    let user = state
        .store
        .get_user(id)
        .await?
        .ok_or_else(|| ApiError::not_found("user"))?;
    state.store.set_only_role(user.id, role.as_str()).await?;
    audit(
        &state,
        &caller.actor(),
        "user.role_changed",
        &user_label(&user),
        serde_json::json!({ "role": role.as_str() }),
    )
    .await?;
    Ok(Json(
        serde_json::json!({ "id": user.id, "role": role.as_str() }),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ImpersonationStart {
    user: i64,
}

fn conflict(message: &str) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, "conflict", message)
}

/// `POST /api/impersonation`: admins only (the route's permission), from a signed-in browser
/// session, never while already impersonating, never oneself.
pub(crate) async fn start_impersonation(
    State(state): State<Arc<ApiState>>,
    Extension(caller): Extension<Caller>,
    request: Result<Json<ImpersonationStart>, JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let start = body(request)?;
    if caller.real.is_some() {
        return Err(conflict(
            "already impersonating: stop first (DELETE /api/impersonation)",
        ));
    }
    let Some(session) = caller.session_hash() else {
        return Err(ApiError::bad_request(
            "impersonation needs a signed-in session, not an API token",
        ));
    };
    if start.user == caller.user.id {
        return Err(ApiError::bad_request("you cannot impersonate yourself"));
    }
    let target = state
        .store
        .get_user(start.user)
        .await?
        .ok_or_else(|| ApiError::not_found("user"))?;
    state
        .store
        .set_session_impersonation(session, Some(target.id))
        .await?;
    let actor = format!("{} as {}", user_label(&caller.user), user_label(&target));
    audit(
        &state,
        &actor,
        "impersonation.started",
        &user_label(&target),
        serde_json::json!({}),
    )
    .await?;
    Ok(Json(serde_json::json!({ "impersonating": target.id })))
}

/// `DELETE /api/impersonation`: back to oneself (allowed whatever the impersonated role).
pub(crate) async fn stop_impersonation(
    State(state): State<Arc<ApiState>>,
    Extension(caller): Extension<Caller>,
) -> Result<StatusCode, ApiError> {
    let (Some(_), Some(session)) = (&caller.real, caller.session_hash()) else {
        return Err(conflict("not impersonating"));
    };
    state.store.set_session_impersonation(session, None).await?;
    audit(
        &state,
        &caller.actor(),
        "impersonation.stopped",
        &user_label(&caller.user),
        serde_json::json!({}),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Roles by name, least first, for validation messages.
pub(crate) fn parse_role(text: &str) -> Result<Role, ApiError> {
    text.parse().map_err(ApiError::bad_request)
}
