//! A host uid/gid of its own for every running sandbox (when the gateway is root).
//!
//! Sharing one host user (`nobody`) meant a process that broke out of one sandbox landed as the
//! same user as every other sandbox (and the host's own `nobody` daemons): it could signal or
//! ptrace them, and all of them shared one RLIMIT_NPROC count. Each sandbox now runs as an id of
//! its own from `GIG_SANDBOX_IDS`, which no host user or group may hold.
//!
//! An id is claimed by binding the abstract Unix socket `gigmcp-id-<id>` — the mechanism of the
//! networking slots (`instance`): held while the sandbox lives, released by the kernel however
//! the gateway dies, shared by every gateway in the network namespace, so two gateways on one
//! host never hand out the same id and a crashed gateway's ids come back by themselves.

use std::ops::RangeInclusive;
use std::os::unix::net::UnixListener;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::instance::try_lock;

/// The abstract socket names of the ids: `<LOCK_PREFIX><id>`.
pub const LOCK_PREFIX: &str = "gigmcp-id-";

#[derive(Debug, thiserror::Error)]
pub enum SandboxIdError {
    #[error(
        "GIG_SANDBOX_IDS {first}-{last} holds host {kind} {name:?} (id {id}): sandboxes would run as that {kind}; choose a range no host account uses"
    )]
    TakenOnHost {
        first: u32,
        last: u32,
        kind: &'static str,
        name: String,
        id: u32,
    },
    #[error("all {0} sandbox ids of GIG_SANDBOX_IDS are in use by running sandboxes")]
    Exhausted(u64),
    #[error("cannot claim a sandbox id: {0}")]
    Lock(std::io::Error),
}

/// Hands out ids from a range; a [`SandboxId`] returns its id when dropped.
#[derive(Debug)]
pub struct SandboxIds {
    range: RangeInclusive<u32>,
    lock_prefix: String,
    /// Where the next search starts, so a just-released id is the last to be reused.
    cursor: AtomicU32,
}

/// One claimed id: the host uid and gid a sandbox runs as while this is held.
#[derive(Debug)]
pub struct SandboxId {
    pub id: u32,
    _lock: UnixListener,
}

impl SandboxIds {
    /// The ids of `range`, after checking that no host user or group (`/etc/passwd`,
    /// `/etc/group`) holds one.
    pub fn new(range: RangeInclusive<u32>) -> Result<Self, SandboxIdError> {
        let read = |path| std::fs::read_to_string(path).unwrap_or_default();
        check_unused(&range, "user", &read("/etc/passwd"))?;
        check_unused(&range, "group", &read("/etc/group"))?;
        Ok(Self::with_lock_prefix(range, LOCK_PREFIX))
    }

    fn with_lock_prefix(range: RangeInclusive<u32>, lock_prefix: &str) -> Self {
        SandboxIds {
            cursor: AtomicU32::new(*range.start()),
            range,
            lock_prefix: lock_prefix.to_owned(),
        }
    }

    /// The first free id from the cursor on, wrapping around the range once.
    pub fn claim(&self) -> Result<SandboxId, SandboxIdError> {
        let (first, last) = (*self.range.start(), *self.range.end());
        let count = u64::from(last - first) + 1;
        let start = self.cursor.load(Ordering::Relaxed);
        for step in 0..count {
            let id = first + ((u64::from(start - first) + step) % count) as u32;
            let name = format!("{}{id}", self.lock_prefix);
            if let Some(lock) = try_lock(&name).map_err(SandboxIdError::Lock)? {
                let next = if id == last { first } else { id + 1 };
                self.cursor.store(next, Ordering::Relaxed);
                return Ok(SandboxId { id, _lock: lock });
            }
        }
        Err(SandboxIdError::Exhausted(count))
    }
}

/// Refuses a range holding an id of `/etc/passwd` or `/etc/group` (`name:x:id:...`).
fn check_unused(
    range: &RangeInclusive<u32>,
    kind: &'static str,
    table: &str,
) -> Result<(), SandboxIdError> {
    for line in table.lines() {
        let mut fields = line.split(':');
        let (Some(name), Some(id)) = (fields.next(), fields.nth(1)) else {
            continue;
        };
        if let Ok(id) = id.parse::<u32>()
            && range.contains(&id)
        {
            return Err(SandboxIdError::TakenOnHost {
                first: *range.start(),
                last: *range.end(),
                kind,
                name: name.to_owned(),
                id,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A lock prefix of this test's own, so parallel tests and running gateways never meet.
    fn ids(range: RangeInclusive<u32>) -> SandboxIds {
        static TESTS: AtomicU32 = AtomicU32::new(0);
        let n = TESTS.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("gigmcp-id-test-{}-{n}-", std::process::id());
        SandboxIds::with_lock_prefix(range, &prefix)
    }

    #[test]
    fn live_ids_are_never_handed_out_twice_even_by_two_gateways() {
        let a = ids(100_000..=100_003);
        let b = SandboxIds::with_lock_prefix(100_000..=100_003, &a.lock_prefix);
        let held: Vec<SandboxId> = (0..2)
            .map(|_| a.claim().unwrap())
            .chain((0..2).map(|_| b.claim().unwrap()))
            .collect();
        let mut seen: Vec<u32> = held.iter().map(|h| h.id).collect();
        seen.sort_unstable();
        assert_eq!(seen, vec![100_000, 100_001, 100_002, 100_003]);
        assert!(matches!(a.claim(), Err(SandboxIdError::Exhausted(4))));
        assert!(matches!(b.claim(), Err(SandboxIdError::Exhausted(4))));
    }

    #[test]
    fn a_released_id_comes_back_last() {
        let a = ids(200_000..=200_002);
        let first = a.claim().unwrap();
        let released = first.id;
        drop(first);
        let held: Vec<SandboxId> = (0..3).map(|_| a.claim().unwrap()).collect();
        let ids: Vec<u32> = held.iter().map(|h| h.id).collect();
        assert_eq!(ids, vec![200_001, 200_002, released]);
    }

    #[test]
    fn a_range_holding_a_host_account_is_refused() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\nodd\nsvc:x:300001:300001::/:/bin/false\n";
        let e = check_unused(&(300_000..=300_015), "user", passwd).unwrap_err();
        assert!(e.to_string().contains("\"svc\" (id 300001)"), "{e}");
        check_unused(&(400_000..=400_015), "user", passwd).unwrap();
        let group = "nogroup:x:65534:\nbig:x:400007:\n";
        assert!(check_unused(&(400_000..=400_015), "group", group).is_err());
    }
}
