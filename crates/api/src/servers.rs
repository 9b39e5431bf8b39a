//! Servers over `/api`: their state, the signed index, installs (followed by polling or over
//! server-sent events), uninstalls, and their credentials (set and delete; values never
//! returned by any route).

use std::sync::Arc;

use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use http::StatusCode;
use serde::Deserialize;

use crate::ApiState;
use crate::error::ApiError;
use crate::extract::ApiPath;
use crate::operations::{CredentialName, CredentialOwner, OpError, ServerName};
use crate::routes::{audit, body};
use crate::schema::{
    Catalog, CatalogItem, CredentialInfo, Credentials, DeclaredCredentialInfo, ErrorBody,
    InstallStarted, InstancesInfo, Logs, ServerInfo, Servers, ToolInfo, Tools,
};
use crate::session::Caller;

/// Largest credential value accepted (as `gigmcp secret set`).
const MAX_SECRET_BYTES: usize = 64 * 1024;

impl From<OpError> for ApiError {
    fn from(e: OpError) -> Self {
        match e {
            OpError::NotFound(m) => ApiError::new(StatusCode::NOT_FOUND, "not_found", m),
            OpError::Invalid(m) => ApiError::bad_request(m),
            OpError::Unavailable(m) => ApiError::new(StatusCode::CONFLICT, "unavailable", m),
            OpError::Failed(m) => ApiError::new(StatusCode::BAD_GATEWAY, "operation_failed", m),
        }
    }
}

/// A server name from a path or a body, by the rule every source of names shares. The refusal
/// states the rule without repeating the (unbounded) input.
pub(crate) fn server_name(name: &str) -> Result<ServerName, ApiError> {
    ServerName::parse(name).map_err(|_| {
        ApiError::bad_request("a server name is 1 to 128 of [A-Za-z0-9._-], not starting with '.'")
    })
}

/// A version label: no path tricks, bounded (the index's own rule is checked when it resolves).
fn valid_version(version: &str) -> Result<(), ApiError> {
    let ok = !version.is_empty()
        && version.len() <= 128
        && version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !version.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "a version is 1 to 128 of [A-Za-z0-9._-], not starting with a dot",
        ))
    }
}

/// Installed and declared servers with their live state, tools, credentials and egress.
#[utoipa::path(get, path = "/api/servers", tag = "servers",
    responses((status = 200, body = Servers),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The role does not allow it", body = ErrorBody)))]
pub(crate) async fn list(
    State(state): State<Arc<ApiState>>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Servers>, ApiError> {
    Ok(Json(snapshot(&state, &caller).await?))
}

/// The servers as `caller` may see them (also what `/api/events/servers` sends).
pub(crate) async fn snapshot(state: &ApiState, caller: &Caller) -> Result<Servers, ApiError> {
    // Why a server is down is the backend's own text: shown to those who read its logs.
    let sees_reasons = crate::rbac::allows(caller.role, crate::rbac::Permission::ApproveTools);
    let servers = state
        .operations
        .servers()
        .await?
        .into_iter()
        .map(|s| ServerInfo {
            name: s.name,
            source: s.source.to_owned(),
            version: s.version,
            image_digest: s.image_digest,
            state: s.state.to_owned(),
            tools: s.tools,
            restarts: s.restarts,
            reason: s.reason.filter(|_| sees_reasons),
            credentials: s
                .credentials
                .into_iter()
                .map(|c| DeclaredCredentialInfo {
                    name: c.name,
                    env: c.env,
                    hosts: c.hosts,
                })
                .collect(),
            egress: s.egress,
            instances: s.instances.map(|i| InstancesInfo {
                mode: i.mode.to_owned(),
                max_instances: i.max_instances,
                max_per_user: i.max_per_user,
                idle_seconds: i.idle_seconds,
                running: i.running,
            }),
        })
        .collect();
    Ok(Servers { servers })
}

/// The signed index's entries, verified now.
#[utoipa::path(get, path = "/api/catalog", tag = "servers",
    responses((status = 200, body = Catalog),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The role does not allow it", body = ErrorBody),
        (status = 502, description = "The index could not be fetched or verified", body = ErrorBody)))]
