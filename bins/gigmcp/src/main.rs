//! `gigmcp`: the gateway and its operator commands. Thin by design: read configuration, set
//! up logging, hand over to the library crates.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use gig_config::{
    EgressConfig, GatewayConfig, InstallConfig, LogConfig, ProcessEnv, SandboxPolicy, StdioCommand,
    StoreConfig, master_key_hex, parse_servers_file,
};
use gig_gateway::egress::{StoreAudit, VaultSecrets};
use gig_gateway::hub::Hub;
use gig_gateway::rugpull::FingerprintGate;
use gig_gateway::sandboxed::{Egress, NetConfig, ProgramSource, SandboxLaunch, SandboxRuntime};
use gig_secrets::Secrets;
use gig_store::{CredentialScope, Store};
use gig_vault::MasterKey;
use secrecy::ExposeSecret;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    version,
    about = "Gig'MCP: one MCP endpoint in front of many MCP servers"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (the default). Configuration comes from GIG_* variables.
    Serve,
    /// Manage stored secrets (values are read from stdin or a file, never from arguments).
    Secret {
        #[command(subcommand)]
        action: SecretAction,
    },
    /// Vault maintenance.
    Vault {
        #[command(subcommand)]
        action: VaultAction,
    },
    /// Run a command in the sandbox a server gets, for debugging.
    Sandbox {
        #[command(subcommand)]
        action: SandboxAction,
    },
    /// Install a server from the signed index (GIG_INDEX_URL, GIG_INDEX_PUBKEYS): `echo` or
    /// `echo@1.2.0`.
    Install { reference: String },
    /// Remove an installed server (its cached image stays for a reinstall).
    Uninstall { name: String },
    /// List installed servers.
    List,
    /// Review tool definitions that changed since first seen (hidden until approved).
    Tools {
        #[command(subcommand)]
        action: ToolsAction,
    },
}

enum InstallAction {
    Install { reference: String },
    Uninstall { name: String },
    List,
}

#[derive(Subcommand)]
enum ToolsAction {
    /// List a server's recorded tools, marking the ones whose definition changed.
    List { server: String },
    /// Trust a tool's changed definition; a running gateway shows it within seconds.
    Approve { server: String, tool: String },
}

#[derive(Subcommand)]
enum SandboxAction {
    /// Run COMMAND ARGS... in exactly the sandbox a server gets (namespaces, bootstrap,
    /// seccomp, limits), with stdio passed through; exits with the command's status.
    Exec {
        /// Bind a host path read-only at the same place (repeatable).
        #[arg(long = "bind-ro", value_name = "PATH")]
        bind_ro: Vec<PathBuf>,
        /// Allow egress to HOST[:PORT] through the proxy (not available yet: see below).
        #[arg(long = "allow-host", value_name = "HOST[:PORT]")]
        allow_host: Vec<String>,
        /// The command (an absolute path inside the sandbox) and its arguments.
        #[arg(last = true, required = true)]
        command: Vec<std::ffi::OsString>,
    },
}

