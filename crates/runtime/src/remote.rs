//! Remote MCP servers: reached over HTTP through the same [`Launcher`] interface as local ones,
//! so supervision (fail-open, backoff, per-call timeout, bounded messages) is the same.
//!
//! Every connection goes through [`gig_outbound`]: each resolved address checked against the
//! egress address policy (with this server's `allowAddresses` beside
//! `GIG_EGRESS_ALLOW_ADDRESSES`), TLS verified against the system roots plus
//! `GIG_EGRESS_EXTRA_ROOTS`, no redirects, environment proxies ignored. Header values are
//! rendered from the vault at every (re)connection, so a credential set or rotated over `/api`
//! applies at the next restart; the client's own token is never among them (it never leaves
//! the gateway).

pub mod oauth;
mod sse;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use gig_config::{InstancePolicy, OAuthGrant, RemoteSpec, RemoteTransport};
use gig_gateway::InstanceOwner;
use gig_gateway::launcher::{
    Channel, Connection, LaunchError, LaunchFuture, OwnerLaunch, OwnerRefusal,
};
use gig_gateway::{Launcher, NamedLauncher};
use gig_outbound::Outbound;
use gig_policy::IpNet;
use gig_secrets::Secrets;
use gig_store::CredentialScope;
use rmcp::model::ProtocolVersion;
use rmcp::service::{ClientLifecycleMode, ClientServiceExt};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::auth::{AuthClient, AuthorizationManager};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;

use oauth::{OAuthServer, RefreshLocks};

/// What every remote launcher shares.
#[derive(Clone)]
pub struct RemoteContext {
    /// `GIG_EGRESS_ALLOW_ADDRESSES`: allowed for every remote server.
    pub allow_addresses: Vec<IpNet>,
    /// `GIG_EGRESS_EXTRA_ROOTS`.
    pub extra_roots: Option<PathBuf>,
    /// Header credentials come from here (the server's own scope only).
    pub secrets: Arc<Secrets>,
    /// Largest message accepted from a server (`GIG_MAX_MESSAGE_BYTES`).
    pub max_message_bytes: usize,
    /// `GIG_CALL_TIMEOUT_SECS`: how long one message to a legacy SSE server may take to post.
    pub call_timeout: std::time::Duration,
    /// `GIG_PUBLIC_URL`: where a user is told to connect their account.
    pub public_url: url::Url,
    /// Shared by every connection using one user's tokens for one server.
    pub refresh_locks: Arc<RefreshLocks>,
}

impl std::fmt::Debug for RemoteContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteContext")
            .field("allow_addresses", &self.allow_addresses)
            .finish_non_exhaustive()
    }
}

/// Launchers for the remote servers of the servers file.
pub fn remote_launchers(
    specs: Vec<RemoteSpec>,
    context: &RemoteContext,
) -> Result<Vec<NamedLauncher>, gig_outbound::OutboundError> {
    specs
        .into_iter()
        .map(|spec| {
            let launcher = RemoteLauncher::new(spec, context)?;
            Ok((
                launcher.spec.name.clone(),
                Box::new(launcher) as Box<dyn Launcher>,
            ))
        })
        .collect()
}

/// The outbound client for one remote server: its own `allowAddresses` beside the gateway's;
/// plain http only to those.
pub(crate) fn outbound_for(
    spec: &RemoteSpec,
    context: &RemoteContext,
) -> Result<Outbound, gig_outbound::OutboundError> {
    let mut allow = context.allow_addresses.clone();
    allow.extend(spec.allow_addresses.iter().copied());
    let roots = context.extra_roots.as_deref();
    if spec.url.scheme() == "http" {
        Outbound::plain_http(spec.allow_addresses.clone(), roots)
    } else {
        Outbound::new(allow, roots)
    }
}

/// Connects to one remote server, afresh at every (re)start.
#[derive(Debug, Clone)]
pub struct RemoteLauncher {
    spec: Arc<RemoteSpec>,
    outbound: Outbound,
    secrets: Arc<Secrets>,
    max_message_bytes: usize,
    call_timeout: std::time::Duration,
    oauth: Option<Arc<OAuthServer>>,
    /// Whose account this connection uses (authorization code): a user's own instance, or,
    /// for the one connection listing the catalog, any connected user's.
    user: Option<i64>,
    public_url: url::Url,
    refresh_locks: Arc<RefreshLocks>,
}

