//! What every sandbox needs from the host, and starting one: bubblewrap held until the sandbox
//! is in its cgroup and, when its policy allows egress, its veth pair is configured and its
//! proxy listener is up — nothing untrusted ever runs unconstrained or with a half-built network.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::sandbox_ids::{SandboxId, SandboxIdError, SandboxIds};
use gig_config::{SandboxPolicy, StdioCommand};
use gig_netmgr::{NetError, SandboxNet};
use gig_proxy::{ProxyError, SandboxEgress, SecretScope};
use gig_sandbox::{
    Bind, CgroupError, CgroupSupport, Sandbox, SandboxCgroup, SandboxSpec, Spawner, SystemLayout,
};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::network::{CA_PATH_IN_SANDBOX, SandboxNetwork};

/// Why a sandbox did not start; one variant per step, each with its context.
#[derive(Debug, thiserror::Error)]
pub enum SandboxStartError {
    #[error("reading the image root {path}: {source}")]
    ImageRoot {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "its policy allows egress, but sandbox networking is unavailable on this host (see the start-up log)"
    )]
    NoNetwork,
    #[error("reserving its network: {0}")]
    Reserve(NetError),
    #[error("creating its cgroup: {0}")]
    Cgroup(CgroupError),
    #[error("claiming a host uid of its own: {0}")]
    HostId(SandboxIdError),
    #[error("starting bubblewrap: {0}")]
    Spawn(gig_sandbox::Error),
    #[error("waiting for the sandboxed process: {0}")]
    ChildPid(String),
    #[error("moving it into its cgroup: {0}")]
    JoinCgroup(CgroupError),
    #[error("attaching its network: {0}")]
    Attach(NetError),
    #[error("binding the proxy on {addr}: {source}")]
    ProxyBind {
        addr: std::net::Ipv4Addr,
        source: std::io::Error,
    },
    #[error("its egress policy: {0}")]
    Egress(ProxyError),
    #[error("releasing bubblewrap: {0}")]
    Release(gig_sandbox::Error),
}

impl From<SandboxStartError> for gig_gateway::launcher::LaunchError {
    fn from(e: SandboxStartError) -> Self {
        gig_gateway::launcher::LaunchError::Other(format!("sandbox: {e}"))
    }
}

/// What every sandbox needs from the host, detected once at start and shared by all servers
/// (and by `gigmcp sandbox exec`, so an operator debugs in exactly a server's sandbox).
pub struct SandboxRuntime {
    spawner: Arc<dyn Spawner + Send + Sync>,
    bootstrap: PathBuf,
    cgroups: CgroupSupport,
    layout: SystemLayout,
    started: AtomicU64,
    /// Sandboxes alive (until their processes are killed and reaped).
    alive: Arc<AtomicU64>,
    /// `None`: the host cannot give sandboxes a network (why is logged at start); servers that
    /// need egress are then refused, the others run with no network at all.
    egress: Option<Arc<SandboxNetwork>>,
    /// When set (the gateway is root), every sandbox runs as a host uid/gid of its own.
    ids: Option<SandboxIds>,
}

impl std::fmt::Debug for SandboxRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxRuntime")
            .field("bootstrap", &self.bootstrap)
            .field("cgroups", &self.cgroups)
            .finish()
    }
}

/// What to run in a sandbox and under which policy.
#[derive(Debug, Clone)]
pub struct SandboxLaunch {
    /// `program` is the path inside the sandbox.
    pub command: StdioCommand,
    pub policy: SandboxPolicy,
    /// Where the program comes from on the host.
    pub source: ProgramSource,
}

#[derive(Debug, Clone)]
pub enum ProgramSource {
    /// The program is a host file at the same path (a servers-file declaration).
    HostPath,
    /// A host file bound at the program's path (an extracted entrypoint).
    File(PathBuf),
    /// A whole root filesystem (an extracted image) replaces the host's runtime.
    RootFs(PathBuf),
}