#[derive(Subcommand)]
enum SecretAction {
    /// Store (or replace) a secret for a server. The value is read from stdin unless --file.
    Set {
        server: String,
        name: String,
        /// Read the value from this file instead of stdin.
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// List stored secrets: names, servers and key ids — never values.
    List { server: Option<String> },
    /// Delete a secret.
    Delete { server: String, name: String },
}

#[derive(Subcommand)]
enum VaultAction {
    /// Re-wrap every secret under a new master key (from GIG_NEW_MASTER_KEY or --new-key-file),
    /// in one transaction. Safe to re-run after an interruption.
    Rotate {
        #[arg(long)]
        new_key_file: Option<PathBuf>,
    },
}

/// Largest secret value accepted from stdin or a file.
const MAX_SECRET_BYTES: u64 = 64 * 1024;

fn init_logging(config: &LogConfig) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.filter)
        .with_context(|| format!("GIG_LOG={:?} is not a valid log filter", config.filter))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.format {
        gig_config::LogFormat::Json => builder.json().init(),
        gig_config::LogFormat::Text => builder.init(),
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging(&LogConfig::from_env(&ProcessEnv)?)?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let config = GatewayConfig::from_env(&ProcessEnv)?;
            runtime(config.worker_threads)?.block_on(serve(config))
        }
        // Operator commands need only the store and the master key, not the client token.
        Command::Secret { action } => {
            runtime(1)?.block_on(secret(StoreConfig::from_env(&ProcessEnv)?, action))
        }
        Command::Vault {
            action: VaultAction::Rotate { new_key_file },
        } => runtime(1)?.block_on(rotate(StoreConfig::from_env(&ProcessEnv)?, new_key_file)),
        Command::Install { reference } => runtime(1)?.block_on(install_cmd(
            StoreConfig::from_env(&ProcessEnv)?,
            InstallAction::Install { reference },
        )),
        Command::Uninstall { name } => runtime(1)?.block_on(install_cmd(
            StoreConfig::from_env(&ProcessEnv)?,
            InstallAction::Uninstall { name },
        )),
        Command::List => runtime(1)?.block_on(install_cmd(
            StoreConfig::from_env(&ProcessEnv)?,
            InstallAction::List,
        )),
        Command::Tools { action } => {
            runtime(1)?.block_on(tools(StoreConfig::from_env(&ProcessEnv)?, action))
        }
        Command::Sandbox {
            action:
                SandboxAction::Exec {
                    bind_ro,
                    allow_host,
                    command,
                },
        } => {
            let code = runtime(1)?.block_on(sandbox_exec(bind_ro, allow_host, command))?;
            std::process::exit(code)
        }
    }
}

/// One thread by default: on small machines, cross-thread wake-ups cost more than the
/// parallelism gains (DESIGN.md, decision 18).
fn runtime(threads: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(threads);
        builder
    };
    Ok(builder.enable_all().build()?)
}

fn master_key(name: &'static str) -> anyhow::Result<MasterKey> {
    let hex = master_key_hex(&ProcessEnv, name)?;
    Ok(MasterKey::from_hex(hex.expose_secret())?)
}

async fn open_store(config: &StoreConfig) -> anyhow::Result<Store> {
    gig_gateway::prepare_data_dir(&config.data_dir)?;
    Ok(Store::open(config.database_url.expose_secret()).await?)
}

async fn open_secrets(config: &StoreConfig) -> anyhow::Result<Secrets> {
    let master = master_key("GIG_MASTER_KEY")?;
    Ok(Secrets::open(open_store(config).await?, &master).await?)
}

