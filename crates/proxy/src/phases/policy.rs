//! Phase 2, policy: an allow rule for the agreed `host:port` (a plain-HTTP rule for plain
//! HTTP), then the name resolved once and every address checked. The addresses returned are the
//! only ones the request may be sent to, so a second lookup can never rebind it.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use gig_policy::{EgressPolicy, host_ip};
use http::StatusCode;

use super::Refusal;
use crate::resolve::Resolver;
use gig_policy::address::{LocalAddrs, non_public_reason};

/// What the decision needs: the sandbox's rules and the proxy's view of the network.
pub(crate) struct Reach<'a> {
    pub(crate) policy: &'a EgressPolicy,
    pub(crate) resolver: &'a dyn Resolver,
    pub(crate) resolve_timeout: Duration,
    /// The proxy host's own addresses.
    pub(crate) local: &'a LocalAddrs,
    /// Every address a sandbox listener is bound to: a destination equal to one is a loop.
    pub(crate) listeners: &'a Mutex<Vec<SocketAddr>>,
}

impl Reach<'_> {
    /// Resolves and checks `host:port`: an allow rule, then every resolved address.
    pub(crate) async fn decide(
        &self,
        host: &str,
        port: u16,
        tls: bool,
    ) -> Result<Vec<SocketAddr>, Refusal> {
        let policy = self.policy;
        let mut rules = policy.allow.iter().filter(|r| r.allows(host, port));
        let allowed = if tls {
            rules.next().is_some()
        } else {
            rules.any(|r| r.plain_http)
        };
        if !allowed {
            let what = if tls { "" } else { "plain-HTTP " };
            return Err(Refusal::forbidden(format!(
                "{what}egress to {host}:{port} is not in this server's allowlist"
            )));
        }
        let ips = match host_ip(host) {
            Some(ip) => vec![ip],
            None => {
                let lookup =
                    tokio::time::timeout(self.resolve_timeout, self.resolver.resolve(host)).await;
                match lookup {
                    Ok(Ok(ips)) if !ips.is_empty() => ips,
                    Ok(Ok(_)) => {
                        return Err(Refusal::new(
                            StatusCode::BAD_GATEWAY,
                            format!("{host} resolves to no address"),
                        ));
                    }
                    Ok(Err(e)) => {
                        return Err(Refusal::new(
                            StatusCode::BAD_GATEWAY,
                            format!("cannot resolve {host}: {e}"),
                        ));
                    }
                    Err(_) => {
                        return Err(Refusal::new(
                            StatusCode::GATEWAY_TIMEOUT,
                            format!("resolving {host} timed out"),
                        ));
                    }
                }
            }
        };
        let mut addrs = Vec::with_capacity(ips.len());
        for ip in ips {
            let addr = SocketAddr::new(ip, port);
            if self.is_proxy_listener(addr) {
                return Err(Refusal::forbidden(format!(
                    "{host}:{port} loops back to the egress proxy itself"
                )));
            }
            if !policy.allow_addresses.iter().any(|net| net.contains(&ip)) {
                // One bad answer refuses the whole name: mixed answers are a rebinding trick.
                if let Some(why) = non_public_reason(ip) {
                    return Err(Refusal::forbidden(format!(
                        "{host} resolves to {ip}, a {why}, which this server may not reach"
                    )));
                }
                if self.local.contains(ip) {
                    return Err(Refusal::forbidden(format!(
                        "{host} resolves to {ip}, an address of the proxy's own host"
                    )));
                }
            }
            addrs.push(addr);
        }
        Ok(addrs)
    }

    fn is_proxy_listener(&self, addr: SocketAddr) -> bool {
        let listeners = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
        listeners.iter().any(|l| {
            l.port() == addr.port()
                && (l.ip() == addr.ip()
                    || (l.ip().is_unspecified()
                        && (addr.ip().is_loopback() || self.local.contains(addr.ip()))))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;
    use crate::resolve::StaticResolver;

    const PUBLIC: &str = "93.184.216.34";

    fn policy(rules: &[&str], allow_addresses: &[&str]) -> EgressPolicy {
        EgressPolicy {
            allow: rules.iter().map(|r| r.parse().unwrap()).collect(),
            allow_addresses: allow_addresses.iter().map(|n| n.parse().unwrap()).collect(),
            credentials: Vec::new(),
        }
    }

    fn resolver() -> StaticResolver {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        StaticResolver::new()
            .insert("public.example.test", [ip(PUBLIC)])
            .insert("loopback.example.test", [ip("127.0.0.1")])
            .insert("private.example.test", [ip("10.1.2.3")])
            .insert("meta.example.test", [ip("169.254.169.254")])
            .insert("mapped.example.test", [ip("::ffff:169.254.169.254")])
            .insert("mixed.example.test", [ip(PUBLIC), ip("10.0.0.1")])
            .insert("empty.example.test", [])
    }

    async fn decide(
        policy: &EgressPolicy,
        listeners: &[SocketAddr],
        host: &str,
        port: u16,
        tls: bool,
    ) -> Result<Vec<SocketAddr>, Refusal> {
        let resolver = resolver();
        let local = LocalAddrs::new();
        let listeners = Mutex::new(listeners.to_vec());
        let reach = Reach {
            policy,
            resolver: &resolver,
            resolve_timeout: Duration::from_secs(5),
            local: &local,
            listeners: &listeners,
        };
        reach.decide(host, port, tls).await
    }

    fn refused(r: Result<Vec<SocketAddr>, Refusal>) -> Refusal {
        let r = r.expect_err("should be refused");
        assert!(!r.exfiltration);
        r
    }

    #[tokio::test]
    async fn a_public_address_under_a_rule_is_returned_exactly() {
        let p = policy(&["public.example.test"], &[]);
        let addrs = decide(&p, &[], "public.example.test", 443, true)
            .await
            .unwrap();
        assert_eq!(addrs, vec![SocketAddr::new(PUBLIC.parse().unwrap(), 443)]);
    }

    #[tokio::test]
    async fn no_rule_means_no_egress() {
        let p = policy(&["public.example.test"], &[]);
        for (host, port) in [("other.example.test", 443), ("public.example.test", 8443)] {
            let r = refused(decide(&p, &[], host, port, true).await);
            assert_eq!(r.status, StatusCode::FORBIDDEN);
            assert!(r.reason.contains("is not in this server's allowlist"));
        }
        let r = refused(decide(&policy(&[], &[]), &[], "public.example.test", 443, true).await);
        assert_eq!(r.status, StatusCode::FORBIDDEN);
    }

    #[tokio::test]
    async fn plain_http_needs_an_http_rule() {
        let tls_only = policy(&["public.example.test:80"], &[]);
        let r = refused(decide(&tls_only, &[], "public.example.test", 80, false).await);
        assert!(
            r.reason
                .starts_with("plain-HTTP egress to public.example.test:80")
        );
        let http = policy(&["http://public.example.test"], &[]);
        assert!(
            decide(&http, &[], "public.example.test", 80, false)
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn non_public_resolved_addresses_are_refused_unless_allowed() {
        let hosts = [
            "loopback.example.test",
            "private.example.test",
            "meta.example.test",
            "mapped.example.test",
            "mixed.example.test",
        ];
        let p = policy(&["*.example.test"], &[]);
        for host in hosts {
            let r = refused(decide(&p, &[], host, 443, true).await);
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{host}");
            assert!(
                r.reason.contains("which this server may not reach"),
                "{r:?}"
            );
        }
        let open = policy(
            &["*.example.test"],
            &[
                "127.0.0.0/8",
                "10.0.0.0/8",
                "169.254.0.0/16",
                "::ffff:0:0/96",
            ],
        );
        for host in hosts {
            assert!(decide(&open, &[], host, 443, true).await.is_ok(), "{host}");
        }
    }

    #[tokio::test]
    async fn ip_literals_are_checked_without_a_lookup() {
        let p = policy(&["127.0.0.1", "169.254.169.254", "10.0.0.1"], &[]);
        for ip in ["127.0.0.1", "169.254.169.254", "10.0.0.1"] {
            let r = refused(decide(&p, &[], ip, 443, true).await);
            assert!(
                r.reason.starts_with(&format!("{ip} resolves to {ip}, a ")),
                "{r:?}"
            );
        }
        let allowed = policy(&["127.0.0.1"], &["127.0.0.1/32"]);
        let addrs = decide(&allowed, &[], "127.0.0.1", 443, true).await.unwrap();
        assert_eq!(addrs, vec!["127.0.0.1:443".parse().unwrap()]);
    }

    #[tokio::test]
    async fn a_proxy_listener_is_refused_even_when_allowed() {
        let p = policy(&["loopback.example.test:3128"], &["127.0.0.0/8"]);
        for listener in ["127.0.0.1:3128", "0.0.0.0:3128"] {
            let r = refused(
                decide(
                    &p,
                    &[listener.parse().unwrap()],
                    "loopback.example.test",
                    3128,
                    true,
                )
                .await,
            );
            assert!(r.reason.contains("loops back to the egress proxy itself"));
        }
        assert!(
            decide(
                &p,
                &["127.0.0.1:3129".parse().unwrap()],
                "loopback.example.test",
                3128,
                true
            )
            .await
            .is_ok()
        );
    }

    #[tokio::test]
    async fn resolution_failures_are_gateway_errors() {
        let p = policy(&["*.example.test"], &[]);
        let r = refused(decide(&p, &[], "empty.example.test", 443, true).await);
        assert_eq!(r.status, StatusCode::BAD_GATEWAY);
        assert_eq!(r.reason, "empty.example.test resolves to no address");
        let r = refused(decide(&p, &[], "unknown.example.test", 443, true).await);
        assert_eq!(r.status, StatusCode::BAD_GATEWAY);
        assert!(r.reason.starts_with("cannot resolve unknown.example.test"));
    }

    #[test]
    fn non_public_addresses_are_classified() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(non_public_reason(ip).is_some(), "{ip} counted as public");
        }
        for ip in [
            "93.184.216.34",
            "2606:4700::1111",
            "203.0.113.7",
            "172.32.0.1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(non_public_reason(ip), None, "{ip} counted as non-public");
        }
    }
}
