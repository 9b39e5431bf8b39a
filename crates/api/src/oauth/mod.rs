//! The gateway as the OAuth 2.1 authorization server and protected resource for `/mcp`, as the
//! MCP authorization specification asks: a client learns from a 401 where the protected-resource
//! metadata is (RFC 9728), finds this server's metadata there (RFC 8414), identifies itself by a
//! metadata document (an https `client_id`) or registers (RFC 7591), and sends the user's browser
//! to [`authorize`], where they sign in with the control plane's identity provider and consent:
//! which client, which of their profiles, which scopes. The access token it gets is opaque,
//! stored only as a hash, and bound to (user, profile, client grant, audience = this `/mcp`);
//! on `/mcp` it acts exactly as that profile's token would ([`access`]).
//!
//! What the client sends is never trusted: client ids, redirect URIs (matched exactly),
//! `resource`, `scope`, PKCE (S256 only, always required) and `state` are checked before
//! anything is written; a client's token is never passed to any backend.

pub(crate) mod access;
mod authorize;
mod clients;
mod form;
pub(crate) mod grants;
mod metadata;
mod page;
mod token;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use gig_config::GatewayConfig;
use gig_gateway::http::OAuthChallenge;

use crate::ApiState;
use crate::sealed::Sealer;

/// Access tokens on `/mcp`.
pub const ACCESS_PREFIX: &str = "gigo_";
/// Refresh tokens at the token endpoint.
const REFRESH_PREFIX: &str = "gigr_";
/// Authorization codes.
const CODE_PREFIX: &str = "gigc_";
/// Ids of dynamically registered clients.
const CLIENT_PREFIX: &str = "gigd_";

/// The scope `/mcp` needs.
pub const SCOPE_MCP: &str = "mcp";
/// Every scope this server grants: `mcp` (use the chosen profile's tools on `/mcp`) and
/// `offline_access` (accepted because clients ask for it; refresh tokens are issued either way).
const SCOPES: [&str; 2] = [SCOPE_MCP, "offline_access"];

/// How long an authorization code may wait for its exchange.
const CODE_TTL: Duration = Duration::from_secs(60);
/// How long a consent form may stay open.
const CONSENT_TTL: Duration = Duration::from_secs(600);
/// Largest body any `/oauth` endpoint reads.
const MAX_BODY: usize = 16 * 1024;

/// The authorization server's settings and in-memory parts.
#[derive(Debug)]
pub struct AuthServer {
    /// `GIG_PUBLIC_URL`'s origin: the issuer, and the base of every endpoint.
    issuer: String,
    /// `{issuer}/mcp`: the only audience tokens are issued for.
    resource: String,
    access_ttl: Duration,
    refresh_ttl: Duration,
    clients: clients::Clients,
    /// Seals the authorization request into the consent form.
    sealer: Sealer,
    /// Consent forms already answered (nonce → unix expiry), so each is answered once.
    answered: std::sync::Mutex<std::collections::HashMap<String, i64>>,
}

impl AuthServer {
    pub fn new(config: &GatewayConfig, outbound: gig_outbound::Outbound) -> Self {
        let issuer = config.public_url.origin().ascii_serialization();
        let (access_ttl, refresh_ttl) = config.oidc.as_ref().map_or(
            (Duration::from_secs(3600), Duration::from_secs(30 * 86_400)),
            |o| (o.oauth_access_ttl, o.oauth_refresh_ttl),
        );
        AuthServer {
            resource: format!("{issuer}/mcp"),
            issuer,
            access_ttl,
            refresh_ttl,
            clients: clients::Clients::new(outbound),
            sealer: Sealer::new(),
            answered: Default::default(),
        }
    }

    /// Whether the consent form `nonce` (valid until `expires`) is answered for the first time.
    fn first_use(&self, nonce: &str, expires: i64) -> bool {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let mut answered = crate::lock(&self.answered);
        answered.retain(|_, until| *until > now);
        answered.insert(nonce.to_owned(), expires).is_none()
    }

    /// `/mcp`'s audience.
    pub fn resource(&self) -> &str {
        &self.resource
    }

    /// What `/mcp` puts in `WWW-Authenticate` so a client can discover this server.
    pub fn challenge(&self) -> OAuthChallenge {
        OAuthChallenge {
            resource_metadata: format!("{}/.well-known/oauth-protected-resource/mcp", self.issuer),
            scope: SCOPE_MCP.to_owned(),
        }
    }
}

/// `/.well-known/*` metadata and the `/oauth/*` endpoints (public: each checks what it needs).
pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route(
            "/.well-known/oauth-protected-resource",
            get(metadata::protected_resource),
        )
        .route(
            "/.well-known/oauth-protected-resource/mcp",
            get(metadata::protected_resource),
        )
        .route(
            "/.well-known/oauth-authorization-server",
            get(metadata::authorization_server),
        )
        .route(
            "/.well-known/openid-configuration",
            get(metadata::authorization_server),
        )
        .route(
            "/oauth/authorize",
            get(authorize::request).post(authorize::decide),
        )
        .route("/oauth/token", post(token::token))
        .route("/oauth/revoke", post(token::revoke))
        .route("/oauth/register", post(clients::register))
        .layer(axum::middleware::from_fn(metadata::cors))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// `prefix` + 64 random hex characters.
fn new_secret(prefix: &str) -> String {
    format!("{prefix}{}", crate::session::random_token())
}

/// Space-separated scopes, each one this server grants, without repeats; `None` when any is
/// unknown.
fn parse_scope(raw: &str) -> Option<Vec<&'static str>> {
    let mut granted = Vec::new();
    for scope in raw.split(' ').filter(|s| !s.is_empty()) {
        let known = SCOPES.into_iter().find(|s| *s == scope)?;
        if !granted.contains(&known) {
            granted.push(known);
        }
    }
    Some(granted)
}

#[cfg(test)]
mod fuzz;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_known_ones_only() {
        assert_eq!(
            parse_scope("mcp offline_access mcp"),
            Some(vec!["mcp", "offline_access"])
        );
        assert_eq!(parse_scope(""), Some(vec![]));
        assert_eq!(parse_scope("mcp admin"), None);
        assert_eq!(parse_scope("MCP"), None);
    }
}