async fn serve(config: GatewayConfig) -> anyhow::Result<()> {
    // The vault is checked before anything listens: a wrong key stops the gateway here.
    let secrets = Arc::new(open_secrets(&config.store).await?);
    tracing::info!(store = ?secrets.store().kind(), "store and vault ready");
    let specs = match &config.servers_file {
        Some(path) => parse_servers_file(path)?,
        None => {
            tracing::warn!("GIG_SERVERS_FILE is not set: no backends");
            Vec::new()
        }
    };
    let parent_env: Vec<(String, String)> = std::env::vars().collect();
    let install = InstallConfig::from_env(&ProcessEnv)?;
    // Installed servers always run sandboxed: with installs configured (or already recorded),
    // the sandbox is required, not optional.
    let has_installs =
        install.index_url.is_some() || !secrets.store().list_servers().await?.is_empty();
    let sandbox = if has_installs || specs.iter().any(|s| s.sandbox.is_some()) {
        let mut runtime = sandbox_runtime()?;
        let audit = Arc::new(StoreAudit::start(secrets.store().clone()));
        let vault = Arc::new(VaultSecrets(secrets.clone()));
        let egress_config = EgressConfig::from_env(&ProcessEnv)?;
        let net = NetConfig {
            pool: egress_config.pool,
            ..NetConfig::default()
        };
        let public = gig_gateway::public_dir(&config.store.data_dir);
        gig_gateway::prepare_data_dir(&config.store.data_dir)?;
        if nix_is_root() {
            for (what, path) in [
                ("GIG_DATA_DIR", public.as_path()),
                ("GIG_BOOTSTRAP", &bootstrap_path()?),
            ] {
                if let Some(dir) = gig_gateway::sandboxed::blocked_for_others(path) {
                    let why = format!(
                        "{what}: {} is not reachable by other users, but sandboxes are started as \
                         `nobody` and must read {}: make it traversable (chmod o+x) or move it",
                        dir.display(),
                        path.display()
                    );
                    // Installed servers always need it; hand-declared ones only for egress.
                    if has_installs || what == "GIG_BOOTSTRAP" {
                        bail!(why);
                    }
                    tracing::warn!("{why}; sandboxed servers with egress will not start");
                }
            }
        }
        match Egress::start(&egress_config, net, &public, vault, audit).await {
            Ok(egress) => {
                tracing::info!(pool = %egress_config.pool, port = egress_config.proxy_port, "sandbox networking and egress proxy ready");
                runtime = runtime.with_egress(Arc::new(egress));
            }
            Err(e) => tracing::warn!(
                "sandbox networking unavailable ({e}): servers whose policy allows egress will not start"
            ),
        }
        Some(Arc::new(runtime))
    } else {
        None
    };
    if !install.install.is_empty() {
        let installer = installer(&config.store, &install, Some(secrets.clone()))?;
        let index = installer.load_index().await?;
        tracing::info!(version = index.index().version, "signed index verified");
        for reference in &install.install {
            let record = installer
                .install_from(&index, reference, &|_| {})
                .await
                .with_context(|| format!("GIG_INSTALL {reference}"))?;
            tracing::info!(server = %record.name, version = %record.version, digest = %record.image_digest, "GIG_INSTALL ready");
        }
    }
    let reserved: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
    let backends = gig_gateway::launchers(specs, &parent_env, sandbox.clone())?;
    let gate = Arc::new(FingerprintGate::new(secrets.store().clone()));
    let hub = Hub::start_gated(
        config.limits,
        backends,
        CancellationToken::new(),
        Some(gate.clone()),
    );
    tokio::spawn(refresh_approved(hub.clone(), gate));
    if let Some(runtime) = &sandbox {
        let mut current = BTreeMap::new();
        let store = secrets.store().clone();
        gig_gateway::installed::reconcile_once(&hub, &store, runtime, &reserved, &mut current)
            .await;
        tokio::spawn(gig_gateway::installed::keep_in_step(
            hub.clone(),
            store,
            runtime.clone(),
            reserved,
            current,
        ));
    }
    gig_gateway::run_hub(config, hub, gig_gateway::shutdown_signal()).await?;
    if let Some(runtime) = &sandbox {
        if !runtime
            .wait_all_stopped(std::time::Duration::from_secs(10))
            .await
        {
            tracing::warn!(
                "sandboxes still alive 10 s after shutdown; removing the firewall anyway"
            );
        }
        if let Some(egress) = runtime.egress() {
            egress.stop().await;
        }
    }
    secrets.store().close().await;
    Ok(())
}