impl RemoteLauncher {
    pub fn new(
        spec: RemoteSpec,
        context: &RemoteContext,
    ) -> Result<Self, gig_outbound::OutboundError> {
        let outbound = outbound_for(&spec, context)?;
        let oauth = oauth::oauth_server(&spec, context)?.map(Arc::new);
        Ok(RemoteLauncher {
            spec: Arc::new(spec),
            outbound,
            secrets: context.secrets.clone(),
            max_message_bytes: context.max_message_bytes,
            call_timeout: context.call_timeout,
            oauth,
            user: None,
            public_url: context.public_url.clone(),
            refresh_locks: context.refresh_locks.clone(),
        })
    }

    fn per_user(&self) -> Option<&Arc<OAuthServer>> {
        self.oauth
            .as_ref()
            .filter(|o| o.oauth.grant == OAuthGrant::AuthorizationCode)
    }

    /// The dashboard page where a user connects their account to this server.
    fn connect_page(&self) -> String {
        let name =
            url::form_urlencoded::byte_serialize(self.spec.name.as_bytes()).collect::<String>();
        self.public_url
            .join(&format!("servers/{name}"))
            .map(String::from)
            .unwrap_or_default()
    }

    /// Where a user connects their account to this server, in words.
    fn connect_hint(&self) -> String {
        format!(
            "connect it on {} (or POST /api/me/connections/{})",
            self.connect_page(),
            self.spec.name
        )
    }

    /// The manager whose token goes on every request, for a server with OAuth.
    async fn authorization(&self) -> Result<Option<AuthorizationManager>, LaunchError> {
        let Some(server) = &self.oauth else {
            return Ok(None);
        };
        let name = &self.spec.name;
        let manager = match server.oauth.grant {
            OAuthGrant::ClientCredentials => {
                oauth::service_manager(server, name, &self.secrets).await
            }
            OAuthGrant::AuthorizationCode => {
                let user = match self.user {
                    Some(user) => user,
                    None => self.any_connected_user().await?,
                };
                oauth::user_manager(server, name, user, &self.secrets, &self.refresh_locks).await
            }
        };
        manager
            .map(Some)
            .map_err(|e| LaunchError::Other(format!("{e}: {}", self.connect_hint())))
    }

    /// The catalog of a per-user server is listed through some user's connection: the first
    /// working one found.
    async fn any_connected_user(&self) -> Result<i64, LaunchError> {
        let name = &self.spec.name;
        let stored = self
            .secrets
            .list(Some(name))
            .await
            .map_err(|e| LaunchError::Other(e.to_string()))?;
        for user in stored
            .iter()
            .filter(|c| c.name == oauth::TOKEN_CREDENTIAL)
            .filter_map(|c| c.user_id)
        {
            if oauth::connection_problem(&self.secrets, name, self.spec.url.as_str(), user)
                .await
                .is_none()
            {
                return Ok(user);
            }
        }
        Err(LaunchError::Other(format!(
            "no user has connected an account to {name} yet, so its tools are unknown: {}",
            self.connect_hint()
        )))
    }

