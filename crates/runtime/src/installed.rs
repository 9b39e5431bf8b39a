//! Servers installed from the signed index, kept in step with the store: a server installed
//! or removed (by `gigmcp install` in another process, or by another replica sharing the
//! database) appears on or disappears from `/mcp` within seconds, with `tools/list_changed`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use gig_config::{DEFAULT_LIMITS, SandboxPolicy, StdioCommand};
use gig_policy::{EgressPolicy, ResourceLimits};
use gig_registry::Installed;
use gig_registry_schema::ExtractMode;
use gig_store::Store;

use crate::launcher::SandboxLauncher;
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

/// Brings the hub's installed backends in line with the store, once. `current` maps each
/// installed backend the hub runs to what it runs (image digest and manifest). Names taken by servers-file
/// backends (`reserved`) are never replaced by an install.
pub async fn reconcile_once(
    hub: &Arc<Hub>,
    store: &Store,
    runtime: &Arc<SandboxRuntime>,
    reserved: &[String],
    current: &mut BTreeMap<String, String>,
) {
    let records = match store.list_servers().await {
        Ok(records) => records,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list installed servers");
            return;
        }
    };
    let mut wanted: BTreeMap<String, (String, Installed)> = BTreeMap::new();
    for record in &records {
        if reserved.contains(&record.name) {
            if !current.contains_key(&record.name) {
                tracing::error!(server = %record.name, "installed server has the name of a GIG_SERVERS_FILE backend; not started");
            }
            continue;
        }
        match Installed::from_record(record) {
            Ok(installed) => {
                // The image *and* its policy: a new index may keep the digest but drop a
                // credential host or tighten egress, and that must reach the running sandbox.
                let version = format!("{} {}", record.image_digest, record.manifest);
                wanted.insert(record.name.clone(), (version, installed));
            }
            Err(why) => {
                tracing::debug!(server = %record.name, %why, "installed server not runnable")
            }
        }
    }
    let gone: Vec<String> = current
        .iter()
        .filter(|(name, digest)| wanted.get(*name).is_none_or(|(d, _)| d != *digest))
        .map(|(name, _)| name.clone())
        .collect();
    for name in gone {
        hub.remove_backend(&name).await;
        current.remove(&name);
        tracing::info!(server = %name, "installed server stopped");
    }
    for (name, (digest, installed)) in wanted {
        if current.contains_key(&name) {
            continue;
        }
        let launcher = SandboxLauncher::new(name.clone(), launch_for(&installed), runtime.clone());
        if hub.add_backend(name.clone(), Box::new(launcher)) {
            tracing::info!(server = %name, version = %installed.version, "installed server started");
            current.insert(name, digest);
        }
    }
}

/// Runs [`reconcile_once`] forever (until the hub shuts down).
pub async fn keep_in_step(
    hub: Arc<Hub>,
    store: Store,
    runtime: Arc<SandboxRuntime>,
    reserved: Vec<String>,
    mut current: BTreeMap<String, String>,
) {
    let shutdown = hub.shutdown_token().clone();
    loop {
        tokio::select! {
            () = tokio::time::sleep(RECONCILE_EVERY) => {}
            () = shutdown.cancelled() => return,
        }
        reconcile_once(&hub, &store, &runtime, &reserved, &mut current).await;
    }
}
