//! The policy a server runs under, as plain validated data.
//!
//! The same types come from a signed index entry (`gig-registry-schema`) and from a hand-written
//! `GIG_SERVERS_FILE` (`gig-config`), and are enforced by the egress proxy (`gig-proxy`) and the
//! sandbox: one definition, so a hand-declared server gets exactly the protection an installed one
//! gets. Every constructor validates; a value of these types is always well formed.

#![forbid(unsafe_code)]

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

pub mod address;
pub mod instances;
mod names;
pub mod remote;

pub use instances::{InstanceMode, InstancePolicy, RawInstances};
pub use ipnet::IpNet;
pub use names::{CredentialName, ServerName};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("invalid host pattern {0:?}: {1}")]
    Host(String, &'static str),
    #[error("invalid egress rule {0:?}: {1}")]
    Rule(String, &'static str),
    #[error("invalid credential {0:?}: {1}")]
    Credential(String, &'static str),
    #[error("invalid credential {0:?}: secret {1}")]
    CredentialSecret(String, String),
}

/// A destination host: an exact DNS name (`api.example.com`), a wildcard that matches strictly
/// below a domain (`*.example.com` matches `a.example.com` and `a.b.example.com`, never
/// `example.com` or `badexample.com`), or an IP literal (matched only by that literal).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HostPattern {
    Exact(String),
    /// The suffix without the `*.`: `example.com`.
    Wildcard(String),
    Ip(IpAddr),
}

/// Lowercases and validates a DNS name: ASCII letters, digits, `-` and `.`; labels of 1..=63
/// characters not starting or ending with `-`; at most 253 characters; no trailing dot.
pub fn normalize_dns_name(name: &str) -> Result<String, &'static str> {
    if name.is_empty() || name.len() > 253 {
        return Err("a host name has 1 to 253 characters");
    }
    let lower = name.to_ascii_lowercase();
    for label in lower.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err("every label has 1 to 63 characters");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err("only ASCII letters, digits, '-' and '.' are allowed (use punycode)");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("a label cannot start or end with '-'");
        }
    }
    Ok(lower)
}

impl HostPattern {
    /// Whether `host` (a DNS name or IP literal as the client wrote it) is covered.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Ip(ip) => host_ip(host) == Some(*ip),
            HostPattern::Exact(name) => name.eq_ignore_ascii_case(host),
            HostPattern::Wildcard(suffix) => {
                let host = host.to_ascii_lowercase();
                host.len() > suffix.len() + 1
                    && host.ends_with(suffix.as_str())
                    && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
            }
        }
    }
}

/// Parses an IP literal as it may appear in a host position (`[::1]` or `::1`, `127.0.0.1`).
pub fn host_ip(host: &str) -> Option<IpAddr> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.parse().ok()
}

impl FromStr for HostPattern {
    type Err = PolicyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |why| PolicyError::Host(s.to_string(), why);
        if let Some(ip) = host_ip(s) {
            return Ok(HostPattern::Ip(ip));
        }
        if let Some(suffix) = s.strip_prefix("*.") {
            let suffix = normalize_dns_name(suffix).map_err(err)?;
            if !suffix.contains('.') {
                return Err(err(
                    "a wildcard must sit below a registrable domain (*.example.com)",
                ));
            }
            return Ok(HostPattern::Wildcard(suffix));
        }
        if s.contains('*') {
            return Err(err(
                "'*' is only allowed as the whole first label (*.example.com)",
            ));
        }
        normalize_dns_name(s).map(HostPattern::Exact).map_err(err)
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPattern::Exact(n) => f.write_str(n),
            HostPattern::Wildcard(s) => write!(f, "*.{s}"),
            HostPattern::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            HostPattern::Ip(IpAddr::V4(ip)) => write!(f, "{ip}"),
        }
    }
}

/// One allowed destination: a host pattern and the ports allowed on it.
///
/// Written `host`, `host:port` or `host:port1,port2`; with no port only 443 is allowed.
/// `http://host[:port]` additionally allows plain HTTP to it (default port 80), which is never
/// needed for a credential to be injected over TLS and is refused unless written out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressRule {
    pub host: HostPattern,
    pub ports: Vec<u16>,
    pub plain_http: bool,
}

impl EgressRule {
    pub fn allows(&self, host: &str, port: u16) -> bool {
        self.ports.contains(&port) && self.host.matches(host)
    }
}

impl FromStr for EgressRule {
    type Err = PolicyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |why| PolicyError::Rule(s.to_string(), why);
        let (plain_http, rest) = match s.strip_prefix("http://") {
            Some(rest) => (true, rest),
            None => (false, s.strip_prefix("https://").unwrap_or(s)),
        };
        // `[v6]:port`, `host:port`, a bare v6 literal, or a bare host.
        let (host, ports) = if let Some(end) = rest.strip_prefix('[').and_then(|r| r.find(']')) {
            let host = &rest[..end + 2];
            (host, rest[end + 2..].strip_prefix(':'))
        } else if rest.matches(':').count() > 1 {
            (rest, None)
        } else {
            match rest.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            }
        };
        let ports = match ports {
            None => vec![if plain_http { 80 } else { 443 }],
            Some(list) => list
                .split(',')
                .map(|p| match p.parse::<u16>() {
                    Ok(0) | Err(_) => Err(err("ports are numbers from 1 to 65535")),
                    Ok(n) => Ok(n),
                })
                .collect::<Result<_, _>>()?,
        };
        Ok(EgressRule {
            host: host.parse()?,
            ports,
            plain_http,
        })
    }
}

