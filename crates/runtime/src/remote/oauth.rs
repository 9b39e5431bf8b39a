//! OAuth toward remote servers (decision 70): users connect their own accounts (the
//! authorization-code grant with PKCE), or the gateway uses client credentials of its own.
//!
//! rmcp's authorization manager runs the protocol (protected-resource metadata discovery,
//! dynamic registration, PKCE, token exchange and refresh); every request it makes goes
//! through the gateway's outbound client ([`http_client`]). Tokens are sealed in the vault
//! per user ([`tokens`]); they are put on requests to that server only, and never reach a
//! client, a log or the audit trail.

mod http_client;
mod service;
mod tokens;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
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
/// Most connections being made at once (abandoned ones expire).
const MAX_PENDING: usize = 1024;
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
    locks: Arc<RefreshLocks>,
    servers: BTreeMap<String, Arc<OAuthServer>>,
    pending: Mutex<HashMap<String, Pending>>,
}

impl std::fmt::Debug for UpstreamOAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamOAuth")
            .field("servers", &self.servers.keys())
            .finish_non_exhaustive()
    }
}

fn upstream(server: &str, e: impl std::fmt::Display) -> OAuthError {
    OAuthError::Upstream {
        server: server.to_owned(),
        reason: e.to_string(),
    }
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
        let mut servers = BTreeMap::new();
        for spec in specs {
            if let Some(server) = oauth_server(spec, context)?
                && server.oauth.grant == OAuthGrant::AuthorizationCode
            {
                servers.insert(spec.name.clone(), Arc::new(server));
            }
        }
        Ok(UpstreamOAuth {
            secrets: context.secrets.clone(),
            redirect_uri: context
                .public_url
                .join("api/connections/callback")
                .map(String::from)
                .unwrap_or_default(),
            locks: context.refresh_locks.clone(),
            servers,
            pending: Mutex::new(HashMap::new()),
        })
    }

    /// The servers a user connects an account to.
    pub fn servers(&self) -> impl Iterator<Item = &str> {
        self.servers.keys().map(String::as_str)
    }

    fn server(&self, name: &str) -> Result<&Arc<OAuthServer>, OAuthError> {
        self.servers
            .get(name)
            .ok_or_else(|| OAuthError::NotPerUser(name.to_owned()))
    }

    /// Starts connecting `user_id`'s account: the URL to send their browser to.
    pub async fn begin(&self, name: &str, user_id: i64) -> Result<String, OAuthError> {
        let server = self.server(name)?;
        let mut manager = discovered(server).await.map_err(|e| upstream(name, e))?;
        manager.set_credential_store(self.user_tokens(name, user_id));
        let mut request = AuthorizationRequest::new(&self.redirect_uri)
            .with_client_name(CLIENT_NAME)
            .with_application_type("web");
        if !server.oauth.scopes.is_empty() {
            request = request.with_scopes(server.oauth.scopes.iter());
        }
        if let Some(id) = &server.oauth.client_id {
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
        let state = url
            .query_pairs()
            .find(|(k, _)| k == "state")
            .map(|(_, v)| v.into_owned())
            .ok_or_else(|| upstream(name, "the authorization URL carries no state"))?;
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.retain(|_, p| p.started.elapsed() < PENDING_TTL);
        if pending.len() >= MAX_PENDING {
            return Err(OAuthError::Invalid(
                "too many connections are being made; try again in a few minutes".into(),
            ));
        }
        pending.insert(
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
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            match pending.remove(state) {
                Some(p) if p.user_id == user_id && p.started.elapsed() < PENDING_TTL => p,
                _ => {
                    return Err(OAuthError::Invalid(
                        "no connection of yours is waiting for this answer (expired, finished, or begun by someone else); start again".into(),
                    ));
                }
            }
        };
        pending
            .session
            .handle_callback_with_issuer(code, state, issuer)
            .await
            .map_err(|e| upstream(&pending.server, e))?;
        Ok(pending.server)
    }

    /// Forgets `user_id`'s connection, revoking its tokens at the authorization server first
    /// (best effort: a server that cannot be reached does not keep the tokens in the vault).
    pub async fn disconnect(&self, name: &str, user_id: i64) -> Result<bool, OAuthError> {
        let server = self.server(name)?;
        let connection = read_connection(&self.secrets, name, user_id)
            .await
            .map_err(|e| OAuthError::Vault(e.to_string()))?;
        let Some(connection) = connection else {
            return Ok(false);
        };
        let secret = client_secret(&self.secrets, name, &server.oauth)
            .await
            .ok()
            .flatten();
        if let Err(e) = revoke::revoke(server, &connection.credentials, secret.as_deref()).await {
            tracing::warn!(server = name, user = user_id, error = %e, "revoking the upstream tokens failed; they are deleted here anyway");
        }
        self.secrets
            .delete(&user_scope(name, user_id), TOKEN_CREDENTIAL)
            .await
            .map_err(|e| OAuthError::Vault(e.to_string()))
    }

    pub async fn state(&self, name: &str, user_id: i64) -> Result<ConnectionState, OAuthError> {
        self.server(name)?;
        let connection = read_connection(&self.secrets, name, user_id)
            .await
            .map_err(|e| OAuthError::Vault(e.to_string()))?;
        Ok(match connection {
            None => ConnectionState::NotConnected,
            Some(c) => match c.broken {
                Some(reason) => ConnectionState::Broken(reason),
                None => ConnectionState::Connected,
            },
        })
    }

    fn user_tokens(&self, name: &str, user_id: i64) -> UserTokens {
        user_tokens(&self.secrets, &self.locks, name, user_id)
    }
}

fn user_tokens(
    secrets: &Arc<Secrets>,
    locks: &Arc<RefreshLocks>,
    name: &str,
    user_id: i64,
) -> UserTokens {
    UserTokens {
        secrets: secrets.clone(),
        server: name.to_owned(),
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
    }))
}

/// Why `user_id` cannot use `name` now (no connection, or a broken one), in their words.
pub(crate) async fn connection_problem(
    secrets: &Secrets,
    name: &str,
    user_id: i64,
) -> Option<String> {
    match read_connection(secrets, name, user_id).await {
        Err(e) => Some(format!("your connection to {name} cannot be read: {e}")),
        Ok(None) => Some(format!("connect your account to {name} first")),
        Ok(Some(c)) => c
            .broken
            .map(|why| format!("your connection to {name} stopped working: {why}")),
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
    if let Some(problem) = connection_problem(secrets, name, user_id).await {
        return Err(problem);
    }
    let mut manager = discovered(server).await.map_err(|e| e.to_string())?;
    manager.set_credential_store(user_tokens(secrets, locks, name, user_id));
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
        let config = OAuthClientConfig::new(id.clone(), String::new()).with_client_secret(secret);
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
    let mut exchanger = discovered(server).await.map_err(|e| e.to_string())?;
    exchanger
        .configure_client_credentials(&config)
        .map_err(|e| e.to_string())?;
    let mut manager = discovered(server).await.map_err(|e| e.to_string())?;
    manager.set_credential_store(service::ServiceTokens {
        exchanger,
        config,
        client_id,
        current: tokio::sync::Mutex::new(None),
    });
    Ok(manager)
}

mod revoke;
