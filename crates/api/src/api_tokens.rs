//! API tokens for automation: made by a user for themselves, with at most their own role,
//! shown once, stored as a hash, expiring and revocable. They authenticate `/api` with
//! `Authorization: Bearer giga_…`, never `/mcp`.

use std::sync::Arc;

use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use gig_store::NewApiToken;
use http::StatusCode;
use serde::Deserialize;

use crate::ApiState;
use crate::error::ApiError;
use crate::extract::ApiPath;
use crate::routes::{audit, body};
use crate::schema::{ErrorBody, TokenCreated, TokenInfo, Tokens};
use crate::session::{API_TOKEN_PREFIX, Caller, random_token, token_hash};
use crate::users::parse_role;

const MAX_SECS: i64 = 365 * 24 * 3600;
const DEFAULT_SECS: i64 = 30 * 24 * 3600;
/// Hex characters of a token's hash that name it in the API.
pub(crate) const TOKEN_ID_LEN: usize = 16;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewToken {
    #[schema(min_length = 1, max_length = 64)]
    name: String,
    /// At most the caller's role (default: the caller's role).
    #[schema(pattern = "^(admin|operator|member|viewer)$")]
    role: Option<String>,
    /// Seconds until it stops working (default 30 days, at most a year).
    #[schema(minimum = 60, maximum = 31536000)]
    expires_in: Option<i64>,
}

/// The id a token is named by in the API: the first hex characters of its hash (the value
/// itself is never stored, so it cannot be shown).
pub(crate) fn token_id(hash: &str) -> String {
    hash.get(..TOKEN_ID_LEN).unwrap_or(hash).to_owned()
}

/// The token among `tokens` whose id is `id`.
pub(crate) fn by_id<T>(tokens: Vec<T>, id: &str, hash: impl Fn(&T) -> &str) -> Option<T> {
    tokens.into_iter().find(|t| token_id(hash(t)) == id)
}

/// A token or profile name: 1 to 64 characters, no control characters.
pub(crate) fn valid_name(name: &str, what: &str) -> Result<String, ApiError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!(
            "a {what} name is 1 to 64 characters, without control characters"
        )));
    }
    Ok(name.to_owned())
}

/// A lifetime in seconds within bounds.
pub(crate) fn lifetime(
    requested: Option<i64>,
    default: i64,
    max: i64,
) -> Result<time::Duration, ApiError> {
    let secs = requested.unwrap_or(default);
    if !(60..=max).contains(&secs) {
        return Err(ApiError::bad_request(format!(
            "expires_in is 60 to {max} seconds"
        )));
    }
    Ok(time::Duration::seconds(secs))
}

/// A token for automation, shown once.
#[utoipa::path(post, path = "/api/tokens", tag = "tokens", request_body = NewToken,
    responses((status = 201, body = TokenCreated), (status = 400, description = "Invalid request", body = ErrorBody), (status = 401, description = "Not signed in", body = ErrorBody), (status = 403, description = "The role does not allow it, or CSRF failed", body = ErrorBody)))]
pub(crate) async fn create(
    State(state): State<Arc<ApiState>>,
    Extension(caller): Extension<Caller>,
    request: Result<Json<NewToken>, JsonRejection>,
) -> Result<Response, ApiError> {
    let request = body(request)?;
    caller.may_mint_credentials()?;
    let name = valid_name(&request.name, "token")?;
    let role = match &request.role {
        Some(text) => parse_role(text)?,
        None => caller.role,
    };
    if role > caller.role {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "a token cannot have more authority than its owner",
        ));
    }
    let expires_at =
        time::OffsetDateTime::now_utc() + lifetime(request.expires_in, DEFAULT_SECS, MAX_SECS)?;
    let token = format!("{API_TOKEN_PREFIX}{}", random_token());
    let hash = token_hash(&token);
    state
        .store
        .create_api_token(&NewApiToken {
            token_hash: &hash,
            user_id: caller.user.id,
            name: &name,
            role,
            expires_at,
        })
        .await?;
    let id = &token_id(&hash);
    audit(
        &state,
        &caller.actor(),
        "api_token.created",
        &format!("api_token:{id}"),
        serde_json::json!({"name": name, "role": role.as_str()}),
    )
    .await?;
    let created = TokenCreated {
        id: id.to_owned(),
        name,
        role: Some(role.as_str().to_owned()),
        token,
        expires_at: expires_at.unix_timestamp(),
    };
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

/// The caller's API tokens (never their values).
#[utoipa::path(get, path = "/api/tokens", tag = "tokens",
    responses((status = 200, body = Tokens), (status = 401, description = "Not signed in", body = ErrorBody)))]
pub(crate) async fn list(
    State(state): State<Arc<ApiState>>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Tokens>, ApiError> {
    let now = time::OffsetDateTime::now_utc();
    let tokens: Vec<_> = state
        .store
        .list_api_tokens(caller.user.id)
        .await?
        .into_iter()
        .map(|t| TokenInfo {
            id: token_id(&t.token_hash),
            active: t.is_active(now),
            name: t.name,
            role: Some(t.role.as_str().to_owned()),
            created_at: t.created_at.unix_timestamp(),
            last_used_at: t.last_used_at.map(|t| t.unix_timestamp()),
            expires_at: Some(t.expires_at.unix_timestamp()),
        })
        .collect();
    Ok(Json(Tokens { tokens }))
}

#[utoipa::path(delete, path = "/api/tokens/{id}", tag = "tokens",
    params(("id" = String, Path, description = "Token id from the list")),
    responses((status = 400, description = "Invalid request", body = ErrorBody), (status = 204, description = "Revoked"), (status = 401, description = "Not signed in", body = ErrorBody), (status = 403, description = "The role does not allow it, or CSRF failed", body = ErrorBody), (status = 404, description = "No such item (or not yours)", body = ErrorBody)))]
pub(crate) async fn revoke(
    State(state): State<Arc<ApiState>>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let tokens = state.store.list_api_tokens(caller.user.id).await?;
    let token =
        by_id(tokens, &id, |t| &t.token_hash).ok_or_else(|| ApiError::not_found("token"))?;
    state
        .store
        .revoke_api_token(caller.user.id, &token.token_hash)
        .await?;
    audit(
        &state,
        &caller.actor(),
        "api_token.revoked",
        &format!("api_token:{id}"),
        serde_json::json!({}),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
