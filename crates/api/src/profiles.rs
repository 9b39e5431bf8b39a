//! Profiles (a user's own selection of tools, optionally renamed) and their tokens. A profile
//! belongs to one user; another user's profile is "not found", never "forbidden", so ids do
//! not reveal what exists.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use gig_gateway::profile::{ProfileFilter, ToolOverride};
use gig_store::{NewProfileToken, Profile, StoreError};
use http::StatusCode;
use serde::Deserialize;
use std::collections::BTreeMap;

use crate::ApiState;
use crate::api_tokens::{TOKEN_ID_LEN, lifetime, valid_name};
use crate::error::ApiError;
use crate::profile_tokens::new_token;
use crate::routes::{audit, body};
use crate::session::{Caller, token_hash};

/// Longest token lifetime accepted (a year), and the default (90 days).
const MAX_TOKEN_SECS: i64 = 365 * 24 * 3600;
const DEFAULT_TOKEN_SECS: i64 = 90 * 24 * 3600;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProfileBody {
    name: String,
    tools: Vec<String>,
    #[serde(default)]
    overrides: BTreeMap<String, ToolOverride>,
    #[serde(default)]
    unprefixed: bool,
}

impl ProfileBody {
    fn validated(self) -> Result<(String, serde_json::Value), ApiError> {
        let name = valid_name(&self.name, "profile")?;
        let filter = ProfileFilter {
            tools: self.tools,
            overrides: self.overrides,
            unprefixed: self.unprefixed,
        };
        filter.validate().map_err(ApiError::bad_request)?;
        let stored = serde_json::to_value(&filter).map_err(|e| ApiError::internal(&e))?;
        Ok((name, stored))
    }
}

fn view(profile: &Profile) -> serde_json::Value {
    let filter: ProfileFilter =
        serde_json::from_value(profile.tool_filter.clone()).unwrap_or_default();
    serde_json::json!({
        "id": profile.id,
        "name": profile.name,
        "tools": filter.tools,
        "overrides": filter.overrides,
        "unprefixed": filter.unprefixed,
        "created_at": profile.created_at.unix_timestamp(),
        "updated_at": profile.updated_at.unix_timestamp(),
    })
}

fn conflict(e: StoreError) -> ApiError {
    match e {
        StoreError::Conflict { .. } => ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            "you already have a profile with this name",
        ),
        other => other.into(),
    }
}

/// The caller's own profile `id`, or 404.
async fn own(state: &ApiState, caller: &Caller, id: i64) -> Result<Profile, ApiError> {
    state
        .store
        .get_profile(id)
        .await?
        .filter(|p| p.user_id == caller.user.id)
        .ok_or_else(|| ApiError::not_found("profile"))
}

pub(crate) async fn list(
    State(state): State<Arc<ApiState>>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let profiles = state.store.list_profiles(caller.user.id).await?;
    Ok(Json(serde_json::json!({
        "profiles": profiles.iter().map(view).collect::<Vec<_>>()
    })))
}

pub(crate) async fn create(
    State(state): State<Arc<ApiState>>,
    Extension(caller): Extension<Caller>,
    request: Result<Json<ProfileBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let (name, filter) = body(request)?.validated()?;
    let profile = state
        .store
        .create_profile(caller.user.id, &name, &filter)
        .await
        .map_err(conflict)?;
    let target = format!("profile:{}", profile.id);
    audit(&state, &caller.actor(), "profile.created", &target, filter).await?;
    Ok((StatusCode::CREATED, Json(view(&profile))).into_response())
}

pub(crate) async fn get_one(
    State(state): State<Arc<ApiState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<i64>,
) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(view(&own(&state, &caller, id).await?)))
}

pub(crate) async fn update(
    State(state): State<Arc<ApiState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<i64>,
    request: Result<Json<ProfileBody>, JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let profile = own(&state, &caller, id).await?;
    let (name, filter) = body(request)?.validated()?;
    if name != profile.name {
        state
            .store
            .rename_profile(id, &name)
            .await
            .map_err(conflict)?;
    }
    state.store.set_profile_tool_filter(id, &filter).await?;
    let target = format!("profile:{id}");
    audit(&state, &caller.actor(), "profile.updated", &target, filter).await?;
    Ok(Json(view(&own(&state, &caller, id).await?)))
}

pub(crate) async fn delete(
    State(state): State<Arc<ApiState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    own(&state, &caller, id).await?;
    state.store.delete_profile(id).await?;
    let target = format!("profile:{id}");
    audit(
        &state,
        &caller.actor(),
        "profile.deleted",
        &target,
        serde_json::json!({}),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TokenBody {
    name: String,
    /// Seconds until the token stops working (default 90 days, at most a year).
    expires_in: Option<i64>,
}

pub(crate) async fn create_token(
    State(state): State<Arc<ApiState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<i64>,
    request: Result<Json<TokenBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    own(&state, &caller, id).await?;
    let request = body(request)?;
    let name = valid_name(&request.name, "token")?;
    let expires_at = time::OffsetDateTime::now_utc()
        + lifetime(request.expires_in, DEFAULT_TOKEN_SECS, MAX_TOKEN_SECS)?;
    let token = new_token();
    let hash = token_hash(&token);
    state
        .store
        .create_profile_token(&NewProfileToken {
            token_hash: &hash,
            profile_id: id,
            name: &name,
            expires_at: Some(expires_at),
        })
        .await?;
    let token_id = &hash[..TOKEN_ID_LEN];
    let target = format!("profile:{id}/token:{token_id}");
    audit(
        &state,
        &caller.actor(),
        "profile_token.created",
        &target,
        serde_json::json!({"name": name}),
    )
    .await?;
    let created = serde_json::json!({
        "id": token_id,
        "name": name,
        "token": token,
        "expires_at": expires_at.unix_timestamp(),
    });
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

pub(crate) async fn list_tokens(
    State(state): State<Arc<ApiState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<i64>,
) -> Result<Json<serde_json::Value>, ApiError> {
    own(&state, &caller, id).await?;
    let now = time::OffsetDateTime::now_utc();
    let tokens: Vec<_> = state
        .store
        .list_profile_tokens(id)
        .await?
        .into_iter()
        .map(|t| {
            serde_json::json!({
                "id": &t.token_hash[..TOKEN_ID_LEN],
                "name": t.name,
                "created_at": t.created_at.unix_timestamp(),
                "last_used_at": t.last_used_at.map(|t| t.unix_timestamp()),
                "expires_at": t.expires_at.map(|t| t.unix_timestamp()),
                "revoked": t.revoked_at.is_some(),
                "active": t.is_active(now),
            })
        })
        .collect();
    Ok(Json(serde_json::json!({ "tokens": tokens })))
}

pub(crate) async fn revoke_token(
    State(state): State<Arc<ApiState>>,
    Extension(caller): Extension<Caller>,
    Path((id, token_id)): Path<(i64, String)>,
) -> Result<StatusCode, ApiError> {
    own(&state, &caller, id).await?;
    let token = state
        .store
        .list_profile_tokens(id)
        .await?
        .into_iter()
        .find(|t| t.token_hash.get(..TOKEN_ID_LEN) == Some(token_id.as_str()))
        .ok_or_else(|| ApiError::not_found("token"))?;
    state.store.revoke_profile_token(&token.token_hash).await?;
    let target = format!("profile:{id}/token:{token_id}");
    audit(
        &state,
        &caller.actor(),
        "profile_token.revoked",
        &target,
        serde_json::json!({}),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
