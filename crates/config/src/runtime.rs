//! Configuration of the parts around a sandbox: its network and egress proxy, and where
//! installed servers come from.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use gig_policy::IpNet;

use crate::{ConfigError, Env, invalid};

/// Per-sandbox networking and the egress proxy.
#[derive(Debug, Clone)]
pub struct EgressConfig {
    /// The /30s sandboxes get their veth pairs from.
    pub pool: ipnet::Ipv4Net,
    /// The proxy's port on every sandbox's host-side address.
    pub proxy_port: u16,
    /// PEM file of extra roots the proxy trusts for upstream TLS (besides the public ones).
    pub extra_roots: Option<PathBuf>,
    /// Names the proxy resolves to fixed addresses instead of asking DNS.
    pub hosts: BTreeMap<String, Vec<IpAddr>>,
    /// Non-public addresses every sandboxed server may reach anyway (internal services).
    pub allow_addresses: Vec<IpNet>,
}

impl EgressConfig {
    pub fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        let pool = match env.var("GIG_SANDBOX_POOL").filter(|v| !v.is_empty()) {
            None => "198.19.0.0/16".parse().expect("literal"),
            Some(v) => v.parse::<ipnet::Ipv4Net>().map_err(|e| {
                invalid("GIG_SANDBOX_POOL", &v, format!("not an IPv4 network: {e}"))
            })?,
        };
        let proxy_port = match env.var("GIG_EGRESS_PORT").filter(|v| !v.is_empty()) {
            None => 1023,
            Some(v) => v
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| invalid("GIG_EGRESS_PORT", &v, "expected a port 1-65535"))?,
        };
        let mut hosts: BTreeMap<String, Vec<IpAddr>> = BTreeMap::new();
        for item in list(env, "GIG_EGRESS_HOSTS") {
            let (name, ip) = item
                .split_once('=')
                .ok_or_else(|| invalid("GIG_EGRESS_HOSTS", &item, "expected NAME=IP"))?;
            let ip: IpAddr = ip
                .parse()
                .map_err(|_| invalid("GIG_EGRESS_HOSTS", &item, "not an IP address"))?;
            hosts.entry(name.to_ascii_lowercase()).or_default().push(ip);
        }
        let allow_addresses = list(env, "GIG_EGRESS_ALLOW_ADDRESSES")
            .into_iter()
            .map(|v| {
                v.parse::<IpNet>()
                    .or_else(|_| v.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        invalid("GIG_EGRESS_ALLOW_ADDRESSES", &v, "expected an IP or CIDR")
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(EgressConfig {
            pool,
            proxy_port,
            extra_roots: env
                .var("GIG_EGRESS_EXTRA_ROOTS")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            hosts,
            allow_addresses,
        })
    }
}

/// Where installed servers come from.
#[derive(Debug, Clone)]
pub struct InstallConfig {
    /// `https://…` or `file://…` of the signed index; `None`: installs are off.
    pub index_url: Option<String>,
    /// `ed25519:<base64>` keys, comma-separated (parsed by the registry crate).
    pub index_pubkeys: Option<String>,
    /// Refs installed at boot.
    pub install: Vec<String>,
    /// Speak plain HTTP to loopback registries (tests, local mirrors).
    pub registry_plain_http: bool,
    /// Take images from this OCI image layout instead of their registries (air-gapped).
    pub oci_layout: Option<PathBuf>,
}

impl InstallConfig {
    pub fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        let index_url = env.var("GIG_INDEX_URL").filter(|v| !v.is_empty());
        if let Some(url) = &index_url
            && !(url.starts_with("https://") || url.starts_with("file://"))
        {
            return Err(invalid(
                "GIG_INDEX_URL",
                url,
                "expected https://… or file://…",
            ));
        }
        let index_pubkeys = env
            .var("GIG_INDEX_PUBKEYS")
            .filter(|v| !v.trim().is_empty());
        let install = list(env, "GIG_INSTALL");
        if !install.is_empty() && (index_url.is_none() || index_pubkeys.is_none()) {
            return Err(invalid(
                "GIG_INSTALL",
                &install.join(","),
                "needs GIG_INDEX_URL and GIG_INDEX_PUBKEYS (the signed index and the keys it must be signed with)",
            ));
        }
        let registry_plain_http = match env.var("GIG_REGISTRY_PLAIN_HTTP").as_deref() {
            None | Some("") | Some("0") => false,
            Some("1") => true,
            Some(other) => {
                return Err(invalid("GIG_REGISTRY_PLAIN_HTTP", other, "expected 0 or 1"));
            }
        };
        Ok(InstallConfig {
            index_url,
            index_pubkeys,
            install,
            registry_plain_http,
            oci_layout: env
                .var("GIG_OCI_LAYOUT")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
        })
    }
}