/// The installer for `gigmcp install` and `GIG_INSTALL`: the signed index and its keys are
/// required; extracted images live under the data directory's public part.
fn installer(
    store: &StoreConfig,
    install: &InstallConfig,
    secrets: Option<Arc<Secrets>>,
) -> anyhow::Result<gig_registry::Installer> {
    let (Some(url), Some(keys)) = (&install.index_url, &install.index_pubkeys) else {
        bail!("installing needs GIG_INDEX_URL (the signed index) and GIG_INDEX_PUBKEYS (its keys)");
    };
    let keys = gig_registry_schema::TrustedKeys::parse_list(keys).context("GIG_INDEX_PUBKEYS")?;
    let store_handle = match &secrets {
        Some(s) => s.store().clone(),
        None => bail!("the vault is required to install (registry logins live in it)"),
    };
    gig_gateway::prepare_data_dir(&store.data_dir)?;
    let installer = gig_registry::Installer::new(
        store_handle,
        secrets,
        &gig_gateway::public_dir(&store.data_dir).join("oci"),
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

async fn install_cmd(config: StoreConfig, action: InstallAction) -> anyhow::Result<()> {
    let install = InstallConfig::from_env(&ProcessEnv)?;
    let secrets = Arc::new(open_secrets(&config).await?);
    match action {
        InstallAction::Install { reference } => {
            let installer = installer(&config, &install, Some(secrets.clone()))?;
            let record = installer
                .install(&reference, &|p| print_progress(&p))
                .await?;
            eprintln!();
            println!(
                "installed {} {} ({}); a running gateway starts it within seconds",
                record.name, record.version, record.image_digest
            );
        }
        InstallAction::Uninstall { name } => {
            if !secrets.store().delete_server(&name).await? {
                bail!("{name:?} is not installed");
            }
            println!("uninstalled {name}; a running gateway stops it within seconds");
        }
        InstallAction::List => {
            let servers = secrets.store().list_servers().await?;
            if servers.is_empty() {
                println!("no servers installed");
            }
            for s in servers {
                println!(
                    "{}\t{}\t{}\t{}",
                    s.name,
                    s.version,
                    s.state.as_str(),
                    s.image_digest
                );
            }
        }
    }
    secrets.store().close().await;
    Ok(())
}

/// One status line on stderr, rewritten in place: `pulling layer 1/2  1.2 MiB / 5.0 MiB`.
fn print_progress(progress: &gig_registry::InstallProgress) {
    use gig_registry::InstallProgress;
    use std::io::Write;
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let line = match progress {
        InstallProgress::Index => "verifying the signed index".to_string(),
        InstallProgress::Pull(p) if p.cached => "image already in the cache".to_string(),
        InstallProgress::Pull(p) if p.layer == 0 => "fetching manifest and config".to_string(),
        InstallProgress::Pull(p) => format!(
            "pulling layer {}/{}  {:.1} MiB / {:.1} MiB",
            p.layer,
            p.layers,
            mib(p.bytes_done),
            mib(p.bytes_total)
        ),
        InstallProgress::Extract => "extracting".to_string(),
        InstallProgress::Record => "recording the install".to_string(),
    };
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "\r\x1b[2K{line}");
    let _ = err.flush();
}

/// Shows a tool again soon after an operator approved its changed definition.
async fn refresh_approved(hub: Arc<Hub>, gate: Arc<FingerprintGate>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(2));
    loop {
        tick.tick().await;
        for backend in gate.approved_since().await {
            hub.refresh_backend(&backend);
        }
    }
}

async fn tools(config: StoreConfig, action: ToolsAction) -> anyhow::Result<()> {
    let store = open_store(&config).await?;
    match action {
        ToolsAction::List { server } => {
            let tools = store.list_fingerprints(&server).await?;
            if tools.is_empty() {
                println!("no tools recorded for {server:?} (it records them at its first start)");
            }
            for t in tools {
                let state = match &t.pending_fingerprint {
                    Some(p) => format!("CHANGED, hidden (pending {})", &p[..12.min(p.len())]),
                    None => "trusted".into(),
                };
                println!(
                    "{}\t{}\t{}",
                    t.tool,
                    &t.sha256[..12.min(t.sha256.len())],
                    state
                );
            }
        }
        ToolsAction::Approve { server, tool } => {
            let Some(fp) = store.get_fingerprint(&server, &tool).await? else {
                bail!("no tool {tool:?} is recorded for server {server:?}");
            };
            let Some(pending) = fp.pending_fingerprint else {
                bail!("{server}/{tool} has no changed definition waiting for approval");
            };
            store.approve_fingerprint(&server, &tool, &pending).await?;
            let detail = serde_json::json!({"tool": tool, "approved": pending});
            store
                .append_audit(&gig_store::AuditEntry {
                    actor: "operator",
                    action: "tool.definition_approved",
                    target: &format!("{server}/{tool}"),
                    result: "ok",
                    detail: &detail,
                })
                .await?;
            println!("approved the new definition of {server}/{tool}");
        }
    }
    store.close().await;
    Ok(())
}

