//! Start-up: the order in which the gateway's parts come up, each only once what it relies on
//! is there — the vault (a wrong master key stops everything before anything listens), the
//! sandbox runtime and its network, boot-time installs, the hub with its backends, the
//! installed-server reconciler — then serving, then [`crate::shutdown`]. With
//! `GIG_METRICS_LISTEN` set, the metrics listener is bound before any backend starts and the
//! parts above report into it through their extension points (see `gig-metrics`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gig_config::{EgressConfig, Env, GatewayConfig, InstallConfig, MetricsConfig, StoreConfig};
use gig_gateway::Hub;
use gig_gateway::rugpull::FingerprintGate;
use gig_metrics::{
    AuditFanOut, CountedSecrets, EgressMetrics, HubBackends, InstallVia, MeteredOperations,
    Metrics, MetricsListener, Outcome,
};
use gig_proxy::{AuditSink, SecretSource};
use gig_runtime::{
    NetConfig, SandboxNetwork, SandboxRuntime, StoreAudit, UpstreamOAuth, VaultSecrets, data_dir,
};
use gig_secrets::Secrets;
use gig_store::Store;
use secrecy::ExposeSecret;
use tokio_util::sync::CancellationToken;

/// Why the gateway did not start; each names the step and carries its cause.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error(transparent)]
    Config(#[from] gig_config::ConfigError),
    #[error(transparent)]
    ServersFile(#[from] gig_config::ServersFileError),
    #[error(transparent)]
    DataDir(#[from] data_dir::DataDirError),
    #[error("opening the store: {0}")]
    Store(#[from] gig_store::StoreError),
    #[error("opening the vault: {0}")]
    Vault(#[from] gig_secrets::SecretsError),
    #[error("GIG_MASTER_KEY: {0}")]
    MasterKey(#[from] gig_vault::VaultError),
    #[error("the sandbox: {0}")]
    Sandbox(#[from] gig_sandbox::Error),
    #[error(transparent)]
    SandboxIds(#[from] gig_runtime::sandbox_ids::SandboxIdError),
    #[error(
        "the sandbox init {0} is missing: build it with `make bootstrap` and set GIG_BOOTSTRAP"
    )]
    NoBootstrap(PathBuf),
    #[error("cannot locate the gigmcp executable: {0}")]
    NoExecutable(std::io::Error),
    #[error(
        "{what}: {blocked} is not reachable by other users, but sandboxes run as unprivileged users of their own and must read {path}: make it traversable (chmod o+x) or move it"
    )]
    Unreachable {
        what: &'static str,
        blocked: PathBuf,
        path: PathBuf,
    },
    #[error(transparent)]
    SandboxUnavailable(#[from] gig_runtime::SandboxUnavailable),
    #[error("installing needs GIG_INDEX_URL (the signed index) and GIG_INDEX_PUBKEYS (its keys)")]
    InstallsOff,
    #[error("the gateway's outbound HTTP client: {0}")]
    Outbound(#[from] gig_outbound::OutboundError),
    #[error("GIG_INDEX_PUBKEYS: {0}")]
    IndexKeys(#[from] gig_registry_schema::KeyError),
    #[error("GIG_INSTALL {reference}: {source}")]
    Install {
        reference: String,
        source: Box<gig_registry::InstallError>,
    },
    #[error(transparent)]
    Installer(Box<gig_registry::InstallError>),
    #[error(transparent)]
    Serve(#[from] crate::serve::ServeError),
    #[error(transparent)]
    Oidc(#[from] gig_api::OidcError),
    #[error(transparent)]
    Metrics(#[from] gig_metrics::ListenError),
    #[error("sandbox networking: {0}")]
    Network(#[from] gig_netmgr::NetError),
}

impl From<gig_registry::InstallError> for BootError {
    fn from(e: gig_registry::InstallError) -> Self {
        BootError::Installer(Box::new(e))
    }
}

/// Opens the store, creating the data directory first.
pub async fn open_store(config: &StoreConfig) -> Result<Store, BootError> {
    data_dir::prepare(&config.data_dir)?;
    Ok(Store::open(config.database_url.expose_secret()).await?)
}

/// Opens the store and the vault over it; a wrong master key is refused here.
pub async fn open_secrets(config: &StoreConfig, env: &dyn Env) -> Result<Secrets, BootError> {
    let master = master_key(env, "GIG_MASTER_KEY")?;
    Ok(Secrets::open(open_store(config).await?, &master).await?)
}

/// The master key named `name` (`GIG_MASTER_KEY`, or `GIG_NEW_MASTER_KEY` for rotation).
pub fn master_key(env: &dyn Env, name: &'static str) -> Result<gig_vault::MasterKey, BootError> {
    let hex = gig_config::master_key_hex(env, name)?;
    Ok(gig_vault::MasterKey::from_hex(hex.expose_secret())?)
}

/// Runs the gateway until SIGTERM/SIGINT, then shuts down in order. Long on purpose: the
/// start-up order is a security rule (the vault opens before anything listens; sandbox
/// networking and the egress proxy before any backend starts; the listener last) and reads
/// top to bottom here.
pub async fn run(config: GatewayConfig, env: &dyn Env) -> Result<(), BootError> {
    let metrics_config = MetricsConfig::from_env(env, config.listen)?;
    // The vault is checked before anything listens: a wrong key stops the gateway here.
    let secrets = Arc::new(open_secrets(&config.store, env).await?);
    tracing::info!(store = ?secrets.store().kind(), "store and vault ready");
    let oidc = discover_oidc(&config).await?;
    let metrics = match metrics_config.listen {
        Some(addr) => Some((Metrics::new(), MetricsListener::bind(addr).await?)),
        None => None,
    };
    let meter = metrics.as_ref().map(|(m, _)| m.clone());
    let declared = match &config.servers_file {
        Some(path) => gig_config::parse_servers_file(path)?,
        None => gig_config::DeclaredServers::default(),
    };
    let specs = declared.local.clone();
    let install = InstallConfig::from_env(env)?;
    // Installed servers always run sandboxed: with installs configured (or already recorded),
    // the sandbox is required, not optional.
    let has_installs =
        install.index_url.is_some() || !secrets.store().list_servers().await?.is_empty();
    if config.servers_file.is_none() && !has_installs {
        tracing::warn!(
            "no backends: set GIG_SERVERS_FILE, or GIG_INDEX_URL and GIG_INDEX_PUBKEYS to install servers"
        );
    }
    let sandboxes = if has_installs || specs.iter().any(|s| s.sandbox.is_some()) {
        Some(Arc::new(
            sandboxes(&config, env, &secrets, has_installs, meter.as_ref()).await?,
        ))
    } else {
        None
    };
    if !install.install.is_empty() {
        install_at_boot(&config.store, &install, &secrets, meter.as_ref()).await?;
    }
    let reserved: Vec<String> = specs
        .iter()
        .map(|s| s.name.to_string())
        .chain(declared.remote.iter().map(|r| r.name.to_string()))
        .collect();
    // Plain children and remote servers run outside any sandbox.
    let unsandboxed: BTreeSet<String> = specs
        .iter()
        .filter(|s| s.sandbox.is_none())
        .map(|s| s.name.to_string())
        .chain(declared.remote.iter().map(|r| r.name.to_string()))
        .collect();
    let remote = remote_context(&config, env, &secrets)?;
    let upstream_oauth = Arc::new(UpstreamOAuth::new(&declared.remote, &remote)?);
    let backends = declared_launchers(&declared, &remote, sandboxes.clone())?;
    let gate = Arc::new(FingerprintGate::new(secrets.store().clone()));
    let hub = Hub::start_gated(
        config.limits,
        backends,
        CancellationToken::new(),
        Some(gate.clone()),
    );
    tokio::spawn(refresh_approved(hub.clone(), gate));
    if let Some(metrics) = &meter {
        // Installed servers always run sandboxed; declared ones when they have a sandbox block.
        metrics.watch_backends(Arc::new(HubBackends {
            hub: hub.clone(),
            sandboxed: move |name: &str| !unsandboxed.contains(name),
        }));
    }
    if let Some(runtime) = &sandboxes {
        let installs = gig_runtime::installed::Installs {
            hub: hub.clone(),
            store: secrets.store().clone(),
            runtime: runtime.clone(),
            remote,
            oauth: upstream_oauth.clone(),
            reserved,
        };
        let mut current = BTreeMap::new();
        installs.reconcile_once(&mut current).await;
        tokio::spawn(installs.keep_in_step(current));
    }
    let outbound = match &oidc {
        Some(_) => {
            let egress = EgressConfig::from_env(env)?;
            Some(gig_outbound::Outbound::new(
                egress.allow_addresses,
                egress.extra_roots.as_deref(),
            )?)
        }
        None => None,
    };
    let api = oidc.zip(outbound).map(|(oidc, outbound)| {
        let operations = crate::operations::GatewayOperations::new(
            hub.clone(),
            secrets.clone(),
            config.store.clone(),
            install.clone(),
            &declared,
        );
        let operations: Arc<dyn gig_api::operations::Operations> = match &meter {
            Some(metrics) => Arc::new(MeteredOperations::new(
                Arc::new(operations),
                metrics.clone(),
            )),
            None => Arc::new(operations),
        };
        let store = secrets.store().clone();
        let mut state = gig_api::ApiState::new(&config, store, oidc, operations, outbound);
        state.connections = Some(Arc::new(crate::connections::GatewayConnections {
            oauth: upstream_oauth,
            hub: hub.clone(),
        }));
        Arc::new(state)
    });
    let listener = crate::serve::bind(&config).await?;
    let shutdown = crate::serve::shutdown_signal();
    // Scrapes go on while HTTP drains; the listener stops once serving has returned.
    // Tool calls, refusals and sessions reach the metrics through router.rs (`McpExtras`).
    let stop_metrics = tokio_util::sync::CancellationToken::new();
    let metrics_task = metrics.map(|(metrics, listener)| {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(listen = %addr, "metrics listening (GET /metrics)");
        }
        tokio::spawn(listener.serve(metrics, stop_metrics.clone()))
    });
    let served = crate::serve::serve_with_api(listener, config, hub, api, meter, shutdown).await;
    stop_metrics.cancel();
    if let Some(task) = metrics_task {
        let _ = task.await;
    }
    let confinement = sandboxes
        .as_deref()
        .map(|s| s as &dyn crate::shutdown::Confinement);
    crate::shutdown::after_serve(confinement, secrets.store()).await;
    Ok(served?)
}

/// What every remote server's connection shares: the egress address policy and TLS roots,
/// the vault, limits, and where users are sent to connect their accounts.
fn remote_context(
    config: &GatewayConfig,
    env: &dyn Env,
    secrets: &Arc<Secrets>,
) -> Result<gig_runtime::RemoteContext, BootError> {
    let egress = EgressConfig::from_env(env)?;
    Ok(gig_runtime::RemoteContext {
        allow_addresses: egress.allow_addresses,
        extra_roots: egress.extra_roots,
        secrets: secrets.clone(),
        max_message_bytes: config.limits.max_message_bytes,
        call_timeout: config.limits.call_timeout,
        public_url: config.public_url.clone(),
        refresh_locks: Arc::new(gig_runtime::RefreshLocks::new(secrets.store().clone())),
    })
}

/// How to start every server the servers file declares: local ones as children or sandboxes,
/// remote ones over HTTP under the address policy.
fn declared_launchers(
    declared: &gig_config::DeclaredServers,
    remote: &gig_runtime::RemoteContext,
    sandboxes: Option<Arc<SandboxRuntime>>,
) -> Result<Vec<gig_gateway::NamedLauncher>, BootError> {
    // Plain servers get a cgroup per start where the gateway may create cgroups, so
    // nothing they start outlives them (a `setsid` child of a leader that died first included).
    // Detected once: the sandbox runtime's when there is one.
    let plain_cgroups = declared.local.iter().any(|s| s.sandbox.is_none()).then(|| {
        Arc::new(match &sandboxes {
            // It has reclaimed what dead gateways left.
            Some(runtime) => runtime.cgroups().clone(),
            None => {
                let cgroups = gig_sandbox::CgroupSupport::detect("gigmcp");
                let removed = cgroups.remove_leftovers();
                if removed > 0 {
                    tracing::info!(
                        removed,
                        "removed plain-server cgroups left by a gateway that did not stop cleanly"
                    );
                }
                cgroups
            }
        })
    });
    let mut backends = gig_runtime::launchers(
        declared.local.clone(),
        &gig_config::ProcessEnv.all(),
        sandboxes,
        plain_cgroups,
    )?;
    backends.extend(gig_runtime::remote_launchers(
        declared.remote.clone(),
        remote,
    )?);
    Ok(backends)
}

/// The control plane's identity provider, when configured: asked before any backend starts,
/// so an unreachable issuer stops the gateway after `GIG_OIDC_DISCOVERY_TIMEOUT_SECS`.
async fn discover_oidc(config: &GatewayConfig) -> Result<Option<gig_api::Oidc>, BootError> {
    let Some(oidc) = &config.oidc else {
        tracing::info!("control plane off (GIG_OIDC_ISSUER unset): /api answers 503");
        return Ok(None);
    };
    let discovered = gig_api::Oidc::discover(oidc).await?;
    tracing::info!(issuer = %oidc.issuer, "control plane on: OIDC sign-in ready");
    Ok(Some(discovered))
}

/// The sandbox runtime, with networking and the egress proxy when the host allows them.
async fn sandboxes(
    config: &GatewayConfig,
    env: &dyn Env,
    secrets: &Arc<Secrets>,
    has_installs: bool,
    metrics: Option<&Arc<Metrics>>,
) -> Result<SandboxRuntime, BootError> {
    let bootstrap = existing_bootstrap(env)?;
    let mut runtime = sandbox_runtime(bootstrap.clone(), env)?;
    let egress_config = EgressConfig::from_env(env)?;
    let public = data_dir::public_dir(&config.store.data_dir);
    data_dir::prepare(&config.store.data_dir)?;
    if is_root() {
        for (what, path) in [
            ("GIG_DATA_DIR", public.clone()),
            ("GIG_BOOTSTRAP", bootstrap),
        ] {
            if let Some(blocked) = data_dir::blocked_for_others(&path) {
                let why = BootError::Unreachable {
                    what,
                    blocked,
                    path,
                };
                // Installed servers always need it; hand-declared ones only for egress.
                if has_installs || what == "GIG_BOOTSTRAP" {
                    return Err(why);
                }
                tracing::warn!("{why}; sandboxed servers with egress will not start");
            }
        }
    }
    let mut audit: Arc<dyn AuditSink> = Arc::new(StoreAudit::start(secrets.store().clone()));
    let mut vault: Arc<dyn SecretSource> = Arc::new(VaultSecrets(secrets.clone()));
    if let Some(metrics) = metrics {
        audit = Arc::new(AuditFanOut(vec![
            audit,
            Arc::new(EgressMetrics(metrics.clone())),
        ]));
        vault = Arc::new(CountedSecrets::new(vault, metrics.clone()));
    }
    let base = NetConfig {
        pool: egress_config.pool,
        ..NetConfig::default()
    };
    // This gateway's share of the host's sandbox networking: other gateways on the host keep
    // theirs (names, table, addresses), and a crashed run's share is reclaimed by the next.
    let (net, instance) = match gig_runtime::instance::claim(
        &base,
        gig_runtime::instance::LOCK_NAME,
    ) {
        Ok(claimed) => claimed,
        Err(e) => {
            tracing::warn!(
                "sandbox networking unavailable ({e}): servers whose policy allows egress will not start"
            );
            return Ok(runtime);
        }
    };
    match SandboxNetwork::start(&egress_config, net, &public, vault, audit).await {
        Ok(network) => {
            let network = network.holding(instance);
            let owned = network.config();
            tracing::info!(
                pool = %owned.pool,
                links = %format!("{}*", owned.ifname_prefix),
                table = %owned.nft_table,
                port = egress_config.proxy_port,
                "sandbox networking and egress proxy ready"
            );
            runtime = runtime.with_network(Arc::new(network));
        }
        Err(e) => tracing::warn!(
            "sandbox networking unavailable ({e}): servers whose policy allows egress will not start"
        ),
    }
    Ok(runtime)
}

async fn install_at_boot(
    store: &StoreConfig,
    install: &InstallConfig,
    secrets: &Arc<Secrets>,
    metrics: Option<&Arc<Metrics>>,
) -> Result<(), BootError> {
    let installer = installer(store, install, secrets.clone())?;
    let index = installer.load_index().await?;
    tracing::info!(version = index.index().version, "signed index verified");
    for reference in &install.install {
        let started = Instant::now();
        let installed = installer.install_from(&index, reference, &|_| {}).await;
        if let Some(metrics) = metrics {
            metrics.install_finished(
                InstallVia::Boot,
                Outcome::from(&installed),
                started.elapsed(),
            );
        }
        let record = installed.map_err(|source| BootError::Install {
            reference: reference.clone(),
            source: Box::new(source),
        })?;
        tracing::info!(server = %record.name, version = %record.version, digest = %record.image_digest, "GIG_INSTALL ready");
    }
    Ok(())
}

/// The installer for `gigmcp install` and `GIG_INSTALL`: the signed index and its keys are
/// required; extracted images live under the data directory's public part.
pub fn installer(
    store: &StoreConfig,
    install: &InstallConfig,
    secrets: Arc<Secrets>,
) -> Result<gig_registry::Installer, BootError> {
    let (Some(url), Some(keys)) = (&install.index_url, &install.index_pubkeys) else {
        return Err(BootError::InstallsOff);
    };
    let keys = gig_registry_schema::TrustedKeys::parse_list(keys)?;
    data_dir::prepare(&store.data_dir)?;
    let installer = gig_registry::Installer::new(
        secrets.store().clone(),
        Some(secrets),
        &data_dir::public_dir(&store.data_dir).join("oci"),
        url,
        keys,
        gig_oci::RegistryOptions {
            plain_http: install.registry_plain_http,
            ..Default::default()
        },
    )?;
    Ok(match &install.oci_layout {
        Some(dir) => installer.with_layout(dir.clone()),
        None => installer,
    })
}

/// Shows a tool again soon after an operator approved its changed definition.
async fn refresh_approved(hub: Arc<Hub>, gate: Arc<FingerprintGate>) {
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tick.tick().await;
        for backend in gate.approved_since().await {
            hub.refresh_backend(&backend);
        }
    }
}

/// The bootstrap binary bound into every sandbox: `GIG_BOOTSTRAP`, else the one installed next
/// to this executable.
pub fn bootstrap_path(env: &dyn Env) -> Result<PathBuf, BootError> {
    if let Some(path) = gig_config::bootstrap_override(env) {
        return Ok(path);
    }
    let exe = std::env::current_exe().map_err(BootError::NoExecutable)?;
    Ok(exe.with_file_name("bootstrap"))
}

/// The bootstrap binary, which must exist (start-up and `gigmcp doctor`).
pub fn existing_bootstrap(env: &dyn Env) -> Result<PathBuf, BootError> {
    let path = bootstrap_path(env)?;
    if !path.is_file() {
        return Err(BootError::NoBootstrap(path));
    }
    Ok(path)
}

/// Bubblewrap, bootstrap and the host's cgroups, detected at start. As root, each sandbox runs
/// as a host uid/gid of its own from `GIG_SANDBOX_IDS` (decision 65), so the sandbox's uid maps
/// to an unprivileged host user no other sandbox shares and RLIMIT_NPROC binds per sandbox.
pub fn sandbox_runtime(bootstrap: PathBuf, env: &dyn Env) -> Result<SandboxRuntime, BootError> {
    let mut spawner = gig_sandbox::BwrapSpawner::detect()?;
    let ids = gig_config::sandbox_ids(env)?;
    let root = is_root();
    if root {
        // Only a fallback: the runtime gives every sandbox an id of its own.
        spawner.host_ids = Some((65534, 65534));
    }
    let mut runtime = SandboxRuntime::new(Arc::new(spawner), bootstrap, "gigmcp");
    if root {
        runtime = runtime.with_sandbox_ids(gig_runtime::sandbox_ids::SandboxIds::new(ids)?);
    }
    match runtime.describe() {
        (true, text) => tracing::info!("sandbox limits: {text}"),
        (false, text) => tracing::warn!("sandbox limits: {text}"),
    }
    Ok(runtime)
}

/// Bubblewrap as start-up finds it (`gigmcp doctor` asks the same question).
pub fn bubblewrap() -> Result<PathBuf, BootError> {
    Ok(gig_sandbox::BwrapSpawner::detect()?.bwrap)
}

/// The cgroup limits sandboxes will get: whether there are any, and the start-up log's line.
pub fn cgroup_limits() -> (bool, String) {
    let cgroups = gig_sandbox::CgroupSupport::detect("gigmcp");
    let limited = !matches!(cgroups, gig_sandbox::CgroupSupport::Unavailable { .. });
    (limited, cgroups.describe())
}

/// Whether sandbox networking can start (CAP_NET_ADMIN, a working `nft`); the `nft` found.
pub fn sandbox_network_host(env: &dyn Env) -> Result<PathBuf, BootError> {
    let egress = EgressConfig::from_env(env)?;
    let net = NetConfig {
        pool: egress.pool,
        ..NetConfig::default()
    };
    Ok(gig_netmgr::check_host(&net)?)
}

/// Whether this process runs as root (the owner of `/proc/self`).
pub fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
}

/// The sandbox init for `gigmcp sandbox exec`: present, or a clear error.
pub fn sandbox_runtime_from_env(env: &dyn Env) -> Result<SandboxRuntime, BootError> {
    sandbox_runtime(existing_bootstrap(env)?, env)
}
