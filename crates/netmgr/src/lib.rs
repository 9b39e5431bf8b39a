//! Per-sandbox networking on the host: a /30 and a veth pair per sandbox, whose `eth0` end is
//! created directly in the sandbox's network namespace (moving a veth afterwards costs an RCU
//! barrier), and an nftables table under which a sandbox reaches exactly one thing: TCP to the
//! egress proxy's port on its own host-side address. Not other host addresses or services, not
//! other sandboxes, nothing forwarded, no IPv6, UDP or ICMP, whatever the host's `ip_forward`.
//!
//! Links go through netlink (`rtnetlink`); the firewall through `nft -f -` (see `firewall`).
//! Needs CAP_NET_ADMIN in the host's network namespace ([`check_host`] says what is missing).
//! The sandbox side (address, default route, `lo` up, IPv6 off) is configured from the host
//! too, by a short-lived thread that has `setns`'d into the sandbox's netns while bubblewrap is
//! held at `--block-fd` (see `inside`, and decision 30 in docs/design/sandbox.md): nothing inside
//! the sandbox could, and the sandbox never holds CAP_NET_ADMIN. `bootstrap` only checks that
//! `eth0` carries the expected address and exits 76 otherwise. This crate never touches links
//! or tables outside its own name prefix and table, and never depends on the gateway.

#![forbid(unsafe_code)]

mod firewall;
mod inside;
mod link;
mod pool;
#[cfg(test)]
mod tests;

use std::fmt;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

pub use ipnet::Ipv4Net;

pub use crate::firewall::{allow_element, firewall_ruleset};
pub use crate::pool::Slot;

use crate::firewall::Nft;
use crate::pool::Pool;

/// Name of the sandbox-side end, inside the sandbox's netns.
pub const SANDBOX_IFNAME: &str = "eth0";
/// Prefix length of every sandbox link.
pub const PREFIX_LEN: u8 = 30;
/// Linux's IFNAMSIZ minus the terminating NUL.
const MAX_IFNAME_LEN: usize = 15;

/// Default pool: 198.19.0.0/16, the upper half of 198.18.0.0/15 (RFC 2544, benchmarking), which
/// is never routed on the Internet and collides with none of the ranges hosts commonly use (the
/// RFC 1918 LANs, 100.64/10 CGNAT and Tailscale, 169.254/16 link-local and cloud metadata). The
/// lower half, 198.18.0.0/16, is left alone because fake-IP DNS modes of common proxy tools
/// (Clash, sing-box, Surge) default to it. 16 384 sandboxes.
pub fn default_pool() -> Ipv4Net {
    Ipv4Net::new(Ipv4Addr::new(198, 19, 0, 0), 16).unwrap_or_default()
}

/// What a manager owns. Two managers on one host must differ in all three (pool, prefix, table);
/// a manager treats every `<prefix><digits>` link it finds at start as stale and deletes it.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// Where the /30s come from.
    pub pool: Ipv4Net,
    /// Host-side links are `<prefix><slot index>`; the firewall matches `<prefix>*`, so no
    /// other interface on the host may start with it.
    pub ifname_prefix: String,
    /// The `inet` table this manager owns (flushed and recreated at start).
    pub nft_table: String,
    /// The `nft` binary; `None` looks in `PATH` and the usual sbin directories.
    pub nft_path: Option<PathBuf>,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            pool: default_pool(),
            ifname_prefix: "gigmcp".to_string(),
            nft_table: "gigmcp".to_string(),
            nft_path: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("invalid network config: {0}")]
    Config(String),
    #[error("configuring the sandbox's side of its link: {step}: {reason}")]
    Inside { step: &'static str, reason: String },
    #[error("host cannot run sandbox networking: {0}")]
    Host(String),
    #[error("pool {pool} overlaps {address} already configured on interface index {ifindex}")]
    PoolInUse {
        pool: Ipv4Net,
        address: String,
        ifindex: u32,
    },
    #[error("address pool {pool} is exhausted: all {slots} /30s are in use")]
    PoolExhausted { pool: Ipv4Net, slots: usize },
    #[error("cannot open the network namespace of pid {pid}: {source}")]
    Netns { pid: u32, source: std::io::Error },
    #[error(
        "refusing to attach pid {0}: it shares the gateway's network namespace (was the sandbox started without a new netns?)"
    )]
    SharedNetns(u32),
    #[error("opening a netlink socket: {0}")]
    Connection(std::io::Error),
    #[error("netlink: {step} {ifname}: {source}")]
    Netlink {
        step: &'static str,
        ifname: String,
        source: rtnetlink::Error,
    },
    #[error("writing {path}: {source}")]
    Sysctl {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("running {path:?}: {source}")]
    NftSpawn {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("nft failed to {action}: {detail}")]
    Nft {
        action: &'static str,
        detail: String,
    },
}

