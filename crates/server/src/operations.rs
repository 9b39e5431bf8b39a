//! The running gateway as `/api` sees it ([`gig_api::operations::Operations`]): live server
//! state from the hub, installs through the same installer as `gigmcp install`, and the vault
//! for credentials a server declares (never one it does not).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use gig_api::operations::{
    CatalogEntry, CredentialOwner, DeclaredCredential, InstancesStatus, OpError, Operations,
    ServerStatus, StoredCredential, ToolDefinition,
};
use gig_config::{
    DeclaredServers, InstallConfig, InstanceMode, InstancePolicy, RemoteSpec, StoreConfig,
};
use gig_gateway::Hub;
use gig_gateway::backend::BackendStatus;
use gig_policy::{
    CredentialName, CredentialSpec, EgressPolicy, HostPattern, Injection, ServerName,
};
use gig_secrets::Secrets;
use gig_store::{CredentialScope, ServerRecord};
use tokio::sync::mpsc;

/// Progress lines sent at most this often (pulling a layer reports every chunk).
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// What a servers-file entry declares, kept from boot.
#[derive(Debug, Clone)]
struct Declared {
    egress: Option<EgressPolicy>,
    instances: InstancePolicy,
    /// Each user sets their own values (a sandboxed server with instances per user or
    /// session); otherwise the operator sets the server's (also for a remote server with
    /// accounts per user, whose one credential is the gateway's OAuth client secret).
    users_set_credentials: bool,
}

impl Declared {
    fn remote(spec: &RemoteSpec) -> Self {
        Declared {
            egress: Some(remote_policy(spec)),
            instances: spec
                .oauth
                .as_ref()
                .and_then(|o| o.instances())
                .unwrap_or_default(),
            users_set_credentials: false,
        }
    }

    /// What an installed server's record declares, as a servers-file entry would; `None` for a
    /// record that is not runnable.
    fn installed(record: &ServerRecord) -> Option<Self> {
        match gig_registry::InstalledServer::from_record(record).ok()? {
            gig_registry::InstalledServer::Image(installed) => {
                // Checked when the index was verified; a record that fails it runs shared.
                let instances = installed.entry.instance_policy().unwrap_or_default();
                Some(Declared {
                    egress: Some(EgressPolicy {
                        allow: installed.entry.egress,
                        allow_addresses: Vec::new(),
                        credentials: installed.entry.credentials,
                    }),
                    instances,
                    users_set_credentials: instances.mode != InstanceMode::Shared,
                })
            }
            gig_registry::InstalledServer::Remote { spec, .. } => Some(Declared::remote(&spec)),
        }
    }
}

#[derive(Debug)]
pub struct GatewayOperations {
    hub: Arc<Hub>,
    secrets: Arc<Secrets>,
    store_config: StoreConfig,
    install: InstallConfig,
    declared: BTreeMap<ServerName, Declared>,
}

impl GatewayOperations {
    pub fn new(
        hub: Arc<Hub>,
        secrets: Arc<Secrets>,
        store_config: StoreConfig,
        install: InstallConfig,
        servers: &DeclaredServers,
    ) -> Self {
        let local = servers.local.iter().map(|s| {
            let egress = s.sandbox.as_ref().map(|p| p.egress.clone());
            let instances = s.sandbox.as_ref().map(|p| p.instances).unwrap_or_default();
            let users_set_credentials = instances.mode != InstanceMode::Shared;
            (
                s.name.clone(),
                Declared {
                    egress,
                    instances,
                    users_set_credentials,
                },
            )
        });
        let remote = servers
            .remote
            .iter()
            .map(|r| (r.name.clone(), Declared::remote(r)));
        let declared = local.chain(remote).collect();
        GatewayOperations {
            hub,
            secrets,
            store_config,
            install,
            declared,
        }
    }

