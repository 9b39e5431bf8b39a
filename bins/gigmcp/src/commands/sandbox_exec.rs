//! `gigmcp sandbox exec`: a command in exactly the sandbox a server gets (namespaces,
//! bootstrap, seccomp, limits, and with `--allow-host` a veth pair and its own egress proxy),
//! through the same runtime as a server.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use gig_config::{EgressConfig, ProcessEnv, SandboxPolicy, StdioCommand};
use gig_runtime::{NetConfig, ProgramSource, SandboxLaunch, SandboxNetwork};

/// `gigmcp sandbox exec`: the command runs through the same [`SandboxRuntime`] as a server,
/// with the default limits a declared server gets.
pub async fn run(
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
        instances: Default::default(),
    };
    let launch = SandboxLaunch {
        command,
        policy,
        source: ProgramSource::HostPath,
    };
    let mut runtime = gig_server::boot::sandbox_runtime_from_env(&ProcessEnv)?;
    let mut egress = None;
    if !launch.policy.egress.allow.is_empty() {
        let (started, public) = exec_network().await?;
        let started = Arc::new(started);
        runtime = runtime.with_network(started.clone());
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

/// Networking for one exec: its own links, table and /30, so reclaiming at start never touches
/// a running gateway's (or another exec's) sandboxes. Execs take free /30s of 198.18.255.0/24.
/// The directory holds the proxy's CA certificate and lives as long as the exec.
async fn exec_network() -> anyhow::Result<(SandboxNetwork, tempfile::TempDir)> {
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
        match SandboxNetwork::start(
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
            Err(e) if e.is_pool_in_use() => continue,
            Err(e) => bail!("sandbox networking: {e}"),
        }
    }
    let started =
        started.context("sandbox networking: all 64 exec /30s of 198.18.255.0/24 are in use")?;
    Ok((started, public))
}