impl fmt::Display for EgressRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.plain_http {
            f.write_str("http://")?;
        }
        write!(f, "{}", self.host)?;
        let default = if self.plain_http { 80 } else { 443 };
        if self.ports != [default] {
            let ports: Vec<String> = self.ports.iter().map(u16::to_string).collect();
            write!(f, ":{}", ports.join(","))?;
        }
        Ok(())
    }
}

/// Where the proxy puts a credential's real value on a request to one of its hosts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase", deny_unknown_fields)]
pub enum Injection {
    /// Set header `name` to `template` with `{}` replaced by the secret (`Bearer {}`).
    /// Whatever the server sent in that header is overwritten.
    Header { name: String, template: String },
    /// Set query parameter `param` to the secret.
    Query { param: String },
    /// HTTP Basic auth with the secret as the password.
    Basic { username: String },
}

/// A credential a server needs: the environment variable that carries its placeholder, the vault
/// secret behind it, the hosts it may be sent to, and how it is injected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CredentialSpec {
    /// The environment variable the server reads (`OPENAI_API_KEY`); holds the placeholder.
    pub env: String,
    /// The vault secret's name; defaults to `env`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// The only hosts the real value is ever sent to.
    pub hosts: Vec<HostPattern>,
    pub inject: Injection,
}

impl CredentialSpec {
    pub fn secret_name(&self) -> &str {
        self.secret.as_deref().unwrap_or(&self.env)
    }

    pub fn validate(&self) -> Result<(), PolicyError> {
        let err = |why| PolicyError::Credential(self.env.clone(), why);
        let ident = |s: &str| {
            !s.is_empty()
                && !s.starts_with(|c: char| c.is_ascii_digit())
                && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        };
        if !ident(&self.env) {
            return Err(err("env must be a variable name ([A-Za-z_][A-Za-z0-9_]*)"));
        }
        if let Some(secret) = &self.secret {
            CredentialName::parse(secret)
                .map_err(|why| PolicyError::CredentialSecret(self.env.clone(), why))?;
        }
        if self.hosts.is_empty() {
            return Err(err("a credential needs at least one host"));
        }
        match &self.inject {
            Injection::Header { name, template } => {
                if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') || name.is_empty()
                {
                    return Err(err(
                        "header name must be a token of letters, digits and '-'",
                    ));
                }
                if template.matches("{}").count() != 1 {
                    return Err(err("header template must contain exactly one {}"));
                }
                if template.bytes().any(|b| b.is_ascii_control()) {
                    return Err(err("header template cannot contain control characters"));
                }
            }
            Injection::Query { param } if param.is_empty() => {
                return Err(err("query parameter name is empty"));
            }
            Injection::Basic { username } if username.contains(':') => {
                return Err(err("basic-auth username cannot contain ':'"));
            }
            _ => {}
        }
        Ok(())
    }
}

/// cgroup v2 limits for one sandbox; `None` leaves the host default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceLimits {
    /// `memory.max` in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    /// `pids.max`, and RLIMIT_NPROC inside the sandbox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_processes: Option<u64>,
    /// CPU share in thousandths of one CPU (`cpu.max` = millis*100 per 100000 µs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_millis: Option<u32>,
}

/// Everything the egress proxy enforces for one server. Default: deny everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EgressPolicy {
    pub allow: Vec<EgressRule>,
    /// Non-public destinations (loopback, private, link-local...) the server may reach anyway, by
    /// resolved address. Empty in production; tests list their loopback upstream here.
    pub allow_addresses: Vec<IpNet>,
    pub credentials: Vec<CredentialSpec>,
}

impl EgressPolicy {
    /// The rule that lets `host:port` through, if any.
    pub fn rule_for(&self, host: &str, port: u16) -> Option<&EgressRule> {
        self.allow.iter().find(|r| r.allows(host, port))
    }

    pub fn validate(&self) -> Result<(), PolicyError> {
        let mut envs = std::collections::BTreeSet::new();
        for c in &self.credentials {
            c.validate()?;
            if !envs.insert(c.env.as_str()) {
                return Err(PolicyError::Credential(c.env.clone(), "declared twice"));
            }
        }
        Ok(())
    }
}

/// Implements serde for a type through its `Display` and `FromStr` (for value types written as
/// one string, so a bad value fails with the type's own parse error).
#[macro_export]
macro_rules! serde_via_str {
    ($t:ty) => {
        impl ::serde::Serialize for $t {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> ::serde::Deserialize<'de> for $t {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <String as ::serde::Deserialize>::deserialize(d)?;
                s.parse().map_err(::serde::de::Error::custom)
            }
        }
    };
}
serde_via_str!(HostPattern);
serde_via_str!(EgressRule);

#[cfg(test)]
mod tests;
