//! `/api/me/credentials`: a user's own credentials for servers that run an instance per user
//! or per session. The user's instance gets them injected by its egress proxy (it holds only
//! placeholders); no other user's instance, and no shared one, ever does.
//!
//! Set only by the user themself: not while impersonating, so an administrator cannot plant a
//! key of their choosing under another user's name and read what that user's calls send.

use std::sync::Arc;

use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::{Extension, Json};
use http::StatusCode;

use crate::ApiState;
use crate::error::ApiError;
use crate::extract::ApiPath;
use crate::operations::CredentialOwner;
use crate::schema::{Credentials, ErrorBody};
use crate::servers::{CredentialValue, list_credentials, remove_credential, store_credential};
use crate::session::Caller;

fn own(caller: &Caller) -> Result<CredentialOwner, ApiError> {
    if caller.real.is_some() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "not while impersonating: a user's own credentials are set by that user",
        ));
    }
    Ok(CredentialOwner::User(caller.user.id))
}

/// The caller's own stored credentials for a server: names, key ids, times — never values.
#[utoipa::path(get, path = "/api/me/credentials/{name}", tag = "credentials",
    params(("name" = String, Path, description = "Server name")),
    responses((status = 200, body = Credentials),
        (status = 400, description = "Invalid request", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The role does not allow it, or impersonating", body = ErrorBody)))]
pub(crate) async fn list(
    State(state): State<Arc<ApiState>>,
    Extension(caller): Extension<Caller>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<Credentials>, ApiError> {
    list_credentials(&state, name, own(&caller)?).await
}

/// Sets (or replaces) the caller's own value of a credential the server declares.
#[utoipa::path(put, path = "/api/me/credentials/{name}/{credential}", tag = "credentials",
    request_body = CredentialValue,
    params(("name" = String, Path, description = "Server name"),
        ("credential" = String, Path, description = "Credential (vault) name")),
    responses((status = 204, description = "Stored"),
        (status = 400, description = "Invalid request, not a credential the server declares, or a server with one shared instance", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The role does not allow it, or impersonating", body = ErrorBody),
        (status = 404, description = "No such server", body = ErrorBody)))]
pub(crate) async fn set(
    State(state): State<Arc<ApiState>>,
    Extension(caller): Extension<Caller>,
    ApiPath((server, name)): ApiPath<(String, String)>,
    request: Result<Json<CredentialValue>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let owner = own(&caller)?;
    store_credential(&state, &caller, server, owner, name, request).await
}

/// Deletes the caller's own value; their instance can no longer use it.
#[utoipa::path(delete, path = "/api/me/credentials/{name}/{credential}", tag = "credentials",
    params(("name" = String, Path, description = "Server name"),
        ("credential" = String, Path, description = "Credential (vault) name")),
    responses((status = 204, description = "Deleted"),
        (status = 400, description = "Invalid request", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The role does not allow it, or impersonating", body = ErrorBody),
        (status = 404, description = "No such credential", body = ErrorBody)))]
pub(crate) async fn delete(
    State(state): State<Arc<ApiState>>,
    Extension(caller): Extension<Caller>,
    ApiPath((server, name)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let owner = own(&caller)?;
    remove_credential(&state, &caller, server, owner, name).await
}
