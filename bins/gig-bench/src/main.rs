//! `gig-bench`: the two measuring instruments `scripts/bench.sh` needs besides `wrk`.
//!
//! - `direct`: the baseline — an rmcp client keeping `--concurrency` `tools/call`s in flight
//!   over stdio to a server, checking every result.
//! - `canned`: the load generator's ceiling — an HTTP server that answers every POST with a
//!   fixed, valid `tools/call` result and does nothing else.
//!
//! Output is one JSON line per run, so the script can put the figures side by side.

#![forbid(unsafe_code)]

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

mod sandbox;
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::async_rw::AsyncRwTransport;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Sandbox start-up cost (plain child vs sandbox vs sandbox + network) and footprint.
    Sandbox {
        /// The server's executable (echo-mcp), reachable by `nobody` when run as root.
        #[arg(long)]
        server: std::path::PathBuf,
        /// The bootstrap binary (`make bootstrap`).
        #[arg(long)]
        bootstrap: std::path::PathBuf,
        #[arg(long, default_value_t = 50)]
        starts: usize,
        /// Sandboxed servers held open at once for the footprint measurement.
        #[arg(long, default_value_t = 20)]
        idle: usize,
    },
    /// Calls `echo` on a stdio MCP server directly.
    Direct {
        /// The server's executable (echo-mcp or echo-stdio).
        #[arg(long)]
        server: String,
        /// The tool argument carrying the text to echo (echo-mcp: `message`, echo-stdio: `text`).
        #[arg(long, default_value = "message")]
        arg_name: String,
        #[arg(long, default_value_t = 1)]
        concurrency: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long, default_value_t = 2)]
        warmup_seconds: u64,
    },
    /// Serves a canned `tools/call` result on every request.
    Canned {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
    },
    /// Seal and open of one 64-byte secret (µs per operation, median of 5 runs).
    Vault {
        #[arg(long, default_value_t = 20_000)]
        iterations: u32,
    },
    /// Store operations per second against a database URL (sqlite://PATH or postgres://...).
    Store {
        #[arg(long)]
        url: String,
        #[arg(long, default_value_t = 3)]
        seconds: u64,
    },
}

const CANNED: &str = r#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"bench"}],"isError":false}}"#;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Sandbox {
            server,
            bootstrap,
            starts,
            idle,
        } => sandbox::run(server, bootstrap, starts, idle).await,
        Command::Direct {
            server,
            arg_name,
            concurrency,
            seconds,
            warmup_seconds,
        } => direct(&server, &arg_name, concurrency, seconds, warmup_seconds).await,
        Command::Canned { listen } => canned(&listen).await,
        Command::Vault { iterations } => {
            vault(iterations);
            Ok(())
        }
        Command::Store { url, seconds } => store(&url, seconds).await,
    }
}

async fn canned(listen: &str) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    // The script reads the bound address from this line.
    println!("{}", listener.local_addr()?);
    let app = axum::Router::new().fallback(|| async {
        (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            CANNED,
        )
    });
    // As on the gateway: a response must never wait for the client's delayed ACK.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app).await?;
    Ok(())
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

async fn direct(
    server: &str,
    arg_name: &str,
    concurrency: usize,
    seconds: u64,
    warmup: u64,
) -> anyhow::Result<()> {
    let mut child = tokio::process::Command::new(server)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {server}"))?;
    let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        bail!("no stdio pipes");
    };
    let client = ().serve(AsyncRwTransport::new_client(stdout, stdin)).await?;
    let peer = client.peer().clone();

    let mut arguments = serde_json::Map::new();
    arguments.insert(arg_name.into(), "bench".into());
    let request = Arc::new(CallToolRequestParams::new("echo").with_arguments(arguments));

    let run = |phase: Duration| {
        let tasks: Vec<_> = (0..concurrency)
            .map(|_| {
                let peer = peer.clone();
                let request = request.clone();
                tokio::spawn(async move {
                    let mut latencies = Vec::new();
                    let mut bad = 0u64;
                    let end = Instant::now() + phase;
                    while Instant::now() < end {
                        let start = Instant::now();
                        let result = peer.call_tool((*request).clone()).await;
                        latencies.push(start.elapsed().as_micros().min(u32::MAX as u128) as u32);
                        let ok = result.as_ref().is_ok_and(|r| {
                            r.is_error != Some(true)
                                && r.content
                                    .first()
                                    .and_then(|c| c.as_text())
                                    .map(|t| t.text.as_str())
                                    == Some("bench")
                        });
                        bad += u64::from(!ok);
                    }
                    (latencies, bad)
                })
            })
            .collect();
        async move {
            let mut all = Vec::new();
            let mut bad = 0;
            for task in tasks {
                let (latencies, task_bad) = task.await.expect("bench task");
                all.extend(latencies);
                bad += task_bad;
            }
            (all, bad)
        }
    };

    run(Duration::from_secs(warmup)).await;
    let started = Instant::now();
    let (mut latencies, bad) = run(Duration::from_secs(seconds)).await;
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    println!(
        "{}",
        serde_json::json!({
            "mode": "direct",
            "concurrency": concurrency,
            "calls": latencies.len(),
            "bad": bad,
            "calls_per_s": latencies.len() as f64 / elapsed,
            "p50_us": percentile(&latencies, 50.0),
            "p99_us": percentile(&latencies, 99.0),
        })
    );
    client.cancel().await?;
    Ok(())
}

