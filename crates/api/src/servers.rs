//! Servers as the control plane shows them.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;

use crate::ApiState;
use crate::error::ApiError;

pub(crate) async fn list(
    State(state): State<Arc<ApiState>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let servers: Vec<_> = state
        .store
        .list_servers()
        .await?
        .into_iter()
        .map(|s| {
            serde_json::json!({
                "name": s.name,
                "version": s.version,
                "state": s.state.as_str(),
                "image_digest": s.image_digest,
            })
        })
        .collect();
    Ok(Json(serde_json::json!({ "servers": servers })))
}
