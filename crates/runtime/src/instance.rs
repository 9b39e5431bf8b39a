//! Which share of the host's sandbox networking this gateway owns, so two gateways on one host
//! (replicas, a test beside `make run`) never take each other's links, firewall table or
//! addresses for a crashed run's leftovers.
//!
//! A gateway claims the first free instance slot by binding the abstract Unix socket
//! `gigmcp-net-<i>`: held for the life of the process and released by the kernel when it dies,
//! however it dies; scoped to the network namespace, which is exactly where link and table names
//! live (a gateway in a host-network container shares the host's); no file, so nothing for
//! another user to hold open or to plant a link in. Slot `i` owns links named `gm<i>s<n>`, the
//! table `inet gigmcp_<i>` and the `i`-th equal part of `GIG_SANDBOX_POOL`. The names are
//! prefix-free (`gm1s*` never matches `gm15s…`), so no instance's firewall rules or reclaim
//! touch another's. A restart after a crash takes the freed slot and reclaims exactly what the
//! crashed run left. Gateways on one host are meant to share one pool (the default).

use std::os::linux::net::SocketAddrExt as _;
use std::os::unix::net::{SocketAddr, UnixListener};

use gig_netmgr::NetConfig;

/// The abstract socket names of the slots: `<LOCK_NAME>-<i>`.
pub const LOCK_NAME: &str = "gigmcp-net";
/// At most this many gateways share one host's pool.
const MAX_INSTANCES: u8 = 16;
/// Every instance keeps at least this prefix length's worth of /30s (16 sandboxes).
const SMALLEST_SHARE: u8 = 26;

#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    #[error("cannot take a sandbox-networking slot: {0}")]
    Lock(std::io::Error),
    #[error(
        "all {0} sandbox-networking slots of this host are taken by running gateways (a pool larger than a /26 gives more: GIG_SANDBOX_POOL)"
    )]
    AllTaken(u8),
}

/// A claimed slot; dropping it releases the lock.
#[derive(Debug)]
pub struct NetInstance {
    pub index: u8,
    _lock: UnixListener,
}

/// How many gateways can share `pool`: up to 16, each keeping at least a /26.
fn instances_for(pool_len: u8) -> u8 {
    if pool_len >= SMALLEST_SHARE {
        return 1;
    }
    let bits = (SMALLEST_SHARE - pool_len).min(4);
    1 << bits
}

/// The names and addresses of slot `index` of `base`.
pub fn instance_config(base: &NetConfig, index: u8) -> NetConfig {
    let count = instances_for(base.pool.prefix_len());
    let bits = count.trailing_zeros() as u8;
    let pool = base
        .pool
        .subnets(base.pool.prefix_len() + bits)
        .ok()
        .and_then(|mut parts| parts.nth(usize::from(index)))
        .unwrap_or(base.pool);
    NetConfig {
        pool,
        ifname_prefix: format!("gm{index}s"),
        nft_table: format!("gigmcp_{index}"),
        nft_path: base.nft_path.clone(),
    }
}

/// Claims the first free slot (named `<lock_name>-<i>`) for a gateway whose pool is
/// `base.pool`.
pub fn claim(base: &NetConfig, lock_name: &str) -> Result<(NetConfig, NetInstance), InstanceError> {
    let count = instances_for(base.pool.prefix_len()).min(MAX_INSTANCES);
    for index in 0..count {
        if let Some(lock) =
            try_lock(&format!("{lock_name}-{index}")).map_err(InstanceError::Lock)?
        {
            return Ok((
                instance_config(base, index),
                NetInstance { index, _lock: lock },
            ));
        }
    }
    Err(InstanceError::AllTaken(count))
}

/// Binds the abstract Unix socket `name`: the lock on whatever it names, held while the
/// listener lives and released by the kernel when the process dies. `None`: another process
/// (or this one) holds it.
pub(crate) fn try_lock(name: &str) -> std::io::Result<Option<UnixListener>> {
    let addr = SocketAddr::from_abstract_name(name.as_bytes())?;
    match UnixListener::bind_addr(&addr) {
        Ok(lock) => Ok(Some(lock)),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(pool: &str) -> NetConfig {
        NetConfig {
            pool: pool.parse().unwrap(),
            ..NetConfig::default()
        }
    }

    #[test]
    fn slots_are_claimed_in_turn_and_freed_on_drop() {
        let name = format!("gigmcp-test-{}", std::process::id());
        let pool = base("198.19.0.0/16");
        let (first, held) = claim(&pool, &name).unwrap();
        let (second, _held2) = claim(&pool, &name).unwrap();
        assert_eq!((held.index, first.nft_table.as_str()), (0, "gigmcp_0"));
        assert_eq!(second.ifname_prefix, "gm1s");
        assert_eq!(first.pool.to_string(), "198.19.0.0/20");
        assert_eq!(second.pool.to_string(), "198.19.16.0/20");
        drop(held);
        let (again, _) = claim(&pool, &name).unwrap();
        assert_eq!(again.nft_table, "gigmcp_0", "a freed slot is taken again");
    }

    #[test]
    fn shares_are_disjoint_and_names_prefix_free() {
        let pool = base("198.19.0.0/16");
        let configs: Vec<NetConfig> = (0..16).map(|i| instance_config(&pool, i)).collect();
        for (i, a) in configs.iter().enumerate() {
            for b in &configs[i + 1..] {
                assert!(!a.pool.contains(&b.pool.network()) && !b.pool.contains(&a.pool.network()));
                assert!(!b.ifname_prefix.starts_with(&a.ifname_prefix));
                assert!(!a.ifname_prefix.starts_with(&b.ifname_prefix));
            }
        }
        assert_eq!(instances_for(24), 4, "a /24 is shared by four /26s");
        assert_eq!(instances_for(26), 1);
        let small = base("198.19.203.0/26");
        let name = format!("gigmcp-test-small-{}", std::process::id());
        let (_, _only) = claim(&small, &name).unwrap();
        assert!(matches!(
            claim(&small, &name),
            Err(InstanceError::AllTaken(1))
        ));
    }
}