fn read_value(file: Option<PathBuf>) -> anyhow::Result<Vec<u8>> {
    let mut value = Vec::new();
    match &file {
        Some(path) => std::fs::File::open(path)
            .with_context(|| format!("cannot read {}", path.display()))?
            .take(MAX_SECRET_BYTES + 1)
            .read_to_end(&mut value)?,
        None => std::io::stdin()
            .take(MAX_SECRET_BYTES + 1)
            .read_to_end(&mut value)?,
    };
    if value.len() as u64 > MAX_SECRET_BYTES {
        bail!("secret values are limited to {MAX_SECRET_BYTES} bytes");
    }
    // A trailing newline from `echo` or an editor is never part of a key.
    while value.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        value.pop();
    }
    if value.is_empty() {
        bail!("empty secret value");
    }
    Ok(value)
}

async fn secret(config: StoreConfig, action: SecretAction) -> anyhow::Result<()> {
    let secrets = open_secrets(&config).await?;
    let scope = |server| CredentialScope {
        server,
        user_id: None,
        profile_id: None,
    };
    match action {
        SecretAction::Set { server, name, file } => {
            let value = zeroize::Zeroizing::new(read_value(file)?);
            secrets.set(&scope(&server), &name, &value).await?;
            println!("stored {name} for {server}");
        }
        SecretAction::List { server } => {
            for meta in secrets.list(server.as_deref()).await? {
                println!(
                    "{}\t{}\tkey {}\tupdated {}",
                    meta.server, meta.name, meta.key_id, meta.updated_at
                );
            }
        }
        SecretAction::Delete { server, name } => {
            if !secrets.delete(&scope(&server), &name).await? {
                bail!("no secret {name} for {server}");
            }
            println!("deleted {name} for {server}");
        }
    }
    secrets.store().close().await;
    Ok(())
}

async fn rotate(config: StoreConfig, new_key_file: Option<PathBuf>) -> anyhow::Result<()> {
    let old = master_key("GIG_MASTER_KEY")?;
    let new = match new_key_file {
        Some(path) => {
            let text = zeroize::Zeroizing::new(
                std::fs::read_to_string(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?,
            );
            MasterKey::from_hex(text.trim())?
        }
        None => master_key("GIG_NEW_MASTER_KEY")?,
    };
    let store = open_store(&config).await?;
    let count = gig_secrets::rotate(&store, &old, &new).await?;
    store.close().await;
    println!("re-wrapped {count} secrets; set GIG_MASTER_KEY to the new key before the next start");
    Ok(())
}

/// The bootstrap binary bound into every sandbox: `GIG_BOOTSTRAP`, else the one installed next
/// to this executable.
fn bootstrap_path() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("GIG_BOOTSTRAP") {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe().context("cannot locate the gigmcp executable")?;
    Ok(exe.with_file_name("bootstrap"))
}

/// Bubblewrap, bootstrap and the host's cgroups, detected at start (with install advice when
/// something is missing). As root, bubblewrap runs as `nobody`, so the sandbox's uid maps to an
/// unprivileged host user and RLIMIT_NPROC binds.
fn sandbox_runtime() -> anyhow::Result<SandboxRuntime> {
    let mut spawner = gig_sandbox::BwrapSpawner::detect()?;
    if nix_is_root() {
        spawner.host_ids = Some((65534, 65534));
    }
    let runtime = SandboxRuntime::new(Arc::new(spawner), existing_bootstrap()?, "gigmcp");
    match runtime.describe() {
        (true, text) => tracing::info!("sandbox limits: {text}"),
        (false, text) => tracing::warn!("sandbox limits: {text}"),
    }
    Ok(runtime)
}

fn nix_is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
}

fn existing_bootstrap() -> anyhow::Result<PathBuf> {
    let path = bootstrap_path()?;
    if !path.is_file() {
        bail!(
            "the sandbox init {} is missing: build it with `make bootstrap` and set GIG_BOOTSTRAP",
            path.display()
        );
    }
    Ok(path)
}

