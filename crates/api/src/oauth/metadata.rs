//! Discovery: the protected-resource metadata of `/mcp` (RFC 9728) and this authorization
//! server's metadata (RFC 8414, also at the OpenID discovery path where some clients look),
//! readable cross-origin because browser-based MCP clients fetch them too.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Method, StatusCode, header};
use serde_json::{Value, json};

use super::{SCOPE_MCP, SCOPES};
use crate::ApiState;

pub(super) async fn protected_resource(State(state): State<Arc<ApiState>>) -> Json<Value> {
    let oauth = &state.oauth;
    Json(json!({
        "resource": oauth.resource,
        "authorization_servers": [oauth.issuer],
        "scopes_supported": [SCOPE_MCP],
        "bearer_methods_supported": ["header"],
        "resource_name": "Gig'MCP",
    }))
}

pub(super) async fn authorization_server(State(state): State<Arc<ApiState>>) -> Json<Value> {
    let issuer = &state.oauth.issuer;
    let client_auth = ["none", "client_secret_basic", "client_secret_post"];
    Json(json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/oauth/authorize"),
        "token_endpoint": format!("{issuer}/oauth/token"),
        "registration_endpoint": format!("{issuer}/oauth/register"),
        "revocation_endpoint": format!("{issuer}/oauth/revoke"),
        "scopes_supported": SCOPES,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "token_endpoint_auth_methods_supported": client_auth,
        "revocation_endpoint_auth_methods_supported": client_auth,
        "code_challenge_methods_supported": ["S256"],
        "client_id_metadata_document_supported": true,
        "authorization_response_iss_parameter_supported": true,
    }))
}

/// Metadata, registration, token and revocation answer any origin: none of them reads a
/// cookie, so a cross-origin caller gains nothing a server-side one would not have. The
/// authorization page is left alone (it is navigated to, never fetched).
pub(super) async fn cors(request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let open = path.starts_with("/.well-known/")
        || matches!(path, "/oauth/token" | "/oauth/revoke" | "/oauth/register");
    if !open {
        return next.run(request).await;
    }
    let mut response = if request.method() == Method::OPTIONS {
        StatusCode::NO_CONTENT.into_response()
    } else {
        next.run(request).await
    };
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, OPTIONS"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("authorization, content-type, mcp-protocol-version"),
    );
    response
}
