//! Which resolved addresses a sandbox may never reach unless its policy lists them.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Why an address is not an ordinary public destination, or `None` if it is one.
pub fn non_public_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_reason(v4),
        IpAddr::V6(v6) => v6_reason(v6),
    }
}

fn v4_reason(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    Some(match o {
        [0, ..] => "unspecified/this-network address",
        [127, ..] => "loopback address",
        [10, ..] => "private address",
        [172, b, ..] if (16..32).contains(&b) => "private address",
        [192, 168, ..] => "private address",
        [169, 254, ..] => "link-local address (cloud metadata lives here)",
        [100, b, ..] if (64..128).contains(&b) => "carrier-grade NAT address",
        [192, 0, 0, _] => "IETF protocol assignment address",
        [198, 18 | 19, ..] => "benchmarking address",
        [a, ..] if (224..240).contains(&a) => "multicast address",
        [a, ..] if a >= 240 => "reserved or broadcast address",
        _ => return None,
    })
}

fn v6_reason(ip: Ipv6Addr) -> Option<&'static str> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return v4_reason(v4);
    }
    let seg = ip.segments();
    // NAT64 (64:ff9b::/96) reaches the embedded IPv4 address.
    if seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let [a, b] = seg[6].to_be_bytes();
        let [c, d] = seg[7].to_be_bytes();
        return v4_reason(Ipv4Addr::new(a, b, c, d));
    }
    Some(match seg[0] {
        _ if ip.is_unspecified() => "unspecified address",
        _ if ip.is_loopback() => "loopback address",
        s if s & 0xffc0 == 0xfe80 => "link-local address",
        s if s & 0xffc0 == 0xfec0 => "site-local address",
        s if s & 0xfe00 == 0xfc00 => "unique local (private) address",
        s if s & 0xff00 == 0xff00 => "multicast address",
        // IPv4-compatible (deprecated) ::a.b.c.d
        0 if seg[1..6] == [0; 5] => "IPv4-compatible address",
        _ => return None,
    })
}

/// The host's own interface addresses, re-read at most once per `REFRESH`.
#[derive(Debug)]
pub(crate) struct LocalAddrs {
    cache: Mutex<(Option<Instant>, HashSet<IpAddr>)>,
}

const REFRESH: Duration = Duration::from_secs(30);

impl LocalAddrs {
    pub(crate) fn new() -> Self {
        LocalAddrs {
            cache: Mutex::new((None, HashSet::new())),
        }
    }

    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.0.is_none_or(|at| at.elapsed() > REFRESH) {
            match read_interface_addrs() {
                Ok(set) => *cache = (Some(Instant::now()), set),
                // Keep the last good set; an empty first read still leaves the range checks.
                Err(e) => tracing::warn!(error = %e, "cannot list the host's interface addresses"),
            }
        }
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        cache.1.contains(&ip)
    }
}

fn read_interface_addrs() -> nix::Result<HashSet<IpAddr>> {
    let mut set = HashSet::new();
    for ifa in nix::ifaddrs::getifaddrs()? {
        let Some(addr) = ifa.address else { continue };
        if let Some(v4) = addr.as_sockaddr_in() {
            set.insert(IpAddr::V4(v4.ip()));
        } else if let Some(v6) = addr.as_sockaddr_in6() {
            set.insert(IpAddr::V6(v6.ip()));
        }
    }
    Ok(set)
}
