//! Admission of client TCP connections: at most so many in total and so many per source
//! address, so clients that connect and then trickle (or never send) their headers cannot take
//! every file descriptor. A backend that must be restarted and the store that must be written
//! keep a reserve of descriptors the listener never uses.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Descriptors kept out of the listener's reach: backends' pipes and process handles, the
/// store's files, the egress proxy's sockets.
pub const FD_RESERVE: u64 = 256;

/// The connection cap actually applied: `configured`, lowered to the open-file limit minus
/// [`FD_RESERVE`] (half the limit when the limit is smaller than twice the reserve).
pub fn effective_max_connections(configured: usize) -> usize {
    let soft = match nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE) {
        Ok((soft, _hard)) => soft,
        // Unknown limit: trust the configuration.
        Err(_) => return configured,
    };
    cap_below_fd_limit(configured, soft)
}

fn cap_below_fd_limit(configured: usize, soft_limit: u64) -> usize {
    let usable = if soft_limit >= 2 * FD_RESERVE {
        soft_limit - FD_RESERVE
    } else {
        soft_limit / 2
    };
    let usable = usize::try_from(usable).unwrap_or(usize::MAX).max(1);
    configured.min(usable)
}

/// The key a source address is counted under: IPv4 (and IPv4-mapped IPv6) per address, other
/// IPv6 per /64, since one host is routinely given a whole /64.
fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// Counts open client connections.
#[derive(Debug)]
pub struct Admission {
    total: Arc<Semaphore>,
    per_source: Mutex<HashMap<IpAddr, usize>>,
    max_per_source: usize,
}

/// One admitted connection; dropping it frees its slots.
#[derive(Debug)]
pub struct Admitted {
    _total: OwnedSemaphorePermit,
    source: IpAddr,
    admission: Arc<Admission>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut per_source = self
            .admission
            .per_source
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = per_source.get_mut(&self.source) {
            *n -= 1;
            if *n == 0 {
                per_source.remove(&self.source);
            }
        }
    }
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Total,
    PerSource,
}

impl Admission {
    pub fn new(max_total: usize, max_per_source: usize) -> Arc<Self> {
        Arc::new(Admission {
            total: Arc::new(Semaphore::new(max_total)),
            per_source: Mutex::new(HashMap::new()),
            max_per_source,
        })
    }

    /// Admits a connection from `peer`, or says which cap it hit.
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Admitted, Refused> {
        let source = source_key(peer);
        let mut per_source = self.per_source.lock().unwrap_or_else(|p| p.into_inner());
        let open = per_source.get(&source).copied().unwrap_or(0);
        if open >= self.max_per_source {
            return Err(Refused::PerSource);
        }
        let permit = self
            .total
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refused::Total)?;
        per_source.insert(source, open + 1);
        Ok(Admitted {
            _total: permit,
            source,
            admission: self.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_apply_in_total_and_per_source() {
        let admission = Admission::new(3, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let c: IpAddr = "10.0.0.3".parse().unwrap();
        let a1 = admission.admit(a).unwrap();
        let _a2 = admission.admit(a).unwrap();
        assert_eq!(admission.admit(a).unwrap_err(), Refused::PerSource);
        let _b1 = admission.admit(b).unwrap();
        assert_eq!(admission.admit(c).unwrap_err(), Refused::Total);
        drop(a1);
        let _a3 = admission.admit(a).unwrap();
        assert_eq!(admission.admit(b).unwrap_err(), Refused::Total);
    }

    #[test]
    fn an_ipv6_slash_64_counts_as_one_source() {
        let admission = Admission::new(10, 1);
        let _first = admission.admit("2001:db8::1".parse().unwrap()).unwrap();
        assert!(admission.admit("2001:db8::2".parse().unwrap()).is_err());
        assert!(admission.admit("2001:db8:0:1::1".parse().unwrap()).is_ok());
        let _v4 = admission.admit("192.0.2.1".parse().unwrap()).unwrap();
        assert!(
            admission
                .admit("::ffff:192.0.2.1".parse().unwrap())
                .is_err()
        );
    }

    #[test]
    fn the_cap_leaves_descriptors_in_reserve() {
        assert_eq!(cap_below_fd_limit(4096, 1024), 1024 - FD_RESERVE as usize);
        assert_eq!(cap_below_fd_limit(4096, 1 << 20), 4096);
        assert_eq!(cap_below_fd_limit(4096, 300), 150);
        assert_eq!(cap_below_fd_limit(4096, 0), 1);
    }
}