    /// A server with one shared instance takes the operator's credentials only; one with an
    /// instance per user or session takes each user's own only (its shared scope is never used).
    fn check_owner(server: &str, owner: CredentialOwner, per_user: bool) -> Result<(), OpError> {
        match (owner, per_user) {
            (CredentialOwner::Server, true) => Err(OpError::Invalid(format!(
                "server {server:?} runs an instance per user with that user's own credentials: each user sets theirs at PUT /api/me/credentials/{server}/NAME"
            ))),
            (CredentialOwner::User(_), false) => Err(OpError::Invalid(format!(
                "server {server:?} runs one shared instance: its credentials are set by an operator (PUT /api/servers/{server}/credentials/NAME)"
            ))),
            _ => Ok(()),
        }
    }

    /// The credentials and egress rules `server` declares, and whether each user sets their
    /// own values; `None` if no such server.
    async fn declared_policy(&self, server: &str) -> Result<Option<DeclaredPolicy>, OpError> {
        if let Some(d) = self.declared.get(server) {
            let egress = d.egress.clone().unwrap_or_default();
            let rules = egress.allow.iter().map(|r| r.to_string()).collect();
            return Ok(Some((egress.credentials, rules, d.users_set_credentials)));
        }
        let record = self
            .secrets
            .store()
            .get_server(server)
            .await
            .map_err(failed)?;
        Ok(record.as_ref().and_then(Declared::installed).map(|d| {
            let egress = d.egress.unwrap_or_default();
            let rules = egress.allow.iter().map(|r| r.to_string()).collect();
            (egress.credentials, rules, d.users_set_credentials)
        }))
    }
}

/// A server's declared credentials, its egress rules, and whether users set their own values.
type DeclaredPolicy = (Vec<CredentialSpec>, Vec<String>, bool);

/// A remote server's reach as `/api` shows it: its URL's host and port, the addresses it may
/// resolve to, and each header credential as sent to that host only.
fn remote_policy(remote: &RemoteSpec) -> EgressPolicy {
    let host = remote
        .url
        .host_str()
        .unwrap_or_default()
        .trim_matches(['[', ']']);
    let port = remote.url.port_or_known_default().unwrap_or(443);
    let allow = format!("{host}:{port}").parse().into_iter().collect();
    let hosts: Vec<HostPattern> = host.parse().into_iter().collect();
    let mut credentials: Vec<CredentialSpec> = remote
        .headers
        .iter()
        .flat_map(|(header, template)| {
            let hosts = hosts.clone();
            template.credentials().map(move |name| CredentialSpec {
                env: header.clone(),
                secret: Some(name.to_owned()),
                hosts: hosts.clone(),
                inject: Injection::Header {
                    name: header.clone(),
                    template: template.literal().to_owned(),
                },
            })
        })
        .collect();
    // The OAuth client secret goes to the authorization server's token endpoint, in the body.
    if let Some(secret) = remote.oauth.as_ref().and_then(|o| o.client_secret.clone()) {
        credentials.push(CredentialSpec {
            env: "oauth client secret".to_owned(),
            secret: Some(secret),
            hosts: Vec::new(),
            inject: Injection::Header {
                name: "(token request)".to_owned(),
                template: "{}".to_owned(),
            },
        });
    }
    EgressPolicy {
        allow,
        allow_addresses: remote.allow_addresses.clone(),
        credentials,
    }
}

fn failed(e: impl std::fmt::Display) -> OpError {
    tracing::warn!(error = %e, "an /api operation failed");
    OpError::Failed("the gateway could not complete the operation (see its log)".into())
}

fn live_state(hub: &Hub, name: &str) -> (&'static str, Option<usize>, Option<u32>, Option<String>) {
    match hub.backend(name).map(|b| b.status()) {
        None => ("not_running", None, None, None),
        Some(BackendStatus::Starting) => ("starting", None, None, None),
        Some(BackendStatus::Up { tools }) => ("up", Some(tools), None, None),
        Some(BackendStatus::Down { reason, restarts }) => {
            ("down", None, Some(restarts), Some(reason))
        }
    }
}

fn declared_credentials(specs: &[CredentialSpec]) -> Vec<DeclaredCredential> {
    specs
        .iter()
        .map(|c| DeclaredCredential {
            name: c.secret_name().to_owned(),
            env: c.env.clone(),
            hosts: c.hosts.iter().map(|h| h.to_string()).collect(),
        })
        .collect()
}

