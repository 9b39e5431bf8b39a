//! A backend run inside the sandbox: bubblewrap + bootstrap + seccomp, through the same
//! [`Launcher`] interface as a plain stdio child, so supervision and aggregation do not change.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use gig_config::{EgressConfig, SandboxPolicy, StdioCommand};
pub use gig_netmgr::NetConfig;
use gig_netmgr::{NetManager, SandboxNet};
use gig_proxy::{
    AuditSink, EgressProxy, ProxyConfig, RuntimeCa, SandboxEgress, SecretSource, StaticResolver,
    SystemResolver,
};
use gig_sandbox::{
    Bind, CgroupSupport, Sandbox, SandboxCgroup, SandboxSpec, Spawner, SystemLayout,
};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::backend::{Connection, LaunchError, LaunchFuture, Launcher, log_stderr};

/// Where every sandbox finds the proxy's CA certificate.
pub const CA_PATH_IN_SANDBOX: &str = "/run/gig/egress-ca.pem";

/// Per-sandbox networking and the egress proxy: the only way out of a sandbox.
pub struct Egress {
    net: NetManager,
    proxy: EgressProxy,
    ca_file: PathBuf,
    port: u16,
    allow_addresses: Vec<gig_policy::IpNet>,
}

impl std::fmt::Debug for Egress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Egress")
            .field("pool", &self.net.config().pool)
            .field("port", &self.port)
            .finish()
    }
}

impl Egress {
    /// Sets up the host side (reclaiming what a crashed gateway left: links, firewall table),
    /// generates the runtime CA and writes its certificate to `public_dir` for sandboxes.
    /// `net` names the links, table and pool this process owns (the gateway's defaults, or a
    /// private set for `gigmcp sandbox exec` so it never reclaims a running gateway's links).
    pub async fn start(
        config: &EgressConfig,
        net: NetConfig,
        public_dir: &std::path::Path,
        secrets: Arc<dyn SecretSource>,
        audit: Arc<dyn AuditSink>,
    ) -> Result<Self, String> {
        let net = NetManager::new(net).await.map_err(|e| e.to_string())?;
        let reclaimed = net.reclaimed();
        if !reclaimed.removed_links.is_empty() || reclaimed.removed_table {
            tracing::info!(links = ?reclaimed.removed_links, table = reclaimed.removed_table, "reclaimed sandbox networking left by an earlier run");
        }
        let ca = RuntimeCa::generate().map_err(|e| e.to_string())?;
        let ca_file = public_dir.join("egress-ca.pem");
        write_public_file(&ca_file, ca.cert_pem().as_bytes())?;
        let extra_roots = match &config.extra_roots {
            Some(path) => gig_proxy::load_pem_certificates(path).map_err(|e| e.to_string())?,
            None => Vec::new(),
        };
        let mut resolver = StaticResolver::new().with_fallback(Arc::new(SystemResolver));
        for (name, ips) in &config.hosts {
            resolver = resolver.insert(name, ips.iter().copied());
        }
        let proxy = EgressProxy::new(
            ca,
            ProxyConfig {
                extra_roots,
                public_roots: true,
                resolver: Arc::new(resolver),
                limits: Default::default(),
            },
            secrets,
            audit,
        )
        .map_err(|e| e.to_string())?;
        Ok(Egress {
            net,
            proxy,
            ca_file,
            port: config.proxy_port,
            allow_addresses: config.allow_addresses.clone(),
        })
    }

    /// Removes the firewall table at a clean shutdown (a crash is reclaimed at the next start).
    pub async fn stop(&self) {
        if let Err(e) = self.net.remove_firewall().await {
            tracing::warn!(error = %e, "removing the sandbox firewall table");
        }
    }
}

/// The first directory on the way to `path` that other users cannot traverse (or `path`
/// itself if they cannot read it). When the gateway runs as root, bubblewrap runs as `nobody`
/// and can bind only what `nobody` reaches; checking at start turns bubblewrap's failure deep
/// in a restart loop into one clear message.
pub fn blocked_for_others(path: &std::path::Path) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::fs::canonicalize(path).ok()?;
    let readable = std::fs::metadata(&path).ok()?.permissions().mode() & 0o004 != 0;
    if !readable {
        return Some(path);
    }
    path.ancestors()
        .skip(1)
        .find(|dir| std::fs::metadata(dir).is_ok_and(|m| m.permissions().mode() & 0o001 == 0))
        .map(|dir| dir.to_path_buf())
}