/// `gigmcp sandbox exec`: the command runs through the same [`SandboxRuntime`] as a server,
/// with the default limits a declared server gets.
async fn sandbox_exec(
    bind_ro: Vec<PathBuf>,
    allow_host: Vec<String>,
    command: Vec<std::ffi::OsString>,
) -> anyhow::Result<i32> {
    let allow = allow_host
        .iter()
        .map(|h| {
            h.parse::<gig_policy::EgressRule>()
                .with_context(|| format!("--allow-host {h}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let Some((program, args)) = command.split_first() else {
        bail!("no command given");
    };
    let utf8 = |s: &std::ffi::OsString| {
        s.clone()
            .into_string()
            .map_err(|s| anyhow::anyhow!("argument {s:?} is not UTF-8"))
    };
    let command = StdioCommand {
        program: utf8(program)?,
        args: args.iter().map(utf8).collect::<Result<_, _>>()?,
        env: Default::default(),
        cwd: None,
    };
    let policy = SandboxPolicy {
        bind_ro,
        limits: gig_config::DEFAULT_LIMITS,
        egress: gig_policy::EgressPolicy {
            allow,
            ..Default::default()
        },
    };
    let launch = SandboxLaunch {
        command,
        policy,
        source: ProgramSource::HostPath,
    };
    let mut runtime = sandbox_runtime()?;
    let mut egress = None;
    if !launch.policy.egress.allow.is_empty() {
        // Its own links, table and /30: reclaiming at start must never touch a running
        // gateway's (or another exec's) sandboxes. Execs take free /30s of 198.18.255.0/24.
        let id = std::process::id();
        let config = EgressConfig::from_env(&ProcessEnv)?;
        let public = tempfile::Builder::new()
            .prefix("gigmcp-exec-")
            .tempdir()
            .context("creating a directory for the proxy's CA certificate")?;
        std::fs::set_permissions(
            public.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )?;
        let mut started = None;
        for attempt in 0..64u32 {
            let slot = (id.wrapping_add(attempt) % 64) as u8;
            let pool = format!("198.18.255.{}/30", slot * 4)
                .parse()
                .expect("valid /30");
            let net = NetConfig {
                pool,
                ifname_prefix: format!("gx{id}x"),
                nft_table: format!("gigmcp_exec_{id}"),
                ..NetConfig::default()
            };
            match Egress::start(
                &config,
                net,
                public.path(),
                Arc::new(gig_proxy::StaticSecrets::default()),
                Arc::new(gig_proxy::TracingAudit),
            )
            .await
            {
                Ok(egress) => {
                    started = Some(egress);
                    break;
                }
                // Another exec holds this /30: try the next.
                Err(e) if e.contains("overlaps") => continue,
                Err(e) => bail!("sandbox networking: {e}"),
            }
        }
        let started = started
            .context("sandbox networking: all 64 exec /30s of 198.18.255.0/24 are in use")?;
        let started = Arc::new(started);
        runtime = runtime.with_egress(started.clone());
        egress = Some((started, public));
    }
    let runtime = Arc::new(runtime);
    let mut running = match runtime.start("exec", &launch).await {
        Ok(running) => running,
        Err(e) => {
            if let Some((egress, _)) = &egress {
                egress.stop().await;
            }
            return Err(e.into());
        }
    };
    let sandbox = &mut running.sandbox;

    // Pass stdio through; the sandbox's pipes close when the command ends.
    let mut child_in = sandbox.child.stdin.take().context("no stdin pipe")?;
    let mut child_out = sandbox.child.stdout.take().context("no stdout pipe")?;
    let mut child_err = sandbox.child.stderr.take().context("no stderr pipe")?;
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut child_in);
    });
    let out =
        std::thread::spawn(move || std::io::copy(&mut child_out, &mut std::io::stdout().lock()));
    let err =
        std::thread::spawn(move || std::io::copy(&mut child_err, &mut std::io::stderr().lock()));
    // The wait blocks, and the proxy serving this sandbox runs on this runtime: wait off it.
    let (running, status) = tokio::task::spawn_blocking(move || {
        let status = running.sandbox.wait();
        (running, status)
    })
    .await?;
    let status = status?;
    let _ = out.join();
    let _ = err.join();
    drop(running);
    if let Some((egress, _ca_dir)) = egress {
        egress.stop().await;
    }
    Ok(status.code().unwrap_or(128 + 9))
}