fn median(mut runs: Vec<f64>) -> f64 {
    runs.sort_by(f64::total_cmp);
    runs[runs.len() / 2]
}

fn vault(iterations: u32) {
    use gig_vault::{Aad, MasterKey, Vault};
    let vault = Vault::new(&MasterKey::generate());
    let aad = Aad {
        secret_id: "u:p",
        owner: "github",
        name: "TOKEN",
    };
    let secret = [7u8; 64];
    let sealed = vault.seal(&aad, &secret);
    let time = |f: &dyn Fn()| {
        median(
            (0..5)
                .map(|_| {
                    let start = Instant::now();
                    for _ in 0..iterations {
                        f();
                    }
                    start.elapsed().as_secs_f64() * 1e6 / f64::from(iterations)
                })
                .collect(),
        )
    };
    let seal_us = time(&|| {
        std::hint::black_box(vault.seal(&aad, &secret));
    });
    let open_us = time(&|| {
        std::hint::black_box(vault.open(&aad, &sealed).is_ok());
    });
    println!(
        "{}",
        serde_json::json!({"mode": "vault", "seal_us": seal_us, "open_us": open_us})
    );
}

/// Runs `op` repeatedly for `seconds` and returns operations per second.
async fn rate<F, Fut>(seconds: u64, mut op: F) -> anyhow::Result<f64>
where
    F: FnMut(u64) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let end = Instant::now() + Duration::from_secs(seconds);
    let start = Instant::now();
    let mut n = 0u64;
    while Instant::now() < end {
        op(n).await?;
        n += 1;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

async fn store(url: &str, seconds: u64) -> anyhow::Result<()> {
    use gig_store::{AuditEntry, CredentialScope, NewServer, ServerState, Store};
    let store = Store::open(url).await?;
    let secrets = gig_secrets::Secrets::open(store, &gig_vault::MasterKey::generate()).await?;
    let store = secrets.store();
    let manifest =
        serde_json::json!({"entrypoint": "/bin/echo-mcp", "egress": ["api.example.com"]});
    for i in 0..20 {
        store
            .upsert_server(&NewServer {
                name: &format!("server-{i}"),
                image_ref: "registry.example/echo",
                version: "1.0.0",
                image_digest: "sha256:0000000000000000000000000000000000000000000000000000000000000000",
                extracted_path: Some("/var/lib/gig/blobs/x"),
                manifest: &manifest,
                state: ServerState::Installed,
                index_version: 1,
            })
            .await?;
    }
    let secrets = &secrets;
    let insert_credential = rate(seconds, |n| {
        let name = format!("KEY_{n}");
        async move {
            let scope = CredentialScope {
                server: "bench",
                user_id: None,
                profile_id: None,
            };
            secrets
                .set(&scope, &name, b"sk-bench-0123456789abcdef0123456789")
                .await?;
            Ok(())
        }
    })
    .await?;
    let read_servers = rate(seconds, |_| async {
        anyhow::ensure!(store.list_servers().await?.len() == 20, "servers missing");
        Ok(())
    })
    .await?;
    let detail = serde_json::json!({"tool": "echo", "ms": 1});
    let append_audit = rate(seconds, |_| async {
        store
            .append_audit(&AuditEntry {
                actor: "bench",
                action: "tools/call",
                target: "echo/echo",
                result: "ok",
                detail: &detail,
            })
            .await?;
        Ok(())
    })
    .await?;
    println!(
        "{}",
        serde_json::json!({
            "mode": "store",
            "backend": format!("{:?}", store.kind()),
            "insert_credential_per_s": insert_credential,
            "read_servers_per_s": read_servers,
            "append_audit_per_s": append_audit,
        })
    );
    store.close().await;
    Ok(())
}
