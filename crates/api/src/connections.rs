//! `/api/me/connections`: a user's own accounts at remote servers that use OAuth per user
//! (decision 70). Connecting sends the browser to the server's authorization server; the
//! answer comes back to `/api/connections/callback`, where the gateway exchanges the code
//! and keeps the tokens in the vault under that user. The tokens never reach the browser,
//! the client, a log or the audit trail.
//!
//! Only the user themself connects or disconnects (not while impersonating): an administrator
//! could otherwise tie another user's calls to an account of their choosing. The callback
//! finishes only a connection the same signed-in user began, once, within ten minutes.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures::future::BoxFuture;
use http::StatusCode;
use serde::Serialize;

use crate::ApiState;
use crate::error::ApiError;
use crate::extract::{ApiPath, ApiQuery};
use crate::operations::OpError;
use crate::routes::{audit, redirect};
use crate::schema::ErrorBody;
use crate::session::Caller;
use crate::signin::CallbackParams;

/// A user's connection to one server.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct UpstreamConnection {
    pub server: String,
    /// `connected`, `not_connected`, or `broken` (connect again).
    pub state: &'static str,
    /// Why a broken connection stopped working.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What `/api` asks of the gateway's upstream OAuth (implemented by the composition crate).
pub trait Connections: Send + Sync + std::fmt::Debug {
    fn list(&self, user_id: i64) -> BoxFuture<'_, Result<Vec<UpstreamConnection>, OpError>>;
    /// The authorization URL to send the user's browser to.
    fn begin(&self, server: String, user_id: i64) -> BoxFuture<'_, Result<String, OpError>>;
    /// Completes a connection; the server's name.
    fn finish(
        &self,
        user_id: i64,
        code: String,
        state: String,
        issuer: Option<String>,
    ) -> BoxFuture<'_, Result<String, OpError>>;
    /// Revokes and forgets a connection (and stops the user's connection to the server).
    fn disconnect(&self, server: String, user_id: i64) -> BoxFuture<'_, Result<bool, OpError>>;
    /// The gateway's client ID metadata document, served at
    /// `/api/connections/client-metadata.json` (`None`: not offered, the public URL is not https).
    fn client_metadata(&self) -> Option<serde_json::Value>;
}

/// The gateway's client ID metadata document: authorization servers that take them fetch it
/// to learn the gateway as a client (its client id is this URL), instead of a registration.
#[utoipa::path(get, path = "/api/connections/client-metadata.json", tag = "credentials",
    responses((status = 200, description = "The client metadata document (RFC 7591 fields)", body = Object),
        (status = 400, description = "Invalid request", body = ErrorBody),
        (status = 404, description = "Not offered: the gateway's public URL is not https", body = ErrorBody)))]
pub(crate) async fn client_metadata(State(state): State<Arc<ApiState>>) -> Response {
    match state.connections.as_ref().and_then(|c| c.client_metadata()) {
        Some(document) => (
            [(http::header::CACHE_CONTROL, "public, max-age=3600")],
            Json(document),
        )
            .into_response(),
        None => ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no client metadata document: the gateway's public URL (GIG_PUBLIC_URL) is not https",
        )
        .into_response(),
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ConnectionList {
    connections: Vec<UpstreamConnection>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ConnectStarted {
    /// Open this in the user's browser.
    authorization_url: String,
}

fn connections(state: &ApiState) -> Result<&Arc<dyn Connections>, ApiError> {
    state.connections.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no server here uses OAuth per user",
        )
    })
}

fn own(caller: &Caller) -> Result<i64, ApiError> {
    if caller.real.is_some() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "not while impersonating: a user connects their own accounts",
        ));
    }
    Ok(caller.user.id)
}