/// A started sandbox with the host resources it holds. Field order is drop order: the
/// processes die before their cgroup is removed.
pub struct RunningSandbox {
    /// The server it runs, for the log line that says why it ended.
    server: String,
    pub sandbox: Sandbox,
    /// The sandbox's egress state (its proxy listener's), for tool-call attribution.
    pub egress: Option<Arc<SandboxEgress>>,
    /// Cancels this sandbox's proxy listener.
    _proxy: Option<DropGuard>,
    /// Tears the veth pair down (on drop, asynchronously).
    _net: Option<SandboxNet>,
    _cgroup: SandboxCgroup,
    /// Its host uid, released only after its processes are dead.
    _host_id: Option<SandboxId>,
    /// Last: counts the sandbox as gone only after everything above was dropped.
    _alive: AliveGuard,
}

struct AliveGuard(Arc<AtomicU64>);

impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Drop for RunningSandbox {
    /// The backend saw only a closed pipe; the cgroup knows whether the kernel's memory limit
    /// killed it, which is the first thing an operator needs to know.
    fn drop(&mut self) {
        if self._cgroup.memory_limit_hit() {
            tracing::warn!(server = %self.server, "sandbox was killed by its memory limit (memoryBytes)");
        }
    }
}

impl std::fmt::Debug for RunningSandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningSandbox")
            .field("bwrap_pid", &self.sandbox.child.id())
            .finish()
    }
}

impl SandboxRuntime {
    /// `cgroup_group` names the parent cgroup all sandboxes go under (`gigmcp`). The cgroups a
    /// gateway that died without tearing down left there are removed first.
    pub fn new(
        spawner: Arc<dyn Spawner + Send + Sync>,
        bootstrap: PathBuf,
        cgroup_group: &str,
    ) -> Self {
        let cgroups = CgroupSupport::detect(cgroup_group);
        let removed = cgroups.remove_leftovers();
        if removed > 0 {
            tracing::info!(
                removed,
                "removed sandbox cgroups left by a gateway that did not stop cleanly"
            );
        }
        SandboxRuntime {
            spawner,
            bootstrap,
            cgroups,
            layout: SystemLayout::detect(),
            started: AtomicU64::new(0),
            alive: Arc::new(AtomicU64::new(0)),
            egress: None,
            ids: None,
        }
    }

    /// Gives every sandbox a host uid/gid of its own from `ids` (see `sandbox_ids`).
    pub fn with_sandbox_ids(mut self, ids: SandboxIds) -> Self {
        self.ids = Some(ids);
        self
    }

    /// Gives sandboxes whose policy allows egress a network that leads only to the proxy.
    pub fn with_network(mut self, egress: Arc<SandboxNetwork>) -> Self {
        self.egress = Some(egress);
        self
    }

    pub fn network(&self) -> Option<&Arc<SandboxNetwork>> {
        self.egress.as_ref()
    }