    /// The configured headers with every `${credential:NAME}` filled from the vault.
    async fn headers(&self) -> Result<HashMap<http::HeaderName, http::HeaderValue>, LaunchError> {
        let mut values = HashMap::new();
        for name in self.spec.credentials() {
            let scope = CredentialScope {
                server: &self.spec.name,
                user_id: None,
                profile_id: None,
            };
            let secret = self
                .secrets
                .get(&scope, &name)
                .await
                .map_err(|e| LaunchError::Other(format!("credential {name}: {e}")))?
                .ok_or_else(|| {
                    LaunchError::Other(format!(
                        "credential {name} is not set: set it with `gigmcp secret set {} {name}` or PUT /api/servers/{}/credentials/{name}",
                        self.spec.name, self.spec.name
                    ))
                })?;
            let text = String::from_utf8(secret.expose().to_vec())
                .map_err(|_| LaunchError::Other(format!("credential {name} is not text")))?;
            values.insert(name, text);
        }
        let mut headers = HashMap::new();
        for (key, template) in &self.spec.headers {
            let rendered = template.render(|name| {
                values
                    .get(name)
                    .cloned()
                    .ok_or_else(|| LaunchError::Other(format!("credential {name} missing")))
            })?;
            let name = http::HeaderName::from_bytes(key.as_bytes())
                .map_err(|e| LaunchError::Other(format!("header {key}: {e}")))?;
            let mut value = http::HeaderValue::from_str(&rendered)
                .map_err(|_| LaunchError::Other(format!("header {key}: not a valid value")))?;
            // Kept out of any debug output of the request.
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        Ok(headers)
    }

    fn streamable_http(
        &self,
        headers: HashMap<http::HeaderName, http::HeaderValue>,
        authorization: Option<AuthorizationManager>,
    ) -> Connection {
        let mut config = StreamableHttpClientTransportConfig::with_uri(self.spec.url.as_str())
            .custom_headers(headers);
        config.max_sse_event_size = self.max_message_bytes;
        config.max_json_response_size = self.max_message_bytes;
        config.reinit_on_expired_session = true;
        let client = self.outbound.client().clone();
        match authorization {
            // The token is put on each request by rmcp's AuthClient, renewed when it nears
            // expiry (and, for a user's, once more when the server refuses it; a refused
            // client-credentials token ends the connection, and the reconnection fetches a
            // new one).
            Some(manager) => self.serve(StreamableHttpClientTransport::with_client(
                AuthClient::new(client, manager),
                config,
            )),
            None => self.serve(StreamableHttpClientTransport::with_client(client, config)),
        }
    }

    fn serve<C>(&self, transport: StreamableHttpClientTransport<C>) -> Connection
    where
        C: rmcp::transport::streamable_http_client::StreamableHttpClient + Send + Sync + 'static,
    {
        // The 2026-07-28 era where the server answers `server/discover`, the initialize
        // handshake otherwise.
        let lifecycle = ClientLifecycleMode::Auto {
            preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            legacy_version: None,
        };
        Connection {
            channel: Channel::Serve(Box::new(move |handler| {
                Box::pin(handler.serve_with_lifecycle(transport, lifecycle))
            })),
            guard: Box::new(()),
            on_tool_call: None,
            stderr: None,
        }
    }
}

impl Launcher for RemoteLauncher {
    fn launch(&self) -> LaunchFuture<'_> {
        Box::pin(async move {
            self.outbound
                .check_host(&self.spec.url)
                .map_err(|e| LaunchError::Other(e.to_string()))?;
            let headers = self.headers().await?;
            let authorization = self.authorization().await?;
            tracing::debug!(backend = %self.spec.name, url = %sse::shown_url(&self.spec.url), "connecting to a remote server");
            match self.spec.transport {
                RemoteTransport::StreamableHttp => Ok(self.streamable_http(headers, authorization)),
                RemoteTransport::Sse => {
                    sse::connect(
                        self.outbound.client().clone(),
                        self.spec.url.clone(),
                        headers,
                        self.max_message_bytes,
                        self.call_timeout,
                    )
                    .await
                }
            }
        })
    }

    fn lists_as_a_user(&self) -> bool {
        self.per_user().is_some()
    }

    fn instances(&self) -> InstancePolicy {
        self.spec
            .oauth
            .as_ref()
            .and_then(|o| o.instances())
            .unwrap_or_default()
    }

    /// A user's own connection, carrying their token; refused with where to connect when
    /// they have no working connection.
    fn launcher_for<'a>(&'a self, owner: &'a InstanceOwner) -> OwnerLaunch<'a> {
        Box::pin(async move {
            if self.per_user().is_none() {
                return Err("this server runs one shared connection".into());
            }
            let name = &self.spec.name;
            match oauth::connection_problem(
                &self.secrets,
                name,
                self.spec.url.as_str(),
                owner.user_id,
            )
            .await
            {
                Some(problem) => Err(OwnerRefusal {
                    message: format!("{problem}: {}", self.connect_hint()),
                    fix_url: Some(self.connect_page()),
                }),
                None => {
                    let mut mine = self.clone();
                    mine.user = Some(owner.user_id);
                    Ok(Box::new(mine) as Box<dyn Launcher>)
                }
            }
        })
    }
}
