//! Which share of the host's sandbox networking this gateway owns, so two gateways on one host
//! (replicas, a test beside `make run`) never take each other's links, firewall table or
//! addresses for a crashed run's leftovers.
//!
//! A gateway claims the first free instance slot by locking `/run/gigmcp/net-<i>.lock` (an
//! advisory `flock`, held for the life of the process and released by the kernel when it dies,
//! however it dies). Slot `i` owns links named `gm<i>s<n>`, the table `inet gigmcp_<i>` and the
//! `i`-th equal part of `GIG_SANDBOX_POOL`. The names are prefix-free (`gm1s*` never matches
//! `gm15s…`), so no instance's firewall rules or reclaim touch another's. A restart after a crash
//! takes the freed slot and reclaims exactly what the crashed run left.

use std::fs::File;
use std::path::{Path, PathBuf};

use gig_netmgr::NetConfig;

/// Where the slot locks live: a tmpfs, so a reboot forgets them with the links they guarded.
pub const LOCK_DIR: &str = "/run/gigmcp";
/// At most this many gateways share one host's pool.
const MAX_INSTANCES: u8 = 16;
/// Every instance keeps at least this prefix length's worth of /30s (16 sandboxes).
const SMALLEST_SHARE: u8 = 26;

#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    #[error("cannot use the instance lock directory {path}: {source}")]
    LockDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "all {0} sandbox-networking slots of this host are taken by running gateways (or the pool is too small to share: give each gateway its own GIG_SANDBOX_POOL)"
    )]
    AllTaken(u8),
}

/// A claimed slot; dropping it releases the lock.
#[derive(Debug)]
pub struct NetInstance {
    pub index: u8,
    _lock: File,
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

/// Claims the first free slot under `lock_dir` for a gateway whose pool is `base.pool`.
pub fn claim(base: &NetConfig, lock_dir: &Path) -> Result<(NetConfig, NetInstance), InstanceError> {
    let dir_error = |source| InstanceError::LockDir {
        path: lock_dir.to_owned(),
        source,
    };
    std::fs::create_dir_all(lock_dir).map_err(dir_error)?;
    let count = instances_for(base.pool.prefix_len()).min(MAX_INSTANCES);
    for index in 0..count {
        let path = lock_dir.join(format!("net-{index}.lock"));
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(dir_error)?;
        match file.try_lock() {
            Ok(()) => {
                return Ok((
                    instance_config(base, index),
                    NetInstance { index, _lock: file },
                ));
            }
            Err(std::fs::TryLockError::WouldBlock) => continue,
            Err(std::fs::TryLockError::Error(e)) => return Err(dir_error(e)),
        }
    }
    Err(InstanceError::AllTaken(count))
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
        let dir = tempfile::tempdir().unwrap();
        let pool = base("198.19.0.0/16");
        let (first, held) = claim(&pool, dir.path()).unwrap();
        let (second, _held2) = claim(&pool, dir.path()).unwrap();
        assert_eq!((held.index, first.nft_table.as_str()), (0, "gigmcp_0"));
        assert_eq!(second.ifname_prefix, "gm1s");
        assert_eq!(first.pool.to_string(), "198.19.0.0/20");
        assert_eq!(second.pool.to_string(), "198.19.16.0/20");
        drop(held);
        let (again, _) = claim(&pool, dir.path()).unwrap();
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
        let dir = tempfile::tempdir().unwrap();
        let (_, _only) = claim(&small, dir.path()).unwrap();
        assert!(matches!(
            claim(&small, dir.path()),
            Err(InstanceError::AllTaken(1))
        ));
    }
}
