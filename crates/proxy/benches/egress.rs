//! HTTPS through the egress proxy vs straight to the same loopback upstream, in one run.
//!
//! `cargo bench -p gig-proxy`. For each concurrency (1 and 32) each path runs for a fixed
//! time after a warm-up (so the leaf certificate is cached and connections are pooled), and
//! reports requests/s and p50/p99 latency; then the time to mint a leaf certificate.
//! The proxied path goes to a host with two credentials: every request is injected and its
//! response scrubbed (the worst case).

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use gig_proxy::{Limits, RuntimeCa};
use support::*;

const RUN: Duration = Duration::from_secs(3);
const WARMUP: Duration = Duration::from_millis(500);

struct Point {
    rps: f64,
    p50: Duration,
    p99: Duration,
}

async fn drive(client: reqwest::Client, url: String, concurrency: usize, time: Duration) -> Point {
    let deadline = Instant::now() + time;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, url) = (client.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                let resp = client.get(&url).send().await.expect("request failed");
                assert_eq!(resp.status(), 200);
                resp.bytes().await.expect("body failed");
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let elapsed = started.elapsed();
    all.sort();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    Point {
        rps: all.len() as f64 / elapsed.as_secs_f64(),
        p50: pct(0.50),
        p99: pct(0.99),
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let ca = TestCa::new();
        let up = Upstream::https(&ca, &[b"h2", b"http/1.1"]).await;
        let p = start_proxy(&ca, Limits::default());
        let sb = Sandbox::start(&p.proxy, "bench", policy(up.addr.port(), &[]), placeholders()).await;
        let url = format!("https://api.example.test:{}/", up.addr.port());
        let direct = reqwest::Client::builder()
            .no_proxy()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_der(&ca.der).unwrap())
            .resolve("api.example.test", up.addr)
            .build()
            .unwrap();
        let proxied = sb.client(&p.proxy, false);
        println!("HTTPS GET, h2 client, loopback upstream (h2), {RUN:?} per point");
        println!(
            "{:>4} {:>9} {:>11} {:>10} {:>10} | {:>11} {:>10} {:>10} | {:>7} {:>11}",
            "conc", "", "direct r/s", "p50", "p99", "proxy r/s", "p50", "p99", "ratio", "added p50"
        );
        for concurrency in [1, 32] {
            drive(direct.clone(), url.clone(), concurrency, WARMUP).await;
            let d = drive(direct.clone(), url.clone(), concurrency, RUN).await;
            drive(proxied.clone(), url.clone(), concurrency, WARMUP).await;
            let x = drive(proxied.clone(), url.clone(), concurrency, RUN).await;
            println!(
                "{concurrency:>4} {:>9} {:>11.0} {:>10.3?} {:>10.3?} | {:>11.0} {:>10.3?} {:>10.3?} | {:>6.1}% {:>11.3?}",
                "",
                d.rps,
                d.p50,
                d.p99,
                x.rps,
                x.p50,
                x.p99,
                100.0 * x.rps / d.rps,
                x.p50.saturating_sub(d.p50),
            );
        }
        let total = up.count();
        println!("(upstream served {total} requests)");
    });

    let ca = RuntimeCa::generate().unwrap();
    let n = 200u32;
    let t = Instant::now();
    for i in 0..n {
        ca.mint_leaf(&format!("host{i}.example.test")).unwrap();
    }
    println!(
        "leaf minting (ECDSA P-256 key + signature): {:?} per leaf",
        t.elapsed() / n
    );
    let _ = Arc::new(());
}
