//! Users and their roles, and impersonation: an admin acting as another user gets exactly
//! that user's permissions (never more), every response says so, and every audit row names
//! both.

use std::sync::Arc;

use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::{Extension, Json};
use gig_store::{Role, UnknownValue};
use http::StatusCode;
use serde::Deserialize;

use crate::ApiState;
use crate::error::ApiError;
use crate::extract::ApiPath;
use crate::routes::{audit, body};
use crate::schema::{ErrorBody, ImpersonationStarted, RoleSet, UserInfo, Users};
use crate::session::{Caller, user_label};

/// Every user with their role.
#[utoipa::path(get, path = "/api/users", tag = "users",
    responses((status = 200, body = Users), (status = 401, description = "Not signed in", body = ErrorBody), (status = 403, description = "The role does not allow it, or CSRF failed", body = ErrorBody)))]
pub(crate) async fn users(State(state): State<Arc<ApiState>>) -> Result<Json<Users>, ApiError> {
    let mut users = Vec::new();
    for user in state.store.list_users().await? {
        let role = state.store.list_roles(user.id).await?.into_iter().next();
        users.push(UserInfo::of(&user, role));
    }
    Ok(Json(Users { users }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RoleChange {
    role: String,
}

/// Set a user's role (until their next sign-in maps their groups again).
#[utoipa::path(put, path = "/api/users/{id}/role", tag = "users", request_body = RoleChange,
    params(("id" = i64, Path, description = "User id")),
    responses((status = 200, body = RoleSet), (status = 400, description = "Invalid request", body = ErrorBody), (status = 401, description = "Not signed in", body = ErrorBody), (status = 403, description = "The role does not allow it, or CSRF failed", body = ErrorBody), (status = 404, description = "No such item (or not yours)", body = ErrorBody)))]
pub(crate) async fn set_role(
    State(state): State<Arc<ApiState>>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<i64>,
    request: Result<Json<RoleChange>, JsonRejection>,
) -> Result<Json<RoleSet>, ApiError> {
    let change = body(request)?;
    let role = parse_role(&change.role)?;
    let user = state
        .store
        .get_user(id)
        .await?
        .ok_or_else(|| ApiError::not_found("user"))?;
    state.store.set_only_role(user.id, role).await?;
    audit(
        &state,
        &caller.actor(),
        "user.role_changed",
        &user_label(&user),
        serde_json::json!({ "role": role.as_str() }),
    )
    .await?;
    Ok(Json(RoleSet {
        id: user.id,
        role: role.as_str().to_owned(),
    }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ImpersonationStart {
    user: i64,
}

fn conflict(message: &str) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, "conflict", message)
}

/// `POST /api/impersonation`: admins only (the route's permission), from a signed-in browser
/// session, never while already impersonating, never oneself.
#[utoipa::path(post, path = "/api/impersonation", tag = "users", request_body = ImpersonationStart,
    responses((status = 200, body = ImpersonationStarted), (status = 400, description = "Invalid request", body = ErrorBody), (status = 401, description = "Not signed in", body = ErrorBody), (status = 403, description = "The role does not allow it, or CSRF failed", body = ErrorBody), (status = 404, description = "No such item (or not yours)", body = ErrorBody),
        (status = 409, description = "Already impersonating", body = ErrorBody)))]
pub(crate) async fn start_impersonation(
    State(state): State<Arc<ApiState>>,
    Extension(caller): Extension<Caller>,
    request: Result<Json<ImpersonationStart>, JsonRejection>,
) -> Result<Json<ImpersonationStarted>, ApiError> {
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
    Ok(Json(ImpersonationStarted {
        impersonating: target.id,
    }))
}

/// `DELETE /api/impersonation`: back to oneself (allowed whatever the impersonated role).
#[utoipa::path(delete, path = "/api/impersonation", tag = "users",
    responses((status = 204, description = "Back to oneself"), (status = 401, description = "Not signed in", body = ErrorBody), (status = 403, description = "The role does not allow it, or CSRF failed", body = ErrorBody),
        (status = 409, description = "Not impersonating", body = ErrorBody)))]
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
    text.parse()
        .map_err(|e: UnknownValue| ApiError::bad_request(e.to_string()))
}