    /// Waits (up to `limit`) until every sandbox has been killed; the firewall must outlive
    /// the last sandbox, or a server still alive at shutdown would have a route and no filter.
    pub async fn wait_all_stopped(&self, limit: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while self.alive.load(Ordering::Acquire) > 0 {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        true
    }

    /// The cgroups this runtime found (detected once: detecting again may move the gateway's
    /// own process, see `CgroupSupport::detect`).
    pub fn cgroups(&self) -> &CgroupSupport {
        &self.cgroups
    }

    /// What the host provides, for the start-up log (no cgroups is worth a warning).
    pub fn describe(&self) -> (bool, String) {
        let limited = !matches!(self.cgroups, CgroupSupport::Unavailable { .. });
        (limited, self.cgroups.describe())
    }

    fn spec(&self, launch: &SandboxLaunch) -> Result<SandboxSpec, SandboxStartError> {
        let (command, policy) = (&launch.command, &launch.policy);
        let mut spec = SandboxSpec::new(&command.program, &self.bootstrap);
        spec.args = command.args.iter().map(Into::into).collect();
        spec.env = command.env.clone();
        spec.env
            .entry("PATH".into())
            .or_insert_with(|| "/usr/local/bin:/usr/bin:/bin".into());
        let program = match &launch.source {
            ProgramSource::HostPath => Some(Bind::same(&command.program)),
            ProgramSource::File(host) => Some(Bind {
                host: host.clone(),
                sandbox: PathBuf::from(&command.program),
            }),
            ProgramSource::RootFs(root) => {
                spec.host_runtime = false;
                let (binds, links) = root_entries(root)?;
                spec.ro_binds.extend(binds);
                spec.symlinks = links;
                None
            }
        };
        spec.ro_binds.extend(program);
        spec.ro_binds.extend(policy.bind_ro.iter().map(Bind::same));
        spec.max_processes = policy.limits.max_processes;
        if matches!(self.cgroups, CgroupSupport::Unavailable { .. }) {
            // Without a memory cgroup, RLIMIT_DATA is the only memory bound left.
            spec.max_data_bytes = policy.limits.memory_bytes;
        }
        spec.layout = self.layout;
        Ok(spec)
    }

    /// Starts a sandbox: bubblewrap is held until the sandbox is in its cgroup and, when its
    /// policy allows egress, its veth pair is configured and its proxy listener is up, so
    /// nothing untrusted ever runs unconstrained or with a half-built network.
    pub async fn start(
        self: &Arc<Self>,
        name: &str,
        launch: &SandboxLaunch,
    ) -> Result<RunningSandbox, SandboxStartError> {
        self.start_for(name, launch, SecretScope::Server).await
    }

    /// Where the egress proxy's secrets come from; `None` without sandbox networking.
    pub fn secrets(&self) -> Option<Arc<dyn gig_proxy::SecretSource>> {
        self.egress.as_ref().map(|e| e.proxy.secrets().clone())
    }

    /// Like [`Self::start`], with the proxy injecting the credentials of `scope` (a user's
    /// own instance, or none at all) instead of the server's.
    pub async fn start_for(
        self: &Arc<Self>,
        name: &str,
        launch: &SandboxLaunch,
        scope: SecretScope,
    ) -> Result<RunningSandbox, SandboxStartError> {
        let mut spec = self.spec(launch)?;
        let mut egress_policy = launch.policy.egress.clone();
        let network = if egress_policy.allow.is_empty() {
            None
        } else {
            let egress = self.egress.clone().ok_or(SandboxStartError::NoNetwork)?;
            let net = egress
                .net
                .reserve(egress.port)
                .map_err(SandboxStartError::Reserve)?;
            let mut placeholders = std::collections::HashMap::new();
            for credential in &egress_policy.credentials {
                let placeholder = gig_proxy::new_placeholder();
                spec.env.insert(credential.env.clone(), placeholder.clone());
                placeholders.insert(credential.env.clone(), placeholder);
            }
            let proxy_url = format!("http://{}:{}", net.host_addr, egress.port);
            spec.env
                .extend(gig_proxy::sandbox_env(&proxy_url, CA_PATH_IN_SANDBOX));
            spec.ro_binds.push(Bind {
                host: egress.ca_file.clone(),
                sandbox: CA_PATH_IN_SANDBOX.into(),
            });
            spec.expect_addr = Some(net.sandbox_addr);
            egress_policy
                .allow_addresses
                .extend(egress.allow_addresses.iter().copied());
            Some((egress, net, placeholders))
        };
        let host_id = match &self.ids {
            Some(ids) => Some(ids.claim().map_err(SandboxStartError::HostId)?),
            None => None,
        };
        spec.host_ids = host_id.as_ref().map(|h| (h.id, h.id));
        let n = self.started.fetch_add(1, Ordering::Relaxed);
        let cgroup_name = format!("{}-{}-{n}", cgroup_safe(name), std::process::id());
        let limits = launch.policy.limits;
        let cgroup = self
            .cgroups
            .create(&cgroup_name, &limits)
            .map_err(SandboxStartError::Cgroup)?;
        // Spawned on this (runtime) thread, never on a blocking-pool thread: bubblewrap's
        // `--die-with-parent` follows the *thread* that forked it, and the pool retires idle
        // threads after 10 s, which would kill every sandbox 10 s after its start.
        let sandbox = self
            .spawner
            .spawn(&spec, true)
            .map_err(SandboxStartError::Spawn)?;
        // Reading the child's pid waits for bubblewrap to build the namespaces: off the runtime.
        let (mut sandbox, pid) = tokio::task::spawn_blocking(move || {
            let mut sandbox = sandbox;
            let pid = sandbox
                .child_pid()
                .map_err(|e| SandboxStartError::ChildPid(e.to_string()))?;
            Ok::<_, SandboxStartError>((sandbox, pid))
        })
        .await
        .map_err(|e| SandboxStartError::ChildPid(e.to_string()))??;
        cgroup
            .add(sandbox.child.id())
            .and_then(|()| cgroup.add(pid))
            .map_err(SandboxStartError::JoinCgroup)?;
        let (proxy, net, sandbox_egress) = match network {
            None => (None, None, None),
            Some((egress, net, placeholders)) => {
                // On any error below, `net` and `sandbox` drop: the sandbox dies still held.
                egress
                    .net
                    .attach_reserved(&net, pid)
                    .await
                    .map_err(SandboxStartError::Attach)?;
                let listener = tokio::net::TcpListener::bind((net.host_addr, egress.port))
                    .await
                    .map_err(|source| SandboxStartError::ProxyBind {
                        addr: net.host_addr,
                        source,
                    })?;
                let sandbox_egress = Arc::new(
                    SandboxEgress::new(name, egress_policy, placeholders)
                        .map_err(SandboxStartError::Egress)?
                        .only_from(net.sandbox_addr.into())
                        .for_scope(scope),
                );
                let stop = CancellationToken::new();
                let proxy = egress.proxy.clone();
                let serve_stop = stop.clone();
                let server = name.to_owned();
                let served = sandbox_egress.clone();
                tokio::spawn(async move {
                    if let Err(e) = proxy.serve(listener, served, serve_stop).await {
                        tracing::warn!(%server, error = %e, "egress proxy listener ended");
                    }
                });
                (Some(stop.drop_guard()), Some(net), Some(sandbox_egress))
            }
        };
        self.alive.fetch_add(1, Ordering::AcqRel);
        let alive = AliveGuard(self.alive.clone());
        sandbox.release().map_err(SandboxStartError::Release)?;
        Ok(RunningSandbox {
            server: name.to_owned(),
            sandbox,
            egress: sandbox_egress,
            _proxy: proxy,
            _net: net,
            _cgroup: cgroup,
            _host_id: host_id,
            _alive: alive,
        })
    }
}

/// Binds and (target, link) symlinks that make up a server's own root.
type RootEntries = (Vec<Bind>, Vec<(String, PathBuf)>);

/// An extracted image's top level as binds and symlinks of a fresh root. The names the
/// sandbox provides itself (`/proc`, `/dev`, `/tmp`, `/run`, `/sys`) are skipped. Symlinks are
/// re-created, never followed on the host: they resolve inside the sandbox.
fn root_entries(root: &Path) -> Result<RootEntries, SandboxStartError> {
    let fail = |source| SandboxStartError::ImageRoot {
        path: root.to_owned(),
        source,
    };
    const PROVIDED: &[&str] = &["proc", "dev", "tmp", "run", "sys"];
    let mut binds = Vec::new();
    let mut links = Vec::new();
    let entries = std::fs::read_dir(root).map_err(fail)?;
    let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        let Some(name) = name.to_str().filter(|n| !PROVIDED.contains(n)) else {
            continue;
        };
        let inside = PathBuf::from("/").join(name);
        let kind = entry.file_type().map_err(fail)?;
        if kind.is_symlink() {
            let target = std::fs::read_link(entry.path()).map_err(fail)?;
            links.push((target.to_string_lossy().into_owned(), inside));
        } else if kind.is_dir() || kind.is_file() {
            binds.push(Bind {
                host: entry.path(),
                sandbox: inside,
            });
        }
    }
    Ok((binds, links))
}

/// A server name made safe as one path component of a cgroup directory.
fn cgroup_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(48)
        .collect()
}
