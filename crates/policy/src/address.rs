//! Which resolved addresses neither a sandbox (through the egress proxy) nor the gateway itself
//! (fetching a client's metadata document, calling a remote server) may reach unless a policy
//! lists them: loopback, private, link-local (cloud metadata), the host's own addresses.

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
        // Azure's platform endpoint (WireServer): public-looking, host-only in fact.
        [168, 63, 129, 16] => "cloud platform address",
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
    // Local-use NAT64 (64:ff9b:1::/48, RFC 8215) and 6to4 (2002::/16) carry IPv4 addresses a
    // translator may reach: never an ordinary destination.
    if seg[..3] == [0x64, 0xff9b, 1] {
        return Some("local-use NAT64 address");
    }
    if seg[0] == 0x2002 {
        return Some("6to4 address");
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
pub struct LocalAddrs {
    cache: Mutex<(Option<Instant>, HashSet<IpAddr>)>,
}

const REFRESH: Duration = Duration::from_secs(30);

impl LocalAddrs {
    pub fn new() -> Self {
        LocalAddrs {
            cache: Mutex::new((None, HashSet::new())),
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
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

impl Default for LocalAddrs {
    fn default() -> Self {
        Self::new()
    }
}

/// Which addresses the gateway's own outbound connections may reach: public ones, and the
/// non-public ones an operator allowed (`GIG_EGRESS_ALLOW_ADDRESSES`, a remote entry's
/// `allowAddresses`). Decided on each resolved address, so a name cannot launder a forbidden one.
#[derive(Debug, Default)]
pub struct AddressPolicy {
    allow: Vec<ipnet::IpNet>,
    /// Only `allow`ed addresses, not public ones either (plain-http internal services).
    allowed_only: bool,
    local: LocalAddrs,
}

impl AddressPolicy {
    pub fn new(allow: Vec<ipnet::IpNet>) -> Self {
        AddressPolicy {
            allow,
            allowed_only: false,
            local: LocalAddrs::new(),
        }
    }

    /// Only the `allow`ed addresses, no public ones.
    pub fn allowed_only(allow: Vec<ipnet::IpNet>) -> Self {
        AddressPolicy {
            allowed_only: true,
            ..Self::new(allow)
        }
    }

    /// Why `ip` may not be reached, or `None` when it may.
    pub fn refusal(&self, ip: IpAddr) -> Option<&'static str> {
        if self.allow.iter().any(|net| net.contains(&ip)) {
            return None;
        }
        if self.allowed_only {
            return Some(
                "address outside this server's allowAddresses (plain http goes nowhere else)",
            );
        }
        if let Some(why) = non_public_reason(ip) {
            return Some(why);
        }
        self.local
            .contains(ip)
            .then_some("address of the gateway's own host")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_or_allowed_addresses_pass() {
        let policy = AddressPolicy::new(vec!["127.0.0.1/32".parse().unwrap()]);
        assert_eq!(policy.refusal("127.0.0.1".parse().unwrap()), None);
        for refused in [
            "127.0.0.2",
            "10.0.0.1",
            "169.254.169.254",
            "::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(
                policy.refusal(refused.parse().unwrap()).is_some(),
                "{refused}"
            );
        }
        assert_eq!(policy.refusal("203.0.113.9".parse().unwrap()), None);
        let strict = AddressPolicy::allowed_only(vec!["10.1.2.3/32".parse().unwrap()]);
        assert_eq!(strict.refusal("10.1.2.3".parse().unwrap()), None);
        assert!(strict.refusal("203.0.113.9".parse().unwrap()).is_some());
    }
}