/// The host uids (and equal gids) sandboxes run as when the gateway is root: each running
/// sandbox gets one of its own. Default: the 65,536 ids from 0x7000_0000, far above the ids
/// distributions hand out to users, system accounts and (from 100,000) `/etc/subuid` ranges.
pub const DEFAULT_SANDBOX_IDS: std::ops::RangeInclusive<u32> = 0x7000_0000..=0x7000_ffff;

/// `GIG_SANDBOX_IDS` (`FIRST-LAST`), checked: above every ordinary id (65,535 and below
/// include `nobody`), below the invalid id 2^32-1, and room for at least 16 sandboxes.
pub fn sandbox_ids(env: &dyn Env) -> Result<std::ops::RangeInclusive<u32>, ConfigError> {
    let Some(v) = env.var("GIG_SANDBOX_IDS").filter(|v| !v.is_empty()) else {
        return Ok(DEFAULT_SANDBOX_IDS);
    };
    let bad = |reason: &str| invalid("GIG_SANDBOX_IDS", &v, reason);
    let (first, last) = v
        .split_once('-')
        .ok_or_else(|| bad("expected FIRST-LAST, e.g. 1879048192-1879113727"))?;
    let parse = |n: &str| n.trim().parse::<u32>().map_err(|_| bad("not a number"));
    let (first, last) = (parse(first)?, parse(last)?);
    if first <= 65_535 {
        return Err(bad(
            "must start above 65535 (ordinary users, system accounts and nobody)",
        ));
    }
    if last == u32::MAX || last < first.saturating_add(15) {
        return Err(bad("needs at least 16 ids and must end below 4294967295"));
    }
    Ok(first..=last)
}

/// A comma-separated list, trimmed, without empty items.
fn list(env: &dyn Env, name: &str) -> Vec<String> {
    env.var(name)
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::env;

    #[test]
    fn sandbox_ids_default_and_refusals() {
        assert_eq!(sandbox_ids(&env(&[])).unwrap(), DEFAULT_SANDBOX_IDS);
        assert_eq!(
            sandbox_ids(&env(&[("GIG_SANDBOX_IDS", "200000-200015")])).unwrap(),
            200_000..=200_015
        );
        for bad in [
            "65534-70000",
            "200000-200014",
            "200000",
            "a-b",
            "300000-200000",
        ] {
            let e = sandbox_ids(&env(&[("GIG_SANDBOX_IDS", bad)])).unwrap_err();
            assert!(e.to_string().contains("GIG_SANDBOX_IDS"), "{bad}: {e}");
        }
        assert!(sandbox_ids(&env(&[("GIG_SANDBOX_IDS", "4294967200-4294967295")])).is_err());
    }

    #[test]
    fn egress_defaults_and_overrides() {
        let c = EgressConfig::from_env(&env(&[])).unwrap();
        assert_eq!(
            (c.pool.to_string(), c.proxy_port),
            ("198.19.0.0/16".into(), 1023)
        );
        let c = EgressConfig::from_env(&env(&[
            ("GIG_EGRESS_HOSTS", "api.example.test=127.0.0.1, a.test=::1"),
            ("GIG_EGRESS_ALLOW_ADDRESSES", "127.0.0.1,10.0.0.0/8"),
        ]))
        .unwrap();
        assert_eq!(
            c.hosts["api.example.test"],
            ["127.0.0.1".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(c.allow_addresses.len(), 2);
        for (k, v) in [
            ("GIG_SANDBOX_POOL", "nope"),
            ("GIG_EGRESS_PORT", "0"),
            ("GIG_EGRESS_HOSTS", "x"),
            ("GIG_EGRESS_ALLOW_ADDRESSES", "not-an-ip"),
        ] {
            let err = EgressConfig::from_env(&env(&[(k, v)]))
                .unwrap_err()
                .to_string();
            assert!(err.contains(k), "{err}");
        }
    }

    #[test]
    fn install_needs_an_index_and_keys() {
        let err = InstallConfig::from_env(&env(&[("GIG_INSTALL", "echo")])).unwrap_err();
        assert!(err.to_string().contains("GIG_INDEX_URL"), "{err}");
        let err = InstallConfig::from_env(&env(&[("GIG_INDEX_URL", "http://x")])).unwrap_err();
        assert!(err.to_string().contains("https://"), "{err}");
        let c = InstallConfig::from_env(&env(&[
            ("GIG_INDEX_URL", "file:///srv/index.json"),
            ("GIG_INDEX_PUBKEYS", "ed25519:AAAA"),
            ("GIG_INSTALL", "echo, fetch@1.0.0,"),
        ]))
        .unwrap();
        assert_eq!(c.install, ["echo", "fetch@1.0.0"]);
    }
}