pub(crate) async fn catalog(State(state): State<Arc<ApiState>>) -> Result<Json<Catalog>, ApiError> {
    let Some(entries) = state.operations.catalog().await? else {
        return Ok(Json(Catalog {
            enabled: false,
            entries: Vec::new(),
        }));
    };
    let entries = entries
        .into_iter()
        .map(|e| CatalogItem {
            name: e.name,
            description: e.description,
            latest: e.latest,
            versions: e.versions,
            installed: e.installed,
        })
        .collect();
    Ok(Json(Catalog {
        enabled: true,
        entries,
    }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct InstallRequest {
    /// `name` or `name@version` from the signed index.
    #[serde(rename = "ref")]
    #[schema(min_length = 1, max_length = 200)]
    reference: String,
}

/// Starts an install; follow it at `status_url` or `events_url` (server-sent events).
#[utoipa::path(post, path = "/api/servers", tag = "servers", request_body = InstallRequest,
    responses((status = 202, body = InstallStarted),
        (status = 400, description = "Invalid request", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The role does not allow it", body = ErrorBody),
        (status = 409, description = "Installs are not configured", body = ErrorBody),
        (status = 429, description = "Too many installs running", body = ErrorBody)))]
pub(crate) async fn install(
    State(state): State<Arc<ApiState>>,
    Extension(caller): Extension<Caller>,
    request: Result<Json<InstallRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let request = body(request)?;
    let (name, version) = match request.reference.split_once('@') {
        Some((n, v)) => (n, Some(v)),
        None => (request.reference.as_str(), None),
    };
    server_name(name)?;
    if let Some(v) = version {
        valid_version(v)?;
    }
    if !state.operations.installs_enabled() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "unavailable",
            "installs are off: set GIG_INDEX_URL and GIG_INDEX_PUBKEYS",
        ));
    }
    let job = state
        .installs
        .start(state.clone(), caller.actor(), request.reference.clone())?;
    let started = InstallStarted {
        status_url: format!("/api/installs/{job}"),
        events_url: format!("/api/installs/{job}/events"),
        job,
    };
    Ok((StatusCode::ACCEPTED, Json(started)).into_response())
}

/// Removes an installed server (running gateways stop it within seconds).
#[utoipa::path(delete, path = "/api/servers/{name}", tag = "servers",
    params(("name" = String, Path, description = "Server name")),
    responses((status = 204, description = "Uninstalled"),
        (status = 400, description = "Invalid request", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The role does not allow it", body = ErrorBody),
        (status = 404, description = "Not installed", body = ErrorBody)))]