/// What a new manager removed from a previous (crashed) one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReclaimReport {
    pub removed_links: Vec<String>,
    pub removed_table: bool,
}

/// Validated config, shared by the manager and every live [`SandboxNet`].
struct Inner {
    config: NetConfig,
    nft: Nft,
    handle: rtnetlink::Handle,
    pool: Mutex<Pool>,
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inner")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Creates and removes sandbox links and their firewall allowances. Cheap to clone.
#[derive(Debug, Clone)]
pub struct NetManager {
    inner: Arc<Inner>,
    reclaimed: ReclaimReport,
}

impl NetManager {
    /// Validates the config, checks the host ([`check_host`]), removes what a previous manager
    /// with the same prefix and table left behind, and installs a fresh firewall table.
    /// Must be called inside a tokio runtime (the netlink connection runs as a task).
    pub async fn new(config: NetConfig) -> Result<Self, NetError> {
        validate(&config)?;
        let nft_path = check_host(&config)?;
        let (conn, handle, _) = rtnetlink::new_connection().map_err(NetError::Connection)?;
        tokio::spawn(conn);
        let nft = Nft::new(nft_path);

        let removed_links = link::delete_stale(&handle, &config.ifname_prefix).await?;
        link::refuse_pool_overlap(&handle, config.pool).await?;
        let removed_table = nft.table_exists(&config.nft_table).await?;
        nft.apply(
            "install the sandbox firewall table",
            &firewall::replace_table_script(&config.nft_table, &config.ifname_prefix),
        )
        .await?;
        if !removed_links.is_empty() || removed_table {
            tracing::info!(
                ?removed_links,
                removed_table,
                "reclaimed stale sandbox networking"
            );
        }
        let pool = Mutex::new(Pool::new(config.pool));
        Ok(NetManager {
            inner: Arc::new(Inner {
                config,
                nft,
                handle,
                pool,
            }),
            reclaimed: ReclaimReport {
                removed_links,
                removed_table,
            },
        })
    }

    /// What [`NetManager::new`] removed.
    pub fn reclaimed(&self) -> &ReclaimReport {
        &self.reclaimed
    }

    pub fn config(&self) -> &NetConfig {
        &self.inner.config
    }

    /// Takes a /30 for a sandbox about to start, so its addresses (the proxy's address goes into
    /// its environment) are known before it exists. Nothing is created until
    /// [`NetManager::attach_reserved`]; dropping or tearing down the reservation frees it.
    pub fn reserve(&self, proxy_port: u16) -> Result<SandboxNet, NetError> {
        let slot = {
            let mut pool = self.inner.pool.lock().unwrap_or_else(|p| p.into_inner());
            pool.allocate().ok_or_else(|| NetError::PoolExhausted {
                pool: self.inner.config.pool,
                slots: pool.capacity(),
            })?
        };
        Ok(SandboxNet {
            host_addr: slot.host_addr,
            sandbox_addr: slot.sandbox_addr,
            prefix_len: PREFIX_LEN,
            host_ifname: format!("{}{}", self.inner.config.ifname_prefix, slot.index),
            sandbox_ifname: SANDBOX_IFNAME.to_string(),
            proxy_port,
            slot: slot.index,
            owner: Some(self.inner.clone()),
        })
    }

    /// Wires a reservation to the sandbox whose init has pid `child_pid` (still blocked, in its
    /// own netns): `eth0` is created inside with `sandbox_addr/30`, a default route via
    /// `host_addr`, `lo` up and IPv6 off; `<prefix><n>` outside with `host_addr/30`, IPv6
    /// disabled, up, and the firewall allowance for `host_addr:proxy_port`. On error, tear the
    /// reservation down (nothing else is left behind).
    pub async fn attach_reserved(&self, net: &SandboxNet, child_pid: u32) -> Result<(), NetError> {
        let netns = open_foreign_netns(child_pid)?;
        self.inner.setup(net, &netns).await?;
        inside::configure(&netns, net.sandbox_addr, net.host_addr).await
    }

