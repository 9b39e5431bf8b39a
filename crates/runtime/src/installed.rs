//! Servers installed from the signed index (images run in sandboxes, remote servers reached
//! over HTTP), kept in step with the store: a server installed or removed (by `gigmcp install`
//! in another process, or by another replica sharing the database) appears on or disappears
//! from `/mcp` within seconds, with `tools/list_changed`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use gig_config::{DEFAULT_LIMITS, SandboxPolicy, ServerName, StdioCommand};
use gig_gateway::Launcher;
use gig_policy::{EgressPolicy, ResourceLimits};
use gig_registry::{Installed, InstalledServer};
use gig_registry_schema::ExtractMode;
use gig_store::Store;

use crate::launcher::SandboxLauncher;
use crate::remote::oauth::UpstreamOAuth;
use crate::remote::{RemoteContext, RemoteLauncher};
use crate::sandbox_runtime::{ProgramSource, SandboxLaunch, SandboxRuntime};
use gig_gateway::Hub;

/// How often the store is checked for installs and removals.
const RECONCILE_EVERY: Duration = Duration::from_secs(2);

/// The sandbox launch for an installed server: its entrypoint (or whole image root) read-only,
/// its declared env plus credential placeholders, its egress policy and limits.
pub fn launch_for(installed: &Installed) -> SandboxLaunch {
    let entry = &installed.entry;
    let (program, host) = installed.program();
    let limits = ResourceLimits {
        memory_bytes: entry.limits.memory_bytes.or(DEFAULT_LIMITS.memory_bytes),
        max_processes: entry.limits.max_processes.or(DEFAULT_LIMITS.max_processes),
        cpu_millis: entry.limits.cpu_millis.or(DEFAULT_LIMITS.cpu_millis),
    };
    SandboxLaunch {
        command: StdioCommand {
            program,
            args: entry.args.clone(),
            env: entry.env.clone(),
            cwd: None,
        },
        policy: SandboxPolicy {
            bind_ro: Vec::new(),
            limits,
            egress: EgressPolicy {
                allow: entry.egress.clone(),
                allow_addresses: Vec::new(),
                credentials: entry.credentials.clone(),
            },
            // Checked when the index was verified; a record from before that check (or a
            // tampered one) runs shared, never with looser caps.
            instances: entry.instance_policy().unwrap_or_default(),
        },
        source: match entry.extract {
            ExtractMode::Entrypoint => ProgramSource::File(host),
            ExtractMode::Rootfs => ProgramSource::RootFs(host),
        },
    }
}

/// What the installed servers need to run: the sandbox runtime for images; for remote
/// servers, the gateway's outbound settings and the users' connections.
pub struct Installs {
    pub hub: Arc<Hub>,
    pub store: Store,
    pub runtime: Arc<SandboxRuntime>,
    pub remote: RemoteContext,
    pub oauth: Arc<UpstreamOAuth>,
    /// Names taken by servers-file backends: never replaced by an install.
    pub reserved: Vec<String>,
}

impl std::fmt::Debug for Installs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Installs")
            .field("reserved", &self.reserved)
            .finish_non_exhaustive()
    }
}

impl Installs {
    /// Brings the hub's installed backends in line with the store, once. `current` maps each
    /// installed backend the hub runs to what it runs (its digest and manifest).
    pub async fn reconcile_once(&self, current: &mut BTreeMap<String, String>) {
        let records = match self.store.list_servers().await {
            Ok(records) => records,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list installed servers");
                return;
            }
        };
        let mut wanted: BTreeMap<ServerName, (String, InstalledServer)> = BTreeMap::new();
        for record in &records {
            if self.reserved.contains(&record.name) {
                if !current.contains_key(&record.name) {
                    tracing::error!(server = %record.name, "installed server has the name of a GIG_SERVERS_FILE backend; not started");
                }
                continue;
            }
            let name = match ServerName::parse(&record.name) {
                Ok(name) => name,
                // Every index name is a server name: this record was written by something
                // else, and stays unstarted (said at each pass until it is removed).
                Err(why) => {
                    tracing::warn!(%why, "installed server not started");
                    continue;
                }
            };
            match InstalledServer::from_record(record) {
                Ok(installed) => {
                    // The image *and* its policy: a new index may keep the digest but drop a
                    // credential host or tighten egress, and that must reach the running server.
                    let version = format!("{} {}", record.image_digest, record.manifest);
                    wanted.insert(name, (version, installed));
                }
                Err(why) => {
                    tracing::debug!(server = %record.name, %why, "installed server not runnable")
                }
            }
        }
        let gone: Vec<String> = current
            .iter()
            .filter(|(name, digest)| wanted.get(name.as_str()).is_none_or(|(d, _)| d != *digest))
            .map(|(name, _)| name.clone())
            .collect();
        for name in gone {
            self.hub.remove_backend(&name).await;
            self.oauth.remove_server(&name);
            current.remove(&name);
            tracing::info!(server = %name, "installed server stopped");
        }
        for (name, (digest, installed)) in wanted {
            if current.contains_key(name.as_str()) {
                continue;
            }
            let Some((launcher, version)) = self.launcher(&name, installed) else {
                continue;
            };
            if self.hub.add_backend(name.clone(), launcher) {
                tracing::info!(server = %name, %version, "installed server started");
                current.insert(name.into(), digest);
            }
        }
    }

    /// How to start an installed server: its image in a sandbox, or a connection to it.
    fn launcher(
        &self,
        name: &str,
        installed: InstalledServer,
    ) -> Option<(Box<dyn Launcher>, String)> {
        match installed {
            InstalledServer::Image(installed) => {
                let launcher = SandboxLauncher::new(
                    name.to_owned(),
                    launch_for(&installed),
                    self.runtime.clone(),
                );
                Some((Box::new(launcher), installed.version))
            }
            InstalledServer::Remote { version, spec } => {
                let started = self
                    .oauth
                    .add_server(&spec, &self.remote)
                    .and_then(|()| RemoteLauncher::new(spec, &self.remote));
                match started {
                    Ok(launcher) => Some((Box::new(launcher), version)),
                    Err(e) => {
                        tracing::error!(server = %name, error = %e, "installed remote server not started");
                        None
                    }
                }
            }
        }
    }

    /// Runs [`Installs::reconcile_once`] forever (until the hub shuts down).
    pub async fn keep_in_step(self, mut current: BTreeMap<String, String>) {
        let shutdown = self.hub.shutdown_token().clone();
        loop {
            tokio::select! {
                () = tokio::time::sleep(RECONCILE_EVERY) => {}
                () = shutdown.cancelled() => return,
            }
            self.reconcile_once(&mut current).await;
        }
    }
}
