//! Servers as the control plane shows them.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;

use crate::ApiState;
use crate::error::ApiError;
use crate::schema::{ErrorBody, ServerInfo, Servers};

/// Installed servers and their state.
#[utoipa::path(get, path = "/api/servers", tag = "servers",
    responses((status = 200, body = Servers), (status = 401, description = "Not signed in", body = ErrorBody), (status = 403, description = "The role does not allow it, or CSRF failed", body = ErrorBody)))]
pub(crate) async fn list(State(state): State<Arc<ApiState>>) -> Result<Json<Servers>, ApiError> {
    let servers: Vec<_> = state
        .store
        .list_servers()
        .await?
        .into_iter()
        .map(|s| ServerInfo {
            state: s.state.as_str().to_owned(),
            name: s.name,
            version: s.version,
            image_digest: s.image_digest,
        })
        .collect();
    Ok(Json(Servers { servers }))
}
