//! OAuth toward remote servers (decision 70): users connect their own accounts (the
//! authorization-code grant with PKCE), or the gateway uses client credentials of its own.
//!
//! rmcp's authorization manager runs the protocol (protected-resource metadata discovery,
//! dynamic registration, PKCE, token exchange and refresh); every request it makes goes
//! through the gateway's outbound client ([`http_client`]). Tokens are sealed in the vault
//! per user ([`tokens`]); they are put on requests to that server only, and never reach a
//! client, a log or the audit trail.

mod http_client;
mod revoke;
mod service;
mod tokens;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use gig_config::{OAuthGrant, RemoteOAuth, RemoteSpec};
use gig_secrets::Secrets;
use gig_store::CredentialScope;
use rmcp::transport::auth::{
    AuthError, AuthorizationManager, AuthorizationMetadata, AuthorizationRequest,
    AuthorizationSession, ClientCredentialsConfig, OAuthClientConfig,
};

pub(crate) use http_client::OutboundOAuthHttp;
pub use tokens::{RefreshLocks, TOKEN_CREDENTIAL};
use tokens::{UserTokens, read_connection, user_scope};

/// How long a user has to finish connecting at the authorization server.
const PENDING_TTL: Duration = Duration::from_secs(600);
/// Most connections being made at once (abandoned ones expire), and by one user.
const MAX_PENDING: usize = 1024;
const MAX_PENDING_PER_USER: usize = 4;
/// Longest upstream error text passed on to a user (an authorization server's answer can be
/// anything, up to the outbound client's bound).
const MAX_ERROR_TEXT: usize = 300;
/// How the gateway names itself when it registers at an authorization server.
const CLIENT_NAME: &str = "Gig'MCP gateway";

/// Why connecting, or using a connection, failed: in words for the user (no token in them).
#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    #[error("{0} is not a server users connect an account to")]
    NotPerUser(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{server}: {reason}")]
    Upstream { server: String, reason: String },
    #[error("the vault: {0}")]
    Vault(String),
}

/// A user's connection to a server, as the control plane shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionState {
    NotConnected,
    Connected,
    /// It stopped working (a refresh was refused); the user must connect again.
    Broken(String),
}

/// One OAuth server of the servers file.
#[derive(Debug)]
pub(crate) struct OAuthServer {
    pub(crate) url: url::Url,
    pub(crate) oauth: RemoteOAuth,
    pub(crate) http: OutboundOAuthHttp,
    /// `GIG_PUBLIC_URL`'s `/api/connections/callback`.
    pub(crate) redirect_uri: String,
}

/// A connection being made: the manager holds the PKCE verifier until the user comes back.
struct Pending {
    server: String,
    user_id: i64,
    session: AuthorizationSession,
    started: Instant,
}

/// Per-user connections to the servers file's `authorization_code` servers.
pub struct UpstreamOAuth {
    secrets: Arc<Secrets>,
    redirect_uri: String,
    /// Offered to authorization servers that take client ID metadata documents.
    client_metadata_url: Option<String>,
    locks: Arc<RefreshLocks>,
    /// The servers file's, and those installed from the index (added and removed as they are).
    servers: Mutex<BTreeMap<String, Arc<OAuthServer>>>,
    pending: Mutex<HashMap<String, Pending>>,
    /// The client id a dynamic registration gave, per server, learnt at the first finished
    /// connection: later ones reuse it rather than register again.
    registered: Mutex<HashMap<String, String>>,
}

impl std::fmt::Debug for UpstreamOAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamOAuth")
            .field("servers", &self.servers())
            .finish_non_exhaustive()
    }
}

/// Where authorization servers send users back.
fn redirect_uri(public_url: &url::Url) -> String {
    public_url
        .join("api/connections/callback")
        .map(String::from)
        .unwrap_or_default()
}

/// The gateway's own client ID metadata document's URL (its client id at authorization servers
/// that take metadata documents), for an https public URL only: an authorization server fetches
/// it, and the MCP specification allows only https ones.
fn client_metadata_url(public_url: &url::Url) -> Option<String> {
    (public_url.scheme() == "https")
        .then(|| public_url.join("api/connections/client-metadata.json").ok())
        .flatten()
        .map(String::from)
}

