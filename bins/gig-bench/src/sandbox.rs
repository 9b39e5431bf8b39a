//! `gig-bench sandbox`: the cost of the sandbox, measured against a plain child in one run.
//!
//! Start-up: spawn to the server answering `initialize`, for (a) a plain child process,
//! (b) the sandbox without network (bubblewrap + bootstrap + seccomp + cgroup), and (c) the
//! sandbox with network (plus veth pair in its netns, firewall allowance and proxy listener),
//! `starts` times each, median and p99. Footprint: `idle` sandboxed servers held open at once,
//! their processes' resident memory and this process's own growth (what the gateway pays).

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use gig_config::{EgressConfig, SandboxPolicy, StdioCommand};
use gig_runtime::{NetConfig, ProgramSource, SandboxLaunch, SandboxNetwork, SandboxRuntime};
use rmcp::ServiceExt;
use rmcp::transport::async_rw::AsyncRwTransport;

pub async fn run(
    server: PathBuf,
    bootstrap: PathBuf,
    starts: usize,
    idle: usize,
) -> anyhow::Result<()> {
    let program = server.display().to_string();
    let mut spawner = gig_sandbox::BwrapSpawner::detect()?;
    if std::fs::metadata("/proc/self").is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0) {
        spawner.host_ids = Some((65534, 65534));
    }
    let public = tempfile::Builder::new().prefix("gig-bench-ca-").tempdir()?;
    std::fs::set_permissions(
        public.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )?;
    let egress = SandboxNetwork::start(
        &EgressConfig::from_env(&std::collections::BTreeMap::<String, String>::new())?,
        NetConfig {
            pool: "198.18.240.0/22".parse()?,
            ifname_prefix: "gbench".into(),
            nft_table: "gigmcp_bench".into(),
            ..NetConfig::default()
        },
        public.path(),
        Arc::new(gig_proxy::StaticSecrets::default()),
        Arc::new(gig_proxy::TracingAudit),
    )
    .await
    .map_err(|e| anyhow::anyhow!("sandbox networking: {e}"))?;
    let egress = Arc::new(egress);
    let runtime = Arc::new(
        SandboxRuntime::new(Arc::new(spawner), bootstrap, "gigmcp-bench")
            .with_network(egress.clone()),
    );
    let allow: gig_policy::EgressRule = "example.test".parse()?;
    let launch = |network: bool| SandboxLaunch {
        command: StdioCommand {
            program: program.clone(),
            args: vec![],
            env: Default::default(),
            cwd: None,
        },
        policy: SandboxPolicy {
            bind_ro: vec![],
            limits: gig_config::DEFAULT_LIMITS,
            egress: gig_policy::EgressPolicy {
                allow: if network { vec![allow.clone()] } else { vec![] },
                ..Default::default()
            },
            instances: Default::default(),
        },
        source: ProgramSource::HostPath,
    };
    let (no_net, with_net) = (launch(false), launch(true));

    let mut plain = Vec::new();
    let mut sandboxed = Vec::new();
    let mut networked = Vec::new();
    // Interleaved, so drift on a shared machine hits all three alike.
    for _ in 0..starts {
        plain.push(plain_start(&server).await?);
        sandboxed.push(sandbox_start(&runtime, &no_net).await?);
        networked.push(sandbox_start(&runtime, &with_net).await?);
    }
    println!("spawn -> initialize answered, {starts} starts each (ms):");
    for (name, samples) in [
        ("plain child", &mut plain),
        ("sandbox, no network", &mut sandboxed),
        ("sandbox + veth + proxy", &mut networked),
    ] {
        let (p50, p99) = percentiles(samples);
        println!("  {name:<24} p50 {p50:>7.2}  p99 {p99:>7.2}");
    }
    let (base, _) = percentiles(&mut plain);
    let (s50, _) = percentiles(&mut sandboxed);
    let (n50, _) = percentiles(&mut networked);
    println!(
        "  added by the sandbox at p50: {:.2} ms (no network), {:.2} ms (with network)",
        s50 - base,
        n50 - base
    );

    if idle > 0 {
        let before = own_rss_kib()?;
        let mut held = Vec::new();
        for _ in 0..idle {
            held.push(start_initialized(&runtime, &with_net).await?);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let gateway_kib = own_rss_kib()?.saturating_sub(before);
        let mut sandbox_kib = 0;
        for (running, _) in &held {
            sandbox_kib += tree_rss_kib(running.sandbox.child.id());
        }
        let per = sandbox_kib as f64 / idle as f64;
        let gw_per = gateway_kib as f64 / idle as f64;
        let fits = (24.0 * 1024.0 * 1024.0) / (per + gw_per);
        println!(
            "{idle} idle sandboxed echo servers (with network): {:.1} MiB resident each (bwrap + bootstrap + server), gateway +{:.1} KiB each; a 24 GiB machine holds ~{:.0}",
            per / 1024.0,
            gw_per,
            fits
        );
        drop(held);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    egress.stop().await;
    Ok(())
}

async fn plain_start(server: &PathBuf) -> anyhow::Result<f64> {
    let start = Instant::now();
    let mut child = tokio::process::Command::new(server)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        bail!("no stdio pipes");
    };
    let client = ().serve(AsyncRwTransport::new_client(stdout, stdin)).await?;
    let elapsed = start.elapsed().as_secs_f64() * 1000.0;
    drop(client);
    Ok(elapsed)
}

type Initialized = (
    gig_runtime::RunningSandbox,
    rmcp::service::RunningService<rmcp::RoleClient, ()>,
);

/// Starts a sandboxed server and completes `initialize` with it.
async fn start_initialized(
    runtime: &Arc<SandboxRuntime>,
    launch: &SandboxLaunch,
) -> anyhow::Result<Initialized> {
    let mut running = runtime
        .start("bench", launch)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let stdin = running.sandbox.child.stdin.take().context("stdin")?;
    let stdout = running.sandbox.child.stdout.take().context("stdout")?;
    let client = ()
        .serve(AsyncRwTransport::new_client(
            tokio::process::ChildStdout::from_std(stdout)?,
            tokio::process::ChildStdin::from_std(stdin)?,
        ))
        .await?;
    Ok((running, client))
}

async fn sandbox_start(
    runtime: &Arc<SandboxRuntime>,
    launch: &SandboxLaunch,
) -> anyhow::Result<f64> {
    let start = Instant::now();
    let (running, client) = start_initialized(runtime, launch).await?;
    let elapsed = start.elapsed().as_secs_f64() * 1000.0;
    drop(client);
    tokio::task::spawn_blocking(move || drop(running)).await?;
    Ok(elapsed)
}

fn percentiles(samples: &mut [f64]) -> (f64, f64) {
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99))
}

fn own_rss_kib() -> anyhow::Result<u64> {
    rss_kib(std::process::id()).context("reading own VmRSS")
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// Resident memory of `pid` and all its descendants.
fn tree_rss_kib(pid: u32) -> u64 {
    let mut total = rss_kib(pid).unwrap_or(0);
    let children =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    for child in children.split_whitespace().filter_map(|c| c.parse().ok()) {
        total += tree_rss_kib(child);
    }
    total
}
