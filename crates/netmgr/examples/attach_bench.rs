//! Times `attach` (veth created in the netns + host address + up + firewall element) and
//! `teardown`, median and p99 over N sandboxes (default 50). Root only; uses its own prefix,
//! table and pool (198.18.249.0/24), and removes everything it made.
//!
//!     cargo run --release -p gig-netmgr --example attach_bench [N]

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use gig_netmgr::{NetConfig, NetManager};

struct Netns(Child);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn netns() -> Netns {
    let ns = Netns(
        Command::new("unshare")
            .args(["--net", "sleep", "1000"])
            .spawn()
            .expect("spawning unshare"),
    );
    let ours = std::fs::read_link("/proc/self/ns/net").expect("own netns");
    while std::fs::read_link(format!("/proc/{}/ns/net", ns.0.id())).ok() == Some(ours.clone()) {
        std::thread::sleep(Duration::from_millis(1));
    }
    ns
}

fn stats(name: &str, mut v: Vec<Duration>) {
    v.sort();
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    println!(
        "{name:<9} n={} median={:?} p99={:?} min={:?} max={:?}",
        v.len(),
        at(0.5),
        at(0.99),
        v[0],
        v[v.len() - 1]
    );
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("N must be a number"))
        .unwrap_or(50);
    let manager = NetManager::new(NetConfig {
        pool: "198.18.249.0/24".parse().expect("pool"),
        ifname_prefix: "nmb".into(),
        nft_table: "gignetmgrbench".into(),
        nft_path: None,
    })
    .await
    .expect("NetManager::new (run as root with nft installed)");
    let namespaces: Vec<Netns> = (0..n).map(|_| netns()).collect();

    let mut attach = Vec::with_capacity(n);
    let mut nets = Vec::with_capacity(n);
    for ns in &namespaces {
        let t = Instant::now();
        let net = manager.attach(ns.0.id(), 3128).await.expect("attach");
        attach.push(t.elapsed());
        nets.push(net);
    }
    let mut teardown = Vec::with_capacity(n);
    for net in nets {
        let t = Instant::now();
        net.teardown().await;
        teardown.push(t.elapsed());
    }
    manager
        .remove_firewall()
        .await
        .expect("removing the bench table");
    stats("attach", attach);
    stats("teardown", teardown);
}
