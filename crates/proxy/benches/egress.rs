//! HTTPS through the egress proxy vs straight to the same loopback upstream, in one run.
//!
//! `cargo bench -p gig-proxy`. For each concurrency (1 and 32) each path runs for a fixed
//! time after a warm-up (so the leaf certificate is cached and connections are pooled), and
//! reports requests/s and p50/p99 latency; then the time to mint a leaf certificate.
//! The proxied path goes to a host with two credentials: every request is injected and its
//! response scrubbed (the worst case).
//!
//! With `GIG_BENCH_MITMDUMP=/path/to/mitmdump` (PyPI `mitmproxy`), the same workload also runs
//! through mitmproxy (TLS interception, upstream verified against the same test CA, no
//! injection or scrubbing), for comparison in the same run.

// Tests read their own switches (CI, GIG_REQUIRE_SANDBOX) and hand the environment to children.
#![allow(clippy::disallowed_methods)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use gig_proxy::{ProxyLimits, RuntimeCa};
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

/// The same workload through mitmproxy (mitmdump), against the same upstream by IP literal
/// (mitmproxy resolves names itself; the upstream's certificate covers 127.0.0.1).
async fn mitmproxy_points(mitmdump: &std::ffi::OsStr, ca: &TestCa, upstream: std::net::SocketAddr) {
    use base64::Engine;
    let dir = std::env::temp_dir().join(format!("gig-bench-mitm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pem = format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        base64::engine::general_purpose::STANDARD.encode(&ca.der)
    );
    let upstream_ca = dir.join("upstream-ca.pem");
    std::fs::write(&upstream_ca, pem).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = std::process::Command::new(mitmdump)
        .args([
            "-q",
            "--listen-host",
            "127.0.0.1",
            "--listen-port",
            &port.to_string(),
        ])
        .args(["--set", &format!("confdir={}", dir.display())])
        .args([
            "--set",
            &format!("ssl_verify_upstream_trusted_ca={}", upstream_ca.display()),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("starting mitmdump");
    let cert = dir.join("mitmproxy-ca-cert.pem");
    let deadline = Instant::now() + Duration::from_secs(30);
    while (std::net::TcpStream::connect(("127.0.0.1", port)).is_err() || !cert.exists())
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mitm_ca =
        reqwest::Certificate::from_pem(&std::fs::read(&cert).expect("mitmproxy CA")).unwrap();
    let url = format!("https://127.0.0.1:{}/", upstream.port());
    let direct = reqwest::Client::builder()
        .no_proxy()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_der(&ca.der).unwrap())
        .build()
        .unwrap();
    let through = reqwest::Client::builder()
        .proxy(reqwest::Proxy::all(format!("http://127.0.0.1:{port}")).unwrap())
        .tls_built_in_root_certs(false)
        .add_root_certificate(mitm_ca)
        .build()
        .unwrap();
    println!("mitmproxy (mitmdump, same upstream, no injection or scrubbing):");
    for concurrency in [1, 32] {
        compare("mitm", &direct, &through, &url, concurrency).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

/// One row: `direct` and `through` on the same URL at one concurrency, each after a warm-up.
async fn compare(
    label: &str,
    direct: &reqwest::Client,
    through: &reqwest::Client,
    url: &str,
    concurrency: usize,
) {
    drive(direct.clone(), url.to_owned(), concurrency, WARMUP).await;
    let d = drive(direct.clone(), url.to_owned(), concurrency, RUN).await;
    drive(through.clone(), url.to_owned(), concurrency, WARMUP).await;
    let x = drive(through.clone(), url.to_owned(), concurrency, RUN).await;
    println!(
        "{concurrency:>4} {label:>9} {:>11.0} {:>10.3?} {:>10.3?} | {:>11.0} {:>10.3?} {:>10.3?} | {:>6.1}% {:>11.3?}",
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

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let ca = TestCa::new();
        let up = Upstream::https(&ca, &[b"h2", b"http/1.1"]).await;
        let p = start_proxy(&ca, ProxyLimits::default());
        let sb = Sandbox::start(
            &p.proxy,
            "bench",
            policy(up.addr.port(), &[]),
            placeholders(),
        )
        .await;
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
            compare("", &direct, &proxied, &url, concurrency).await;
        }
        if let Some(mitmdump) = std::env::var_os("GIG_BENCH_MITMDUMP") {
            mitmproxy_points(&mitmdump, &ca, up.addr).await;
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