impl Operations for GatewayOperations {
    fn servers(&self) -> BoxFuture<'_, Result<Vec<ServerStatus>, OpError>> {
        Box::pin(async move {
            let mut out = Vec::new();
            for (name, declared) in &self.declared {
                let (state, tools, restarts, reason) = live_state(&self.hub, name);
                let egress = declared.egress.clone().unwrap_or_default();
                out.push(ServerStatus {
                    name: name.to_string(),
                    source: "declared",
                    version: None,
                    image_digest: None,
                    state,
                    tools,
                    restarts,
                    reason,
                    credentials: declared_credentials(&egress.credentials),
                    egress: egress.allow.iter().map(|r| r.to_string()).collect(),
                    instances: instances_status(&self.hub, name, &declared.instances),
                });
            }
            for record in self.secrets.store().list_servers().await.map_err(failed)? {
                if self.declared.contains_key(record.name.as_str()) {
                    continue;
                }
                let (state, tools, restarts, reason) = live_state(&self.hub, &record.name);
                let declared = Declared::installed(&record);
                let instances = declared
                    .as_ref()
                    .and_then(|d| instances_status(&self.hub, &record.name, &d.instances));
                let egress = declared.and_then(|d| d.egress).unwrap_or_default();
                out.push(ServerStatus {
                    source: "installed",
                    version: Some(record.version.clone()),
                    // A remote server has no image.
                    image_digest: Some(record.image_digest.clone()).filter(|d| !d.is_empty()),
                    state,
                    tools,
                    restarts,
                    reason,
                    credentials: declared_credentials(&egress.credentials),
                    egress: egress.allow.iter().map(|r| r.to_string()).collect(),
                    instances,
                    name: record.name,
                });
            }
            Ok(out)
        })
    }

    fn installs_enabled(&self) -> bool {
        self.install.index_url.is_some() && self.install.index_pubkeys.is_some()
    }

    fn catalog(&self) -> BoxFuture<'_, Result<Option<Vec<CatalogEntry>>, OpError>> {
        Box::pin(async move {
            if !self.installs_enabled() {
                return Ok(None);
            }
            let installer = self.installer()?;
            let index = installer.load_index().await.map_err(failed)?;
            let installed: BTreeMap<String, String> = self
                .secrets
                .store()
                .list_servers()
                .await
                .map_err(failed)?
                .into_iter()
                .map(|r| (r.name, r.version))
                .collect();
            Ok(Some(
                index
                    .index()
                    .servers
                    .iter()
                    .map(|(name, entry)| CatalogEntry {
                        name: name.to_string(),
                        description: entry.description.clone(),
                        latest: entry.latest.clone(),
                        versions: entry.versions.keys().cloned().collect(),
                        installed: installed.get(&name.to_string()).cloned(),
                    })
                    .collect(),
            ))
        })
    }

    fn install(
        &self,
        reference: String,
        progress: mpsc::Sender<String>,
    ) -> BoxFuture<'_, Result<(String, String), OpError>> {
        Box::pin(async move {
            let installer = self.installer()?;
            let last = std::sync::Mutex::new((String::new(), Instant::now() - PROGRESS_EVERY));
            let report = |p: gig_registry::InstallProgress| {
                let line = p.to_string();
                let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
                // A new phase always shows; the same phase at most every 250 ms.
                let same_phase = last.0.split("  ").next() == line.split("  ").next();
                if !same_phase || last.1.elapsed() >= PROGRESS_EVERY {
                    let _ = progress.try_send(line.clone());
                    *last = (line, Instant::now());
                }
            };
            let record = installer.install(&reference, &report).await.map_err(|e| {
                tracing::warn!(%reference, error = %e, "install over /api failed");
                // Install errors name what was refused (signature, digest, path): the caller
                // started the install and needs the reason, and none of it is secret.
                OpError::Failed(e.to_string())
            })?;
            Ok((record.name, record.version))
        })
    }

    fn tools(&self, name: &ServerName) -> Option<Vec<ToolDefinition>> {
        self.hub.backend(name)?;
        let catalog = self.hub.catalog();
        Some(
            catalog
                .tools
                .iter()
                .filter(|(_, routed)| routed.origin.backend == name.as_str())
                .map(|(exposed, routed)| ToolDefinition {
                    exposed: exposed.clone(),
                    name: routed.origin.item.clone(),
                    description: routed.exposed.description.as_ref().map(|d| d.to_string()),
                    input_schema: serde_json::Value::Object((*routed.exposed.input_schema).clone()),
                })
                .collect(),
        )
    }

    fn logs(&self, name: &ServerName) -> Option<Vec<String>> {
        self.hub.backend(name).map(|b| b.recent_stderr())
    }

    fn restart(&self, name: &ServerName) -> bool {
        self.hub.restart_backend(name)
    }

    fn uninstall(&self, name: ServerName) -> BoxFuture<'_, Result<bool, OpError>> {
        Box::pin(async move {
            self.secrets
                .store()
                .delete_server(&name)
                .await
                .map_err(failed)
        })
    }

    fn set_credential(
        &self,
        server: ServerName,
        owner: CredentialOwner,
        name: CredentialName,
        value: zeroize::Zeroizing<Vec<u8>>,
    ) -> BoxFuture<'_, Result<(), OpError>> {
        Box::pin(async move {
            let Some((credentials, _, per_user)) = self.declared_policy(&server).await? else {
                return Err(OpError::NotFound(format!("no server {server:?}")));
            };
            Self::check_owner(&server, owner, per_user)?;
            if !credentials.iter().any(|c| c.secret_name() == name.as_str()) {
                let known: Vec<_> = credentials.iter().map(|c| c.secret_name()).collect();
                return Err(OpError::Invalid(format!(
                    "server {server:?} does not declare a credential {name:?} (it declares: {})",
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                )));
            }
            let scope = vault_scope(&server, owner);
            self.secrets
                .set(&scope, name.as_str(), &value)
                .await
                .map(|_| ())
                .map_err(failed)
        })
    }

    fn delete_credential(
        &self,
        server: ServerName,
        owner: CredentialOwner,
        name: CredentialName,
    ) -> BoxFuture<'_, Result<bool, OpError>> {
        Box::pin(async move {
            let scope = vault_scope(&server, owner);
            self.secrets
                .delete(&scope, name.as_str())
                .await
                .map_err(failed)
        })
    }

    fn credentials(
        &self,
        server: ServerName,
        owner: CredentialOwner,
    ) -> BoxFuture<'_, Result<Vec<StoredCredential>, OpError>> {
        Box::pin(async move {
            Ok(self
                .secrets
                .list(Some(&server))
                .await
                .map_err(failed)?
                .into_iter()
                .filter(|m| m.user_id == owner.user_id() && m.profile_id.is_none())
                .map(|m| StoredCredential {
                    name: m.name,
                    key_id: m.key_id,
                    updated_at: m.updated_at.unix_timestamp(),
                })
                .collect())
        })
    }
}

/// A per-user or per-session server's policy and its running instances; `None` when shared.
fn instances_status(hub: &Hub, name: &str, policy: &InstancePolicy) -> Option<InstancesStatus> {
    let mode = match policy.mode {
        InstanceMode::Shared => return None,
        InstanceMode::PerUser => "per-user",
        InstanceMode::PerSession => "per-session",
    };
    Some(InstancesStatus {
        mode,
        max_instances: policy.max_instances,
        max_per_user: policy.max_per_user,
        idle_seconds: policy.idle.as_secs(),
        running: hub.instances(name).len(),
    })
}

/// Where `owner`'s credentials of `server` sit in the vault.
fn vault_scope(server: &str, owner: CredentialOwner) -> CredentialScope<'_> {
    CredentialScope {
        server,
        user_id: owner.user_id(),
        profile_id: None,
    }
}

impl GatewayOperations {
    fn installer(&self) -> Result<gig_registry::Installer, OpError> {
        crate::boot::installer(&self.store_config, &self.install, self.secrets.clone()).map_err(
            |e| match e {
                crate::BootError::InstallsOff => OpError::Unavailable(e.to_string()),
                other => failed(other),
            },
        )
    }
}
