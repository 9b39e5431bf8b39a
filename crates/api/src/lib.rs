//! The control plane's REST surface, `/api`: OIDC sign-in (authorization code + PKCE, the ID
//! token verified by `openidconnect`), server-side sessions in the store behind an HttpOnly
//! cookie, CSRF on every cookie-authenticated change, and one reviewed permission table
//! ([`rbac`]) that every route must name.
//!
//! It owns who the caller is on `/api` and what their role allows; it never accepts a session
//! cookie on `/mcp` (that router never sees this crate's extractors), never stores a session or
//! token except as a hash, and never puts a cause into a response body (see [`error`]).

#![forbid(unsafe_code)]

mod api_tokens;
mod approvals;
mod audit_log;
pub mod call_audit;
pub mod connections;
pub mod error;
mod extract;
#[cfg(test)]
mod fuzz;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod installs;
pub mod mcp_tokens;
mod my_credentials;
pub mod oauth;
pub mod oidc;
pub mod openapi;
pub mod operations;
mod profiles;
pub mod rbac;
mod routes;
pub mod schema;
mod sealed;
mod server_events;
mod servers;
pub mod session;
mod signin;
mod users;

use std::sync::Arc;

use axum::Router;
use gig_config::GatewayConfig;
use gig_store::Store;

pub use error::ApiError;
pub use oidc::{Oidc, OidcError};

/// Everything `/api` handlers share.
#[derive(Debug)]
pub struct ApiState {
    pub store: Store,
    pub oidc: Oidc,
    /// Resolves profile tokens and OAuth access tokens on `/mcp` (cached; revocations seen
    /// within 1.5 s).
    pub mcp_tokens: Arc<mcp_tokens::McpTokens>,
    /// The OAuth authorization server for `/mcp`.
    pub oauth: oauth::AuthServer,
    /// Records every `tools/call` into the audit log.
    pub call_audit: Arc<call_audit::StoreCallAudit>,
    /// The running gateway's servers, index, installs and vault.
    pub operations: Arc<dyn operations::Operations>,
    installs: installs::Installs,
    /// `scheme://host[:port]` of `GIG_PUBLIC_URL`: the only `Origin` accepted on changes.
    pub public_origin: String,
    /// Cookies carry `Secure` when the public URL is https.
    pub secure_cookies: bool,
    /// Users' accounts at remote servers that use OAuth per user; `None` when none does.
    pub connections: Option<Arc<dyn connections::Connections>>,
    /// Cancelled when the gateway starts draining: ends every long-lived `/api` event stream.
    pub streams_end: tokio_util::sync::CancellationToken,
}

impl ApiState {
    /// Starts the call-audit writer: call from within the runtime. `outbound` carries the
    /// gateway's own requests (clients' metadata documents).
    pub fn new(
        config: &GatewayConfig,
        store: Store,
        oidc: Oidc,
        operations: Arc<dyn operations::Operations>,
        outbound: gig_outbound::Outbound,
    ) -> Self {
        tokio::spawn(purge_expired(store.clone()));
        let oauth = oauth::AuthServer::new(config, outbound);
        ApiState {
            operations,
            installs: installs::Installs::default(),
            mcp_tokens: Arc::new(mcp_tokens::McpTokens::new(
                store.clone(),
                oauth.resource().to_owned(),
            )),
            oauth,
            call_audit: Arc::new(call_audit::StoreCallAudit::start(store.clone())),
            store,
            oidc,
            public_origin: config.public_url.origin().ascii_serialization(),
            secure_cookies: config.public_url.scheme() == "https",
            connections: None,
            streams_end: tokio_util::sync::CancellationToken::new(),
        }
    }
}

/// The `/api` router with the control plane on, and beside it the OAuth authorization server
/// for `/mcp` (`/.well-known/…`, `/oauth/…`).
pub fn router(state: Arc<ApiState>) -> Router {
    routes::routes()
        .into_router(state.clone())
        .merge(oauth::router(state))
}

/// Every `/api` path answers 503 with how to turn the control plane on.
pub fn disabled_router() -> Router {
    Router::new()
        .route("/api", axum::routing::any(disabled))
        .route("/api/{*rest}", axum::routing::any(disabled))
}

async fn disabled() -> ApiError {
    ApiError::disabled()
}

/// Every route `/api` serves with the permission it requires, for documentation and tests.
pub fn route_table() -> Vec<(http::Method, &'static str, rbac::Access)> {
    routes::routes().table()
}

/// Deletes expired sessions, OAuth codes and tokens, and registered clients nobody granted
/// within an hour, every ten minutes, so those tables hold live rows only.
async fn purge_expired(store: Store) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(600));
    loop {
        every.tick().await;
        let now = time::OffsetDateTime::now_utc();
        if let Err(e) = store.delete_expired_sessions(now).await {
            tracing::warn!(error = %e, "cannot purge expired sessions");
        }
        if let Err(e) = store.delete_expired_oauth_tokens(now).await {
            tracing::warn!(error = %e, "cannot purge expired OAuth tokens");
        }
        let hour_ago = now - time::Duration::hours(1);
        if let Err(e) = store.delete_unused_oauth_clients(hour_ago).await {
            tracing::warn!(error = %e, "cannot purge unused OAuth clients");
        }
    }
}

/// A poisoned lock is taken anyway: every critical section here leaves its data consistent, and
/// one panicking request must not fail every later one.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
