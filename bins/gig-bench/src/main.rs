//! `gig-bench`: the two measuring instruments `scripts/bench.sh` needs besides `wrk`.
//!
//! - `direct`: the baseline — an rmcp client keeping `--concurrency` `tools/call`s in flight
//!   over stdio to a server, checking every result.
//! - `canned`: the load generator's ceiling — an HTTP server that answers every POST with a
//!   fixed, valid `tools/call` result and does nothing else.
//!
//! Output is one JSON line per run, so the script can put the figures side by side.

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
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
    /// Calls `echo` on a stdio MCP server directly.
    Direct {
        /// The server's executable (echo-mcp).
        #[arg(long)]
        server: String,
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
}

const CANNED: &str = r#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"bench"}],"isError":false}}"#;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Direct {
            server,
            concurrency,
            seconds,
            warmup_seconds,
        } => direct(&server, concurrency, seconds, warmup_seconds).await,
        Command::Canned { listen } => canned(&listen).await,
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

async fn direct(server: &str, concurrency: usize, seconds: u64, warmup: u64) -> anyhow::Result<()> {
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
    arguments.insert("message".into(), "bench".into());
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