/// The caller's connections to every server that uses OAuth per user.
#[utoipa::path(get, path = "/api/me/connections", tag = "credentials",
    responses((status = 200, body = ConnectionList),
        (status = 400, description = "Invalid request", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The role does not allow it", body = ErrorBody)))]
pub(crate) async fn list(
    State(state): State<Arc<ApiState>>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<ConnectionList>, ApiError> {
    let connections = match &state.connections {
        Some(c) => c.list(caller.user.id).await?,
        None => Vec::new(),
    };
    Ok(Json(ConnectionList { connections }))
}

/// Starts connecting the caller's account to a server: open the returned URL in a browser.
#[utoipa::path(post, path = "/api/me/connections/{name}", tag = "credentials",
    params(("name" = String, Path, description = "Server name")),
    responses((status = 200, body = ConnectStarted),
        (status = 400, description = "Invalid request", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The role does not allow it, or impersonating", body = ErrorBody),
        (status = 404, description = "Not a server that uses OAuth per user", body = ErrorBody),
        (status = 502, description = "The server's authorization server failed", body = ErrorBody)))]
pub(crate) async fn begin(
    State(state): State<Arc<ApiState>>,
    Extension(caller): Extension<Caller>,
    ApiPath(server): ApiPath<String>,
) -> Result<Json<ConnectStarted>, ApiError> {
    let user = own(&caller)?;
    let server = crate::servers::server_name(&server)?;
    let authorization_url = connections(&state)?.begin(server.into(), user).await?;
    Ok(Json(ConnectStarted { authorization_url }))
}

/// Disconnects the caller's account: its tokens are revoked and deleted.
#[utoipa::path(delete, path = "/api/me/connections/{name}", tag = "credentials",
    params(("name" = String, Path, description = "Server name")),
    responses((status = 204, description = "Disconnected"),
        (status = 400, description = "Invalid request", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The role does not allow it, or impersonating", body = ErrorBody),
        (status = 404, description = "Not connected", body = ErrorBody)))]
pub(crate) async fn disconnect(
    State(state): State<Arc<ApiState>>,
    Extension(caller): Extension<Caller>,
    ApiPath(server): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let user = own(&caller)?;
    let server = crate::servers::server_name(&server)?;
    if !connections(&state)?
        .disconnect(server.to_string(), user)
        .await?
    {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no connection to {server}"),
        ));
    }
    audit(
        &state,
        &caller.actor(),
        "connection.removed",
        &server,
        serde_json::json!({}),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Where a server's authorization server sends the browser back: finishes the connection and
/// returns to the server's page in the dashboard.
#[utoipa::path(get, path = "/api/connections/callback", tag = "credentials", params(CallbackParams),
    responses((status = 302, description = "Connected: to the server's page"),
        (status = 400, description = "Refused, expired, or not this user's", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The role does not allow it, or impersonating", body = ErrorBody),
        (status = 404, description = "No server here uses OAuth per user", body = ErrorBody),
        (status = 502, description = "The token exchange failed", body = ErrorBody)))]
pub(crate) async fn callback(
    State(state): State<Arc<ApiState>>,
    Extension(caller): Extension<Caller>,
    ApiQuery(params): ApiQuery<CallbackParams>,
) -> Result<Response, ApiError> {
    let user = own(&caller)?;
    if let Some(error) = params.error {
        // The authorization server's word, shown back only as a short token-like code.
        let error: String = error
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(64)
            .collect();
        return Err(ApiError::bad_request(format!(
            "the authorization server did not connect the account: {error}"
        )));
    }
    let (Some(code), Some(flow)) = (params.code, params.state) else {
        return Err(ApiError::bad_request("code and state are required"));
    };
    let server = connections(&state)?
        .finish(user, code, flow, params.iss)
        .await?;
    audit(
        &state,
        &caller.actor(),
        "connection.created",
        &server,
        serde_json::json!({}),
    )
    .await?;
    let page = format!(
        "/servers/{}?connected=1",
        url::form_urlencoded::byte_serialize(server.as_bytes()).collect::<String>()
    );
    Ok(redirect(&page, &[]).into_response())
}
