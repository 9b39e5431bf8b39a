//! One error type for `/api`: `{"error": {"code", "message", "request_id"}}`. The message is
//! written for the caller and never carries a cause; the cause is logged with the request id.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::StatusCode;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Set where the cause was logged, so the body names the same id as the log line.
    request_id: Option<String>,
    /// Seconds for a `Retry-After` header, on failures that pass by themselves.
    retry_after: Option<u32>,
}

fn new_request_id() -> String {
    hex::encode(rand::random::<[u8; 8]>())
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            request_id: None,
            retry_after: None,
        }
    }

    pub fn unauthenticated() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "sign in first: GET /api/auth/login",
        )
    }

    pub fn forbidden() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "your role does not allow this",
        )
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no such {what}"),
        )
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn disabled() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "control_plane_disabled",
            "the control plane is off: set GIG_OIDC_ISSUER, GIG_OIDC_CLIENT_ID and \
             GIG_OIDC_CLIENT_SECRET (see docs/configuration.md); /mcp works with the static token",
        )
    }

    /// A failure the caller cannot fix: the cause is logged under the request id, never sent.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        let mut error = Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the gateway could not complete this request",
        );
        let request_id = new_request_id();
        tracing::error!(%request_id, cause = %cause, "api request failed");
        error.request_id = Some(request_id);
        error
    }
}

impl From<gig_store::StoreError> for ApiError {
    /// An unreachable or full database is a 503 the caller may retry, never a 500 and never a
    /// 401 (a session that cannot be looked up is not an unknown session).
    fn from(e: gig_store::StoreError) -> Self {
        if !e.is_unavailable() {
            return ApiError::internal(&e);
        }
        let request_id = new_request_id();
        tracing::warn!(%request_id, cause = %e, "api request failed: the database is unavailable");
        ApiError {
            request_id: Some(request_id),
            retry_after: Some(5),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "the gateway's database is unavailable; retry shortly",
            )
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let request_id = self.request_id.unwrap_or_else(new_request_id);
        let body = serde_json::json!({
            "error": { "code": self.code, "message": self.message, "request_id": request_id }
        });
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(http::header::RETRY_AFTER, seconds.into());
        }
        response
    }
}