    /// [`NetManager::reserve`] and [`NetManager::attach_reserved`] in one step.
    pub async fn attach(&self, child_pid: u32, proxy_port: u16) -> Result<SandboxNet, NetError> {
        // Checked before taking a slot, so a bad pid costs nothing.
        open_foreign_netns(child_pid)?;
        let net = self.reserve(proxy_port)?;
        match self.attach_reserved(&net, child_pid).await {
            Ok(()) => Ok(net),
            Err(e) => {
                // Dropping `net` here would schedule the same cleanup; do it in line instead.
                net.teardown().await;
                Err(e)
            }
        }
    }

    /// How many sandboxes the pool holds.
    pub fn capacity(&self) -> usize {
        self.inner
            .pool
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .capacity()
    }

    /// Deletes the firewall table (links go with their sandboxes or with [`SandboxNet`]).
    /// For a clean gateway shutdown and for tests; a crash is handled by the next `new`.
    pub async fn remove_firewall(&self) -> Result<(), NetError> {
        self.inner
            .nft
            .apply(
                "delete the sandbox firewall table",
                &firewall::delete_table_script(&self.inner.config.nft_table),
            )
            .await
    }
}

impl Inner {
    async fn setup(&self, net: &SandboxNet, netns: &OwnedFd) -> Result<(), NetError> {
        // Allowance first: the wildcard drop already covers the link from its creation, so
        // this order only means the link works the moment it is up.
        self.nft
            .apply(
                "add a sandbox allowance",
                &format!(
                    "add {}\n",
                    allow_element(
                        &self.config.nft_table,
                        &net.host_ifname,
                        net.sandbox_addr,
                        net.host_addr,
                        net.proxy_port,
                    )
                ),
            )
            .await?;
        let index = link::create_veth(
            &self.handle,
            &net.host_ifname,
            SANDBOX_IFNAME,
            netns.as_raw_fd(),
        )
        .await?;
        link::harden_host_end(&net.host_ifname)?;
        link::address_and_up(&self.handle, index, &net.host_ifname, net.host_addr).await
    }

    /// Best effort and idempotent: the link may already be gone with its netns. The link and
    /// the allowance go concurrently (both wait on kernel RCU work); a link without its
    /// allowance is dropped by the wildcard rule, so the order does not matter for safety.
    async fn teardown(&self, net: &SandboxNet) {
        let script = format!(
            "delete {}\n",
            allow_element(
                &self.config.nft_table,
                &net.host_ifname,
                net.sandbox_addr,
                net.host_addr,
                net.proxy_port,
            )
        );
        let (link, element) = tokio::join!(
            link::delete_by_name(&self.handle, &net.host_ifname),
            self.nft.apply("remove a sandbox allowance", &script),
        );
        if let Err(e) = element {
            // Missing element (never added, or table recreated): nothing to remove.
            tracing::debug!(ifname = %net.host_ifname, error = %e, "removing allowance");
        }
        if let Err(e) = link {
            // The slot stays taken: reusing it would collide with the leftover link, which
            // the next manager's reclaim removes.
            tracing::warn!(ifname = %net.host_ifname, error = %e, "deleting sandbox link");
            return;
        }
        self.pool
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .release(net.slot);
    }
}

/// One sandbox's link. Call [`SandboxNet::teardown`] when the sandbox ends; dropping it without
/// that schedules the teardown on the current tokio runtime (or leaves it to the next
/// manager's reclaim when there is none).
#[derive(Debug)]
pub struct SandboxNet {
    pub host_addr: Ipv4Addr,
    pub sandbox_addr: Ipv4Addr,
    pub prefix_len: u8,
    pub host_ifname: String,
    pub sandbox_ifname: String,
    pub proxy_port: u16,
    slot: u32,
    owner: Option<Arc<Inner>>,
}

impl SandboxNet {
    /// Deletes the link (which deletes its `eth0` peer) and the firewall allowance, then frees
    /// the /30. Never fails: what cannot be removed is logged and reclaimed at the next start.
    pub async fn teardown(mut self) {
        if let Some(owner) = self.owner.take() {
            owner.teardown(&self).await;
        }
    }
}

impl Drop for SandboxNet {
    fn drop(&mut self) {
        let Some(owner) = self.owner.take() else {
            return;
        };
        let orphan = SandboxNet {
            host_addr: self.host_addr,
            sandbox_addr: self.sandbox_addr,
            prefix_len: self.prefix_len,
            host_ifname: std::mem::take(&mut self.host_ifname),
            sandbox_ifname: std::mem::take(&mut self.sandbox_ifname),
            proxy_port: self.proxy_port,
            slot: self.slot,
            owner: None,
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move { owner.teardown(&orphan).await });
            }
            Err(_) => tracing::warn!(
                ifname = %orphan.host_ifname,
                "sandbox link dropped outside a runtime; the next start reclaims it"
            ),
        }
    }
}