/// Writes a world-readable file atomically (temp file + rename).
fn write_public_file(path: &std::path::Path, bytes: &[u8]) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644)))
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| format!("writing {}: {e}", path.display()))
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
    egress: Option<Arc<Egress>>,
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
    pub sandbox: Sandbox,
    /// The sandbox's egress state (its proxy listener's), for tool-call attribution.
    pub egress: Option<Arc<SandboxEgress>>,
    /// Cancels this sandbox's proxy listener.
    _proxy: Option<DropGuard>,
    /// Tears the veth pair down (on drop, asynchronously).
    _net: Option<SandboxNet>,
    _cgroup: SandboxCgroup,
    /// Last: counts the sandbox as gone only after everything above was dropped.
    _alive: AliveGuard,
}

struct AliveGuard(Arc<AtomicU64>);

impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
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
    /// `cgroup_group` names the parent cgroup all sandboxes go under (`gigmcp`).
    pub fn new(
        spawner: Arc<dyn Spawner + Send + Sync>,
        bootstrap: PathBuf,
        cgroup_group: &str,
    ) -> Self {
        SandboxRuntime {
            spawner,
            bootstrap,
            cgroups: CgroupSupport::detect(cgroup_group),
            layout: SystemLayout::detect(),
            started: AtomicU64::new(0),
            alive: Arc::new(AtomicU64::new(0)),
            egress: None,
        }
    }

    /// Gives sandboxes whose policy allows egress a network that leads only to the proxy.
    pub fn with_egress(mut self, egress: Arc<Egress>) -> Self {
        self.egress = Some(egress);
        self
    }

    pub fn egress(&self) -> Option<&Arc<Egress>> {
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

    /// What the host provides, for the start-up log (no cgroups is worth a warning).
    pub fn describe(&self) -> (bool, String) {
        let limited = !matches!(self.cgroups, CgroupSupport::Unavailable { .. });
        (limited, self.cgroups.describe())
    }

    fn spec(&self, launch: &SandboxLaunch) -> Result<SandboxSpec, String> {
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
    ) -> Result<RunningSandbox, LaunchError> {
        let fail = |e: String| LaunchError::Other(format!("sandbox: {e}"));
        let mut spec = self.spec(launch).map_err(fail)?;
        let mut egress_policy = launch.policy.egress.clone();
        let network = if egress_policy.allow.is_empty() {
            None
        } else {
            let egress = self.egress.clone().ok_or_else(|| {
                fail("its policy allows egress, but sandbox networking is unavailable on this host (see the start-up log)".into())
            })?;
            let net = egress
                .net
                .reserve(egress.port)
                .map_err(|e| fail(e.to_string()))?;
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
        let n = self.started.fetch_add(1, Ordering::Relaxed);
        let cgroup_name = format!("{}-{}-{n}", cgroup_safe(name), std::process::id());
        let limits = launch.policy.limits;
        let cgroup = self
            .cgroups
            .create(&cgroup_name, &limits)
            .map_err(|e| fail(e.to_string()))?;
        // Spawned on this (runtime) thread, never on a blocking-pool thread: bubblewrap's
        // `--die-with-parent` follows the *thread* that forked it, and the pool retires idle
        // threads after 10 s, which would kill every sandbox 10 s after its start.
        let sandbox = self
            .spawner
            .spawn(&spec, true)
            .map_err(|e| fail(e.to_string()))?;
        // Reading the child's pid waits for bubblewrap to build the namespaces: off the runtime.
        let (mut sandbox, pid) = tokio::task::spawn_blocking(move || {
            let mut sandbox = sandbox;
            let pid = sandbox.child_pid().map_err(|e| e.to_string())?;
            Ok::<_, String>((sandbox, pid))
        })
        .await
        .map_err(|e| fail(e.to_string()))?
        .map_err(fail)?;
        cgroup
            .add(sandbox.child.id())
            .and_then(|()| cgroup.add(pid))
            .map_err(|e| fail(e.to_string()))?;
        let (proxy, net, sandbox_egress) = match network {
            None => (None, None, None),
            Some((egress, net, placeholders)) => {
                // On any error below, `net` and `sandbox` drop: the sandbox dies still held.
                egress
                    .net
                    .attach_reserved(&net, pid)
                    .await
                    .map_err(|e| fail(e.to_string()))?;
                let listener = tokio::net::TcpListener::bind((net.host_addr, egress.port))
                    .await
                    .map_err(|e| fail(format!("binding the proxy on {}: {e}", net.host_addr)))?;
                let sandbox_egress = Arc::new(
                    SandboxEgress::new(name, egress_policy, placeholders)
                        .map_err(|e| fail(e.to_string()))?
                        .only_from(net.sandbox_addr.into()),
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
        sandbox.release().map_err(|e| fail(e.to_string()))?;
        Ok(RunningSandbox {
            sandbox,
            egress: sandbox_egress,
            _proxy: proxy,
            _net: net,
            _cgroup: cgroup,
            _alive: alive,
        })
    }
}

/// Binds and (target, link) symlinks that make up a server's own root.
type RootEntries = (Vec<Bind>, Vec<(String, PathBuf)>);

/// An extracted image's top level as binds and symlinks of a fresh root. The names the
/// sandbox provides itself (`/proc`, `/dev`, `/tmp`, `/run`, `/sys`) are skipped. Symlinks are
/// re-created, never followed on the host: they resolve inside the sandbox.
fn root_entries(root: &std::path::Path) -> Result<RootEntries, String> {
    const PROVIDED: &[&str] = &["proc", "dev", "tmp", "run", "sys"];
    let mut binds = Vec::new();
    let mut links = Vec::new();
    let entries = std::fs::read_dir(root).map_err(|e| format!("{}: {e}", root.display()))?;
    let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        let Some(name) = name.to_str().filter(|n| !PROVIDED.contains(n)) else {
            continue;
        };
        let inside = PathBuf::from("/").join(name);
        let kind = entry.file_type().map_err(|e| e.to_string())?;
        if kind.is_symlink() {
            let target = std::fs::read_link(entry.path()).map_err(|e| e.to_string())?;
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

/// Starts one declared server in a fresh sandbox per (re)start.
pub struct SandboxLauncher {
    backend: String,
    launch: SandboxLaunch,
    runtime: Arc<SandboxRuntime>,
}

impl std::fmt::Debug for SandboxLauncher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxLauncher")
            .field("backend", &self.backend)
            .finish()
    }
}

impl SandboxLauncher {
    /// Only the declared `env` reaches the server: nothing of the gateway's environment does.
    pub fn new(
        backend: impl Into<String>,
        launch: SandboxLaunch,
        runtime: Arc<SandboxRuntime>,
    ) -> Self {
        Self {
            backend: backend.into(),
            launch,
            runtime,
        }
    }

    async fn start(&self) -> Result<Connection, LaunchError> {
        let mut running = self.runtime.start(&self.backend, &self.launch).await?;
        let sandbox = &mut running.sandbox;
        let pipe = |what: &str| LaunchError::Other(format!("sandbox {what} was not piped"));
        let stdin = sandbox.child.stdin.take().ok_or_else(|| pipe("stdin"))?;
        let stdout = sandbox.child.stdout.take().ok_or_else(|| pipe("stdout"))?;
        let stderr = sandbox.child.stderr.take().ok_or_else(|| pipe("stderr"))?;
        let io = |e: std::io::Error| LaunchError::Other(format!("sandbox stdio: {e}"));
        let stdin = tokio::process::ChildStdin::from_std(stdin).map_err(io)?;
        let stdout = tokio::process::ChildStdout::from_std(stdout).map_err(io)?;
        let stderr = tokio::process::ChildStderr::from_std(stderr).map_err(io)?;
        tokio::spawn(log_stderr(self.backend.clone(), stderr));
        let on_tool_call = running.egress.clone().map(|egress| {
            std::sync::Arc::new(move |call: Option<String>| egress.set_tool_call(call))
                as crate::backend::ToolCallHook
        });
        Ok(Connection {
            on_tool_call,
            reader: Box::pin(stdout),
            writer: Box::pin(stdin),
            guard: Box::new(SandboxGuard(Some(running))),
        })
    }
}

impl Launcher for SandboxLauncher {
    fn launch(&self) -> LaunchFuture<'_> {
        Box::pin(self.start())
    }
}

/// Ends the sandbox when the connection ends. Killing and reaping bubblewrap blocks briefly,
/// so it happens off the async runtime.
struct SandboxGuard(Option<RunningSandbox>);

impl Drop for SandboxGuard {
    fn drop(&mut self) {
        if let Some(sandbox) = self.0.take() {
            match tokio::runtime::Handle::try_current() {
                Ok(handle) => {
                    handle.spawn_blocking(move || drop(sandbox));
                }
                Err(_) => drop(sandbox),
            }
        }
    }
}