/// An upstream failure in words a user may see: bounded, one line. (rmcp puts a failed
/// registration's whole answer in its error; that answer is the authorization server's.)
fn upstream(server: &str, e: impl std::fmt::Display) -> OAuthError {
    let text = e.to_string();
    let mut reason: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_ERROR_TEXT)
        .collect();
    if text.chars().count() > MAX_ERROR_TEXT {
        reason.push('…');
    }
    OAuthError::Upstream {
        server: server.to_owned(),
        reason,
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// A manager for `server` with its authorization server's metadata discovered (from the
/// server's protected-resource metadata, or the authorization server's own at its origin).
pub(crate) async fn discovered(server: &OAuthServer) -> Result<AuthorizationManager, AuthError> {
    let (mut manager, metadata) = discover(server).await?;
    manager.set_metadata(metadata);
    Ok(manager)
}

async fn metadata(server: &OAuthServer) -> Result<AuthorizationMetadata, AuthError> {
    Ok(discover(server).await?.1)
}

async fn discover(
    server: &OAuthServer,
) -> Result<(AuthorizationManager, AuthorizationMetadata), AuthError> {
    let manager = AuthorizationManager::new_with_oauth_http_client(
        server.url.as_str(),
        Arc::new(server.http.clone()),
    )
    .await?;
    let resolution = manager.resolve_metadata().await?;
    // Endpoints guessed from the URL are no evidence the server speaks OAuth at all.
    if !resolution.source.is_discovered() {
        return Err(AuthError::NoAuthorizationSupport);
    }
    // The upstream chooses where tokens and the client secret go; a pinned issuer overrules it.
    if let Some(pinned) = &server.oauth.issuer {
        let named = resolution.metadata.issuer.as_deref().unwrap_or_default();
        if named.trim_end_matches('/') != pinned.as_str().trim_end_matches('/') {
            return Err(AuthError::InternalError(format!(
                "the server names authorization server {named:?}, not the configured issuer {pinned}"
            )));
        }
    }
    Ok((manager, resolution.metadata))
}

/// The server's configured client secret, from the vault (its own scope).
async fn client_secret(
    secrets: &Secrets,
    name: &str,
    oauth: &RemoteOAuth,
) -> Result<Option<String>, String> {
    let Some(credential) = &oauth.client_secret else {
        return Ok(None);
    };
    let scope = CredentialScope {
        server: name,
        user_id: None,
        profile_id: None,
    };
    let value = secrets
        .get(&scope, credential)
        .await
        .map_err(|e| format!("credential {credential}: {e}"))?
        .ok_or_else(|| {
            format!("credential {credential} is not set: set it with `gigmcp secret set {name} {credential}`")
        })?;
    String::from_utf8(value.expose().to_vec())
        .map(Some)
        .map_err(|_| format!("credential {credential} is not text"))
}

impl UpstreamOAuth {
    pub fn new(
        specs: &[RemoteSpec],
        context: &super::RemoteContext,
    ) -> Result<Self, gig_outbound::OutboundError> {
        let oauth = UpstreamOAuth {
            secrets: context.secrets.clone(),
            redirect_uri: redirect_uri(&context.public_url),
            client_metadata_url: client_metadata_url(&context.public_url),
            locks: context.refresh_locks.clone(),
            servers: Mutex::new(BTreeMap::new()),
            pending: Mutex::new(HashMap::new()),
            registered: Mutex::new(HashMap::new()),
        };
        for spec in specs {
            oauth.add_server(spec, context)?;
        }
        Ok(oauth)
    }

    /// Lets users connect their accounts to `spec`, if it is a per-user OAuth server (a server
    /// installed, or installed again with other settings).
    pub fn add_server(
        &self,
        spec: &RemoteSpec,
        context: &super::RemoteContext,
    ) -> Result<(), gig_outbound::OutboundError> {
        if let Some(server) = oauth_server(spec, context)?
            && server.oauth.grant == OAuthGrant::AuthorizationCode
        {
            lock(&self.servers).insert(spec.name.to_string(), Arc::new(server));
        }
        Ok(())
    }

    /// Stops offering connections to `name` (it was uninstalled). Stored tokens stay: they
    /// are the user's, and a reinstall uses them again.
    pub fn remove_server(&self, name: &str) {
        lock(&self.servers).remove(name);
        lock(&self.pending).retain(|_, p| p.server != name);
        // A registration belongs to the authorization server the old settings named.
        lock(&self.registered).remove(name);
    }

    /// The document at [`client_metadata_url`]: a public client (PKCE, no secret) whose only
    /// redirect is the gateway's callback. `None` without an https public URL.
    pub fn client_metadata(&self) -> Option<serde_json::Value> {
        let client_id = self.client_metadata_url.as_ref()?;
        Some(serde_json::json!({
            "client_id": client_id,
            "client_name": CLIENT_NAME,
            "redirect_uris": [self.redirect_uri],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
            "application_type": "web",
        }))
    }

    /// The servers a user connects an account to.
    pub fn servers(&self) -> Vec<String> {
        lock(&self.servers).keys().cloned().collect()
    }

    fn server(&self, name: &str) -> Result<Arc<OAuthServer>, OAuthError> {
        lock(&self.servers)
            .get(name)
            .cloned()
            .ok_or_else(|| OAuthError::NotPerUser(name.to_owned()))
    }

    /// Starts connecting `user_id`'s account: the URL to send their browser to. A user has at
    /// most a few connections under way; starting one again replaces the earlier.
    pub async fn begin(&self, name: &str, user_id: i64) -> Result<String, OAuthError> {
        let server = self.server(name)?;
        // Refused before any request leaves: a refused begin registers nothing anywhere.
        self.make_room(name, user_id)?;
        let mut manager = discovered(&server).await.map_err(|e| upstream(name, e))?;
        manager.set_credential_store(user_tokens(
            &self.secrets,
            &self.locks,
            name,
            server.url.as_str(),
            user_id,
        ));
        let mut request = AuthorizationRequest::new(&self.redirect_uri)
            .with_client_name(CLIENT_NAME)
            .with_application_type("web");
        if !server.oauth.scopes.is_empty() {
            request = request.with_scopes(server.oauth.scopes.iter());
        }
        // Chosen by rmcp in the specification's order: a client registered in advance (or
        // the one a finished connection registered), this metadata document where the
        // authorization server says it takes them, dynamic registration otherwise.
        if let Some(url) = &self.client_metadata_url {
            request = request.with_client_metadata_url(url);
        }
        let registered = lock(&self.registered).get(name).cloned();
        if let Some(id) = server.oauth.client_id.clone().or(registered) {
            request = request.with_preregistered_client(id);
            if let Some(secret) = client_secret(&self.secrets, name, &server.oauth)
                .await
                .map_err(OAuthError::Invalid)?
            {
                request = request.with_client_secret(secret);
            }
        }
        let session = AuthorizationSession::new(manager, request)
            .await
            .map_err(|(_, e)| upstream(name, e))?;
        let url = url::Url::parse(&session.auth_url).map_err(|e| upstream(name, e))?;
        // The browser is sent there: nothing but a web page (https, or http beside a plain-http
        // server on an allowed address).
        let scheme_ok =
            url.scheme() == "https" || (url.scheme() == "http" && server.url.scheme() == "http");
        if !scheme_ok {
            return Err(upstream(
                name,
                format!(
                    "the authorization endpoint is not an https URL ({})",
                    url.scheme()
                ),
            ));
        }
        let state = url
            .query_pairs()
            .find(|(k, _)| k == "state")
            .map(|(_, v)| v.into_owned())
            .ok_or_else(|| upstream(name, "the authorization URL carries no state"))?;
        self.make_room(name, user_id)?;
        lock(&self.pending).insert(
            state,
            Pending {
                server: name.to_owned(),
                user_id,
                session,
                started: Instant::now(),
            },
        );
        Ok(url.into())
    }

    /// Forgets expired flows and `user_id`'s earlier one for `name`; refuses past the caps.
    fn make_room(&self, name: &str, user_id: i64) -> Result<(), OAuthError> {
        let mut pending = lock(&self.pending);
        pending.retain(|_, p| {
            p.started.elapsed() < PENDING_TTL && !(p.user_id == user_id && p.server == name)
        });
        let theirs = pending.values().filter(|p| p.user_id == user_id).count();
        if theirs >= MAX_PENDING_PER_USER || pending.len() >= MAX_PENDING {
            return Err(OAuthError::Invalid(
                "too many connections are being made; finish one or try again in a few minutes"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Finishes a connection the authorization server sent the user back from; the server's
    /// name. Only the user who began it can finish it, once, within ten minutes.
    pub async fn finish(
        &self,
        user_id: i64,
        code: &str,
        state: &str,
        issuer: Option<&str>,
    ) -> Result<String, OAuthError> {
        let pending = {
            let mut pending = lock(&self.pending);
            // Compared before it is taken: someone else's answer cannot cancel a user's flow.
            let theirs = pending
                .get(state)
                .is_some_and(|p| p.user_id == user_id && p.started.elapsed() < PENDING_TTL);
            match pending.remove(state).filter(|_| theirs) {
                Some(p) => p,
                None => {
                    return Err(OAuthError::Invalid(
                        "no connection of yours is waiting for this answer (expired, finished, or begun by someone else); start again".into(),
                    ));
                }
            }
        };
        let name = pending.server.clone();
        // Not while a refresh of the user's earlier tokens is being written.
        let _refreshing = self
            .locks
            .lock(&name, user_id)
            .await
            .map_err(OAuthError::Vault)?;
        pending
            .session
            .handle_callback_with_issuer(code, state, issuer)
            .await
            .map_err(|e| upstream(&name, e))?;
        if let Ok(Some(connection)) = read_connection(&self.secrets, &name, user_id).await {
            lock(&self.registered).insert(name.clone(), connection.credentials.client_id);
        }
        Ok(name)
    }

    /// Forgets `user_id`'s connection, revoking its tokens at the authorization server first
    /// (best effort: a server that cannot be reached does not keep the tokens in the vault).
    pub async fn disconnect(&self, name: &str, user_id: i64) -> Result<bool, OAuthError> {
        // A server removed since (uninstalled) still lets its users forget their tokens; there
        // is nothing left to revoke them at.
        let server = self.server(name).ok();
        let stored = |secrets| read_connection(secrets, name, user_id);
        // Nothing to forget: answered before taking a lock, which would be kept for the name.
        if stored(&self.secrets)
            .await
            .map_err(|e| OAuthError::Vault(e.to_string()))?
            .is_none()
        {
            return Ok(false);
        }
        // A refresh under way finishes first: it cannot write back what is deleted here.
        let _refreshing = self
            .locks
            .lock(name, user_id)
            .await
            .map_err(OAuthError::Vault)?;
        let connection = read_connection(&self.secrets, name, user_id)
            .await
            .map_err(|e| OAuthError::Vault(e.to_string()))?;
        let Some(connection) = connection else {
            return Ok(false);
        };
        // A registration the authorization server may have forgotten (the connection could be
        // broken for that reason) is not offered again: the next connection registers afresh.
        {
            let mut registered = lock(&self.registered);
            if registered.get(name) == Some(&connection.credentials.client_id) {
                registered.remove(name);
            }
        }
        if let Some(server) = &server {
            let secret = client_secret(&self.secrets, name, &server.oauth)
                .await
                .ok()
                .flatten();
            if let Err(e) = revoke::revoke(server, &connection.credentials, secret.as_deref()).await
            {
                tracing::warn!(server = name, user = user_id, error = %e, "revoking the upstream tokens failed; they are deleted here anyway");
            }
        }
        self.secrets
            .delete(&user_scope(name, user_id), TOKEN_CREDENTIAL)
            .await
            .map_err(|e| OAuthError::Vault(e.to_string()))
    }

    pub async fn state(&self, name: &str, user_id: i64) -> Result<ConnectionState, OAuthError> {
        let server = self.server(name)?;
        let connection = read_connection(&self.secrets, name, user_id)
            .await
            .map_err(|e| OAuthError::Vault(e.to_string()))?;
        Ok(match connection {
            None => ConnectionState::NotConnected,
            Some(c) => match c.problem(name, server.url.as_str()) {
                Some(reason) => ConnectionState::Broken(reason),
                None => ConnectionState::Connected,
            },
        })
    }
}

fn user_tokens(
    secrets: &Arc<Secrets>,
    locks: &Arc<RefreshLocks>,
    name: &str,
    resource: &str,
    user_id: i64,
) -> UserTokens {
    UserTokens {
        secrets: secrets.clone(),
        server: name.to_owned(),
        resource: resource.to_owned(),
        user_id,
        locks: locks.clone(),
    }
}

/// The OAuth side of a servers-file entry, when it has one.
pub(crate) fn oauth_server(
    spec: &RemoteSpec,
    context: &super::RemoteContext,
) -> Result<Option<OAuthServer>, gig_outbound::OutboundError> {
    let Some(oauth) = &spec.oauth else {
        return Ok(None);
    };
    Ok(Some(OAuthServer {
        url: spec.url.clone(),
        oauth: oauth.clone(),
        http: OutboundOAuthHttp(super::outbound_for(spec, context)?),
        redirect_uri: redirect_uri(&context.public_url),
    }))
}

/// Why `user_id` cannot use `name`, now at `resource`, (no connection, a broken one, or one
/// made to another URL), in their words.
pub(crate) async fn connection_problem(
    secrets: &Secrets,
    name: &str,
    resource: &str,
    user_id: i64,
) -> Option<String> {
    match read_connection(secrets, name, user_id).await {
        Err(e) => Some(format!("your connection to {name} cannot be read: {e}")),
        Ok(None) => Some(format!("connect your account to {name} first")),
        Ok(Some(c)) => c.problem(name, resource),
    }
}

/// A manager that puts `user_id`'s token on requests to `server`, renewing it as needed; an
/// error in the user's words when they have no working connection.
pub(crate) async fn user_manager(
    server: &OAuthServer,
    name: &str,
    user_id: i64,
    secrets: &Arc<Secrets>,
    locks: &Arc<RefreshLocks>,
) -> Result<AuthorizationManager, String> {
    let resource = server.url.as_str();
    if let Some(problem) = connection_problem(secrets, name, resource, user_id).await {
        return Err(problem);
    }
    let mut manager = discovered(server).await.map_err(|e| e.to_string())?;
    manager.set_credential_store(user_tokens(secrets, locks, name, resource, user_id));
    if !manager
        .initialize_from_store()
        .await
        .map_err(|e| e.to_string())?
    {
        return Err(format!("connect your account to {name} first"));
    }
    // A pre-registered confidential client refreshes with its secret.
    if let (Some(id), Some(secret)) = (
        &server.oauth.client_id,
        client_secret(secrets, name, &server.oauth).await?,
    ) {
        let config = OAuthClientConfig::new(id.clone(), server.redirect_uri.clone())
            .with_client_secret(secret);
        manager
            .configure_client(config)
            .map_err(|e| e.to_string())?;
    }
    Ok(manager)
}

/// A manager holding the gateway's own client-credentials token for `server`.
pub(crate) async fn service_manager(
    server: &OAuthServer,
    name: &str,
    secrets: &Secrets,
) -> Result<AuthorizationManager, String> {
    let (Some(client_id), Some(client_secret)) = (
        server.oauth.client_id.clone(),
        client_secret(secrets, name, &server.oauth).await?,
    ) else {
        return Err("client_credentials needs clientId and clientSecret".into());
    };
    let config = ClientCredentialsConfig::ClientSecret {
        client_id: client_id.clone(),
        client_secret,
        scopes: server.oauth.scopes.clone(),
        resource: Some(server.url.to_string()),
    };
    // One discovery serves both managers: the one that exchanges and the one that hands out.
    let (mut exchanger, metadata) = discover(server).await.map_err(|e| e.to_string())?;
    exchanger.set_metadata(metadata.clone());
    exchanger
        .configure_client_credentials(&config)
        .map_err(|e| e.to_string())?;
    let mut manager = AuthorizationManager::new_with_oauth_http_client(
        server.url.as_str(),
        Arc::new(server.http.clone()),
    )
    .await
    .map_err(|e| e.to_string())?;
    manager.set_metadata(metadata);
    manager.set_credential_store(service::ServiceTokens {
        exchanger,
        config,
        client_id,
        current: tokio::sync::Mutex::new(None),
    });
    Ok(manager)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upstream_error_reaches_a_user_bounded_and_on_one_line() {
        let answer = format!("HTTP 400: {}\r\nSet-Cookie: x", "a".repeat(10_000));
        let OAuthError::Upstream { reason, .. } = upstream("acct", answer) else {
            unreachable!()
        };
        assert!(!reason.chars().any(char::is_control), "{reason:?}");
        assert_eq!(reason.chars().count(), MAX_ERROR_TEXT + 1);
        assert!(reason.ends_with('…'));
        let OAuthError::Upstream { reason, .. } = upstream("acct", "short") else {
            unreachable!()
        };
        assert_eq!(reason, "short");
    }
}