/// Checks that this process can do what a [`NetManager`] does: CAP_NET_ADMIN and a working
/// `nft`. Returns the `nft` path. The messages say how to fix what is missing.
pub fn check_host(config: &NetConfig) -> Result<PathBuf, NetError> {
    const CAP_NET_ADMIN: u32 = 12;
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| NetError::Host(format!("reading /proc/self/status: {e}")))?;
    let cap_eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .ok_or_else(|| NetError::Host("no CapEff line in /proc/self/status".into()))?;
    if cap_eff & (1 << CAP_NET_ADMIN) == 0 {
        return Err(NetError::Host(
            "CAP_NET_ADMIN is missing: run the gateway as root or grant it \
             (e.g. systemd AmbientCapabilities=CAP_NET_ADMIN)"
                .into(),
        ));
    }
    let nft = match &config.nft_path {
        Some(p) => p.clone(),
        None => firewall::find_nft().ok_or_else(|| {
            NetError::Host(
                "nft (nftables) not found in PATH, /usr/sbin or /sbin: install it \
                 (Debian/Ubuntu: apt-get install nftables)"
                    .into(),
            )
        })?,
    };
    let out = std::process::Command::new(&nft)
        .args(["list", "tables"])
        .env_clear()
        .output()
        .map_err(|e| NetError::Host(format!("running {}: {e}", nft.display())))?;
    if !out.status.success() {
        return Err(NetError::Host(format!(
            "{} cannot talk to the kernel's nftables (kernel without nf_tables, or no \
             CAP_NET_ADMIN in this network namespace): {}",
            nft.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(nft)
}

fn validate(config: &NetConfig) -> Result<(), NetError> {
    let bad = |m: String| Err(NetError::Config(m));
    let pool = config.pool;
    if pool.prefix_len() > PREFIX_LEN {
        return bad(format!("pool {pool} is smaller than one /30"));
    }
    if pool.prefix_len() < 8 {
        return bad(format!("pool {pool} is larger than a /8"));
    }
    let forbidden = [
        ("0.0.0.0/8", "\"this\" network"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local and cloud metadata"),
        ("224.0.0.0/3", "multicast and reserved"),
    ];
    for (net, what) in forbidden {
        let net: Ipv4Net = net.parse().unwrap_or_default();
        if net.contains(&pool.network()) || pool.contains(&net.network()) {
            return bad(format!("pool {pool} overlaps {net} ({what})"));
        }
    }
    let prefix = &config.ifname_prefix;
    let max_index = (1u64 << (30 - u32::from(pool.prefix_len()))) - 1;
    let digits = max_index.to_string().len();
    if !prefix.starts_with(|c: char| c.is_ascii_lowercase())
        || !prefix
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    {
        return bad(format!(
            "interface prefix {prefix:?} must be lowercase ASCII letters and digits, starting with a letter"
        ));
    }
    if prefix.len() + digits > MAX_IFNAME_LEN {
        return bad(format!(
            "interface prefix {prefix:?} plus {digits} index digits exceeds {MAX_IFNAME_LEN} characters"
        ));
    }
    if SANDBOX_IFNAME.starts_with(prefix.as_str()) || "lo".starts_with(prefix.as_str()) {
        return bad(format!(
            "interface prefix {prefix:?} would match eth0 or lo"
        ));
    }
    let table = &config.nft_table;
    if table.is_empty()
        || table.len() > 32
        || !table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return bad(format!(
            "nft table name {table:?} must be 1-32 ASCII letters, digits or '_'"
        ));
    }
    Ok(())
}

/// Opens `/proc/<pid>/ns/net` (holding the fd pins that namespace even if the pid is reused)
/// and refuses our own namespace: creating `eth0` on the host would be a misconfiguration.
fn open_foreign_netns(pid: u32) -> Result<OwnedFd, NetError> {
    let path = format!("/proc/{pid}/ns/net");
    let netns = std::fs::File::open(&path).map_err(|source| NetError::Netns { pid, source })?;
    let theirs = netns
        .metadata()
        .map_err(|source| NetError::Netns { pid, source })?;
    let ours =
        std::fs::metadata("/proc/self/ns/net").map_err(|source| NetError::Netns { pid, source })?;
    if (theirs.dev(), theirs.ino()) == (ours.dev(), ours.ino()) {
        return Err(NetError::SharedNetns(pid));
    }
    Ok(netns.into())
}
