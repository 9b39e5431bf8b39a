//! Profiles (a user's own selection of tools, optionally renamed) and their tokens. A profile
//! belongs to one user; another user's profile is "not found", never "forbidden", so ids do
//! not reveal what exists.

use std::sync::Arc;

use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use gig_gateway::profile::{ProfileFilter, ToolOverride};
use gig_store::{NewProfileToken, Profile, StoreError};
use http::StatusCode;
use serde::Deserialize;
use std::collections::BTreeMap;

use crate::ApiState;
use crate::api_tokens::{by_id, lifetime, token_id, valid_name};
use crate::error::ApiError;
use crate::extract::ApiPath;
use crate::mcp_tokens::new_token;
use crate::routes::{audit, body};
use crate::schema::{self, ErrorBody, TokenCreated, TokenInfo, Tokens};
use crate::session::{Caller, token_hash};

/// Longest token lifetime accepted (a year), and the default (90 days).
const MAX_TOKEN_SECS: i64 = 365 * 24 * 3600;
const DEFAULT_TOKEN_SECS: i64 = 90 * 24 * 3600;
/// Profiles one user may have, and tokens one profile may have: a member cannot grow the store
/// without bound.
const MAX_PROFILES_PER_USER: usize = 100;
const MAX_TOKENS_PER_PROFILE: usize = 50;

/// What an audit row keeps of a filter: its digest and size (the filter itself can be large,
/// and is the profile's business).
fn filter_digest(filter: &serde_json::Value) -> serde_json::Value {
    use sha2::Digest;
    let text = filter.to_string();
    serde_json::json!({
        "filter_sha256": hex::encode(sha2::Sha256::digest(text.as_bytes())),
        "filter_bytes": text.len(),
    })
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProfileBody {
    #[schema(min_length = 1, max_length = 64)]
    name: String,
    /// Exposed names (`echo_echo`, `^[a-zA-Z0-9_-]{1,64}$`), or `server/*` for every tool of a
    /// server (a server name: 1 to 128 of `[A-Za-z0-9._-]`, not starting with `.`).
    tools: Vec<String>,
    #[serde(default)]
    #[schema(value_type = BTreeMap<String, crate::schema::ToolOverrideInfo>)]
    overrides: BTreeMap<String, ToolOverride>,
    #[serde(default)]
    unprefixed: bool,
}

impl ProfileBody {
    pub(crate) fn validated(self) -> Result<(String, serde_json::Value), ApiError> {
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

fn view(profile: &Profile) -> schema::Profile {
    let filter: ProfileFilter =
        serde_json::from_value(profile.tool_filter.clone()).unwrap_or_default();
    schema::Profile {
        id: profile.id,
        name: profile.name.clone(),
        tools: filter.tools,
        overrides: filter
            .overrides
            .into_iter()
            .map(|(k, o)| {
                let info = schema::ToolOverrideInfo {
                    name: o.name,
                    description: o.description,
                };
                (k, info)
            })
            .collect(),
        unprefixed: filter.unprefixed,
        created_at: profile.created_at.unix_timestamp(),
        updated_at: profile.updated_at.unix_timestamp(),
    }
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

/// The caller's profiles.
#[utoipa::path(get, path = "/api/profiles", tag = "profiles",
    responses((status = 200, body = schema::Profiles), (status = 401, description = "Not signed in", body = ErrorBody), (status = 403, description = "The role does not allow it, or CSRF failed", body = ErrorBody)))]
pub(crate) async fn list(
    State(state): State<Arc<ApiState>>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<schema::Profiles>, ApiError> {
    let profiles = state.store.list_profiles(caller.user.id).await?;
    Ok(Json(schema::Profiles {
        profiles: profiles.iter().map(view).collect(),
    }))
}

/// A new profile of the caller's.
#[utoipa::path(post, path = "/api/profiles", tag = "profiles", request_body = ProfileBody,
    responses((status = 201, body = schema::Profile), (status = 400, description = "Invalid request", body = ErrorBody), (status = 401, description = "Not signed in", body = ErrorBody), (status = 403, description = "The role does not allow it, or CSRF failed", body = ErrorBody), (status = 409, description = "Conflict", body = ErrorBody)))]
pub(crate) async fn create(
    State(state): State<Arc<ApiState>>,
    Extension(caller): Extension<Caller>,
    request: Result<Json<ProfileBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    caller.may_mint_credentials()?;
    let (name, filter) = body(request)?.validated()?;
    if state.store.list_profiles(caller.user.id).await?.len() >= MAX_PROFILES_PER_USER {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "limit",
            format!("at most {MAX_PROFILES_PER_USER} profiles per user"),
        ));
    }
    let profile = state
        .store
        .create_profile(caller.user.id, &name, &filter)
        .await
        .map_err(conflict)?;
    let target = format!("profile:{}", profile.id);
    audit(
        &state,
        &caller.actor(),
        "profile.created",
        &target,
        filter_digest(&filter),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(view(&profile))).into_response())
}

#[utoipa::path(get, path = "/api/profiles/{id}", tag = "profiles", params(("id" = i64, Path, description = "Profile id")),
    responses((status = 400, description = "Invalid request", body = ErrorBody), (status = 200, body = schema::Profile), (status = 401, description = "Not signed in", body = ErrorBody), (status = 403, description = "The role does not allow it, or CSRF failed", body = ErrorBody), (status = 404, description = "No such item (or not yours)", body = ErrorBody)))]