pub(crate) async fn uninstall(
    State(state): State<Arc<ApiState>>,
    Extension(caller): Extension<Caller>,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let name = server_name(&name)?;
    if !state.operations.uninstall(name.clone()).await? {
        return Err(ApiError::not_found("installed server"));
    }
    audit(
        &state,
        &caller.actor(),
        "server.uninstalled",
        &format!("{name}/"),
        serde_json::json!({}),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A server's stored credentials: names, key ids, times — never values.
#[utoipa::path(get, path = "/api/servers/{name}/credentials", tag = "credentials",
    params(("name" = String, Path, description = "Server name")),
    responses((status = 200, body = Credentials),
        (status = 400, description = "Invalid request", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The role does not allow it", body = ErrorBody)))]
pub(crate) async fn credentials(
    State(state): State<Arc<ApiState>>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<Credentials>, ApiError> {
    list_credentials(&state, name, CredentialOwner::Server).await
}

/// `owner`'s stored credentials of server `name`: names, key ids, times.
pub(crate) async fn list_credentials(
    state: &ApiState,
    name: String,
    owner: CredentialOwner,
) -> Result<Json<Credentials>, ApiError> {
    let name = server_name(&name)?;
    let credentials = state
        .operations
        .credentials(name, owner)
        .await?
        .into_iter()
        .map(|c| CredentialInfo {
            name: c.name,
            key_id: c.key_id,
            updated_at: c.updated_at,
        })
        .collect();
    Ok(Json(Credentials { credentials }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CredentialValue {
    /// The secret; stored encrypted, never returned.
    #[schema(min_length = 1, max_length = 65536)]
    value: String,
}

/// Sets (or replaces) a credential the server declares; the server itself only ever sees a
/// placeholder.
#[utoipa::path(put, path = "/api/servers/{name}/credentials/{credential}", tag = "credentials",
    request_body = CredentialValue,
    params(("name" = String, Path, description = "Server name"),
        ("credential" = String, Path, description = "Credential (vault) name")),
    responses((status = 204, description = "Stored"),
        (status = 400, description = "Invalid request, not a credential the server declares, or a server whose users set their own", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The role does not allow it", body = ErrorBody),
        (status = 404, description = "No such server", body = ErrorBody)))]
pub(crate) async fn set_credential(
    State(state): State<Arc<ApiState>>,
    Extension(caller): Extension<Caller>,
    ApiPath((server, name)): ApiPath<(String, String)>,
    request: Result<Json<CredentialValue>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    store_credential(
        &state,
        &caller,
        server,
        CredentialOwner::Server,
        name,
        request,
    )
    .await
}

/// Stores `owner`'s credential `name` of `server` and audits it (never the value).
pub(crate) async fn store_credential(
    state: &ApiState,
    caller: &Caller,
    server: String,
    owner: CredentialOwner,
    name: String,
    request: Result<Json<CredentialValue>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let server = server_name(&server)?;
    let name = CredentialName::parse(&name).map_err(ApiError::bad_request)?;
    let value = zeroize::Zeroizing::new(body(request)?.value.into_bytes());
    if value.is_empty() || value.len() > MAX_SECRET_BYTES {
        return Err(ApiError::bad_request(format!(
            "a credential value is 1 to {MAX_SECRET_BYTES} bytes"
        )));
    }
    state
        .operations
        .set_credential(server.clone(), owner, name.clone(), value)
        .await?;
    audit_credential(state, caller, "credential.set", &server, owner, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, path = "/api/servers/{name}/credentials/{credential}", tag = "credentials",
    params(("name" = String, Path, description = "Server name"),
        ("credential" = String, Path, description = "Credential (vault) name")),
    responses((status = 204, description = "Deleted"),
        (status = 400, description = "Invalid request", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The role does not allow it", body = ErrorBody),
        (status = 404, description = "No such credential", body = ErrorBody)))]
pub(crate) async fn delete_credential(
    State(state): State<Arc<ApiState>>,
    Extension(caller): Extension<Caller>,
    ApiPath((server, name)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    remove_credential(&state, &caller, server, CredentialOwner::Server, name).await
}

/// Deletes `owner`'s credential `name` of `server` and audits it.
pub(crate) async fn remove_credential(
    state: &ApiState,
    caller: &Caller,
    server: String,
    owner: CredentialOwner,
    name: String,
) -> Result<StatusCode, ApiError> {
    let server = server_name(&server)?;
    let name = CredentialName::parse(&name).map_err(ApiError::bad_request)?;
    if !state
        .operations
        .delete_credential(server.clone(), owner, name.clone())
        .await?
    {
        return Err(ApiError::not_found("credential"));
    }
    audit_credential(state, caller, "credential.deleted", &server, owner, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn audit_credential(
    state: &ApiState,
    caller: &Caller,
    action: &'static str,
    server: &str,
    owner: CredentialOwner,
    name: &CredentialName,
) -> Result<(), ApiError> {
    let target = format!("{server}/credential:{name}");
    let detail = match owner {
        CredentialOwner::Server => serde_json::json!({}),
        CredentialOwner::User(id) => serde_json::json!({ "user": id }),
    };
    audit(state, &caller.actor(), action, &target, detail).await
}

/// The server's recent stderr (the last 200 lines, scrubbed).
#[utoipa::path(get, path = "/api/servers/{name}/logs", tag = "servers",
    params(("name" = String, Path, description = "Server name")),
    responses((status = 200, body = Logs),
        (status = 400, description = "Invalid request", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The role does not allow it", body = ErrorBody),
        (status = 404, description = "Not running here", body = ErrorBody)))]
pub(crate) async fn logs(
    State(state): State<Arc<ApiState>>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<Logs>, ApiError> {
    let name = server_name(&name)?;
    let lines = state
        .operations
        .logs(&name)
        .ok_or_else(|| ApiError::not_found("running server"))?;
    Ok(Json(Logs { lines }))
}

/// Restarts the server now (without backoff).
#[utoipa::path(post, path = "/api/servers/{name}/restart", tag = "servers",
    params(("name" = String, Path, description = "Server name")),
    responses((status = 204, description = "Restarting"),
        (status = 400, description = "Invalid request", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The role does not allow it", body = ErrorBody),
        (status = 404, description = "Not running here", body = ErrorBody)))]
pub(crate) async fn restart(
    State(state): State<Arc<ApiState>>,
    Extension(caller): Extension<Caller>,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let name = server_name(&name)?;
    if !state.operations.restart(&name) {
        return Err(ApiError::not_found("running server"));
    }
    audit(
        &state,
        &caller.actor(),
        "server.restarted",
        &format!("{name}/"),
        serde_json::json!({}),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The tools a running server shows clients, with their definitions (a tool hidden by the
/// rug-pull check is not among them: see /api/approvals).
#[utoipa::path(get, path = "/api/servers/{name}/tools", tag = "servers",
    params(("name" = String, Path, description = "Server name")),
    responses((status = 200, body = Tools),
        (status = 400, description = "Invalid request", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The role does not allow it", body = ErrorBody),
        (status = 404, description = "Not running here", body = ErrorBody)))]
pub(crate) async fn tools(
    State(state): State<Arc<ApiState>>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<Tools>, ApiError> {
    let name = server_name(&name)?;
    let tools = state
        .operations
        .tools(&name)
        .ok_or_else(|| ApiError::not_found("running server"))?
        .into_iter()
        .map(|t| ToolInfo {
            exposed: t.exposed,
            name: t.name,
            description: t.description,
            input_schema: t.input_schema,
        })
        .collect();
    Ok(Json(Tools { tools }))
}