pub(crate) async fn get_one(
    State(state): State<Arc<ApiState>>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<schema::Profile>, ApiError> {
    Ok(Json(view(&own(&state, &caller, id).await?)))
}

/// Replace a profile's name and tools (tokens keep working with the new definition).
#[utoipa::path(put, path = "/api/profiles/{id}", tag = "profiles", request_body = ProfileBody, params(("id" = i64, Path, description = "Profile id")),
    responses((status = 200, body = schema::Profile), (status = 400, description = "Invalid request", body = ErrorBody), (status = 401, description = "Not signed in", body = ErrorBody), (status = 403, description = "The role does not allow it, or CSRF failed", body = ErrorBody), (status = 404, description = "No such item (or not yours)", body = ErrorBody), (status = 409, description = "Conflict", body = ErrorBody)))]
pub(crate) async fn update(
    State(state): State<Arc<ApiState>>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<i64>,
    request: Result<Json<ProfileBody>, JsonRejection>,
) -> Result<Json<schema::Profile>, ApiError> {
    caller.may_mint_credentials()?;
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
    audit(
        &state,
        &caller.actor(),
        "profile.updated",
        &target,
        filter_digest(&filter),
    )
    .await?;
    Ok(Json(view(&own(&state, &caller, id).await?)))
}

/// Delete a profile and every token of it.
#[utoipa::path(delete, path = "/api/profiles/{id}", tag = "profiles", params(("id" = i64, Path, description = "Profile id")),
    responses((status = 400, description = "Invalid request", body = ErrorBody), (status = 204, description = "Deleted"), (status = 401, description = "Not signed in", body = ErrorBody), (status = 403, description = "The role does not allow it, or CSRF failed", body = ErrorBody), (status = 404, description = "No such item (or not yours)", body = ErrorBody)))]
pub(crate) async fn delete(
    State(state): State<Arc<ApiState>>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<i64>,
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

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TokenBody {
    #[schema(min_length = 1, max_length = 64)]
    name: String,
    /// Seconds until the token stops working (default 90 days, at most a year).
    #[schema(minimum = 60, maximum = 31536000)]
    expires_in: Option<i64>,
}

/// A token for the profile, for an MCP client's `Authorization: Bearer` (shown once).
#[utoipa::path(post, path = "/api/profiles/{id}/tokens", tag = "profiles", request_body = TokenBody, params(("id" = i64, Path, description = "Profile id")),
    responses((status = 201, body = TokenCreated), (status = 400, description = "Invalid request", body = ErrorBody), (status = 401, description = "Not signed in", body = ErrorBody), (status = 403, description = "The role does not allow it, or CSRF failed", body = ErrorBody), (status = 404, description = "No such item (or not yours)", body = ErrorBody),
        (status = 409, description = "Too many tokens for this profile", body = ErrorBody)))]
pub(crate) async fn create_token(
    State(state): State<Arc<ApiState>>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<i64>,
    request: Result<Json<TokenBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    caller.may_mint_credentials()?;
    own(&state, &caller, id).await?;
    let request = body(request)?;
    let name = valid_name(&request.name, "token")?;
    if state.store.list_profile_tokens(id).await?.len() >= MAX_TOKENS_PER_PROFILE {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "limit",
            format!("at most {MAX_TOKENS_PER_PROFILE} tokens per profile: revoke one first"),
        ));
    }
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
    let token_id = token_id(&hash);
    let target = format!("profile:{id}/token:{token_id}");
    audit(
        &state,
        &caller.actor(),
        "profile_token.created",
        &target,
        serde_json::json!({"name": name}),
    )
    .await?;
    let created = TokenCreated {
        id: token_id.to_owned(),
        name,
        role: None,
        token,
        expires_at: expires_at.unix_timestamp(),
    };
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

#[utoipa::path(get, path = "/api/profiles/{id}/tokens", tag = "profiles", params(("id" = i64, Path, description = "Profile id")),
    responses((status = 400, description = "Invalid request", body = ErrorBody), (status = 200, body = Tokens), (status = 401, description = "Not signed in", body = ErrorBody), (status = 403, description = "The role does not allow it, or CSRF failed", body = ErrorBody), (status = 404, description = "No such item (or not yours)", body = ErrorBody)))]
pub(crate) async fn list_tokens(
    State(state): State<Arc<ApiState>>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Tokens>, ApiError> {
    own(&state, &caller, id).await?;
    let now = time::OffsetDateTime::now_utc();
    let tokens: Vec<_> = state
        .store
        .list_profile_tokens(id)
        .await?
        .into_iter()
        .map(|t| TokenInfo {
            id: token_id(&t.token_hash),
            active: t.is_active(now),
            name: t.name,
            role: None,
            created_at: t.created_at.unix_timestamp(),
            last_used_at: t.last_used_at.map(|t| t.unix_timestamp()),
            expires_at: t.expires_at.map(|t| t.unix_timestamp()),
        })
        .collect();
    Ok(Json(Tokens { tokens }))
}

#[utoipa::path(delete, path = "/api/profiles/{id}/tokens/{token_id}", tag = "profiles",
    params(("id" = i64, Path, description = "Profile id"), ("token_id" = String, Path, description = "Token id from the list")),
    responses((status = 400, description = "Invalid request", body = ErrorBody), (status = 204, description = "Revoked"), (status = 401, description = "Not signed in", body = ErrorBody), (status = 403, description = "The role does not allow it, or CSRF failed", body = ErrorBody), (status = 404, description = "No such item (or not yours)", body = ErrorBody)))]
pub(crate) async fn revoke_token(
    State(state): State<Arc<ApiState>>,
    Extension(caller): Extension<Caller>,
    ApiPath((id, token_id)): ApiPath<(i64, String)>,
) -> Result<StatusCode, ApiError> {
    own(&state, &caller, id).await?;
    let tokens = state.store.list_profile_tokens(id).await?;
    let token =
        by_id(tokens, &token_id, |t| &t.token_hash).ok_or_else(|| ApiError::not_found("token"))?;
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
