//! One sandbox's egress identity (server name, policy, placeholders) and where real secrets
//! come from.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use gig_policy::{CredentialSpec, EgressPolicy, Injection};
use zeroize::Zeroizing;

use super::ProxyError;
use crate::scan::{Needles, ScrubSet};

/// Why a secret could not be had; the message is shown to the sandbox, so no secret material.
#[derive(Debug, thiserror::Error)]
#[error("secret {name:?} is unavailable: {reason}")]
pub struct SecretError {
    pub name: String,
    pub reason: String,
}

/// Whose credentials a sandbox's requests carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SecretScope {
    /// The server's own, shared by every caller of its one instance.
    #[default]
    Server,
    /// One user's, in that user's own instance of the server (per-user or per-session).
    User(i64),
    /// None at all: the instance of a per-user server that only lists its tools and serves
    /// no user's call. A placeholder sent from it is refused, never filled from any scope.
    Nobody,
}

/// Where real secret values come from (the gateway implements it over its vault). `server`
/// is the sandbox's server and `scope` its owner: a secret is looked up there only (never
/// [`SecretScope::Nobody`], which the proxy refuses before asking).
pub trait SecretSource: Send + Sync + 'static {
    fn secret<'a>(
        &'a self,
        server: &'a str,
        scope: SecretScope,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Zeroizing<String>, SecretError>>;
}

/// A fixed set of secrets in memory (tests, and embedders without a vault).
#[derive(Default)]
pub struct StaticSecrets(HashMap<String, Zeroizing<String>>);

impl std::fmt::Debug for StaticSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl StaticSecrets {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn with(mut self, name: &str, value: &str) -> Self {
        self.0
            .insert(name.to_string(), Zeroizing::new(value.to_string()));
        self
    }
}

impl SecretSource for StaticSecrets {
    fn secret<'a>(
        &'a self,
        _server: &'a str,
        _scope: SecretScope,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Zeroizing<String>, SecretError>> {
        let found = self.0.get(name).cloned().ok_or_else(|| SecretError {
            name: name.to_string(),
            reason: "no such secret".into(),
        });
        Box::pin(async move { found })
    }
}

pub(crate) struct Cred {
    pub(crate) spec: CredentialSpec,
    pub(crate) placeholder: String,
}

/// Secrets a cached [`ScrubSet`] was built from, so a rotated secret rebuilds it.
type ScrubCache = HashMap<Vec<usize>, (Vec<Zeroizing<String>>, Arc<ScrubSet>)>;
const SCRUB_CACHE_MAX: usize = 64;

/// One sandbox's identity and rules: its server name, egress policy and placeholders.
pub struct SandboxEgress {
    pub(crate) server: String,
    /// Whose secrets are injected (see [`SandboxEgress::for_scope`]).
    pub(crate) scope: SecretScope,
    pub(crate) policy: EgressPolicy,
    pub(crate) creds: Vec<Cred>,
    /// Every placeholder, in `creds` order.
    pub(crate) detector: Needles,
    pub(crate) plain_http_credentials: HashSet<String>,
    /// The only source address this sandbox's listener serves (its own `eth0`); `None` in
    /// tests that connect from loopback.
    pub(crate) client: Option<std::net::IpAddr>,
    tool_call: Mutex<Option<ToolCall>>,
    scrub_cache: Mutex<ScrubCache>,
}

/// The tool call running in a sandbox: its name for audit records, and its trace span, the
/// parent of the spans of the egress requests it causes.
#[derive(Debug, Clone)]
pub struct ToolCall {
    pub name: String,
    pub span: tracing::Span,
}

impl std::fmt::Debug for SandboxEgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxEgress")
            .field("server", &self.server)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// Placeholders shorter than this could be guessed or collide with ordinary text.
const MIN_PLACEHOLDER_LEN: usize = 24;

impl SandboxEgress {
    /// `placeholders` maps each credential's `env` to the placeholder the server was given.
    pub fn new(
        server_name: impl Into<String>,
        policy: EgressPolicy,
        placeholders: HashMap<String, String>,
    ) -> Result<Self, ProxyError> {
        let server = server_name.into();
        policy
            .validate()
            .map_err(|e| ProxyError::Policy(server.clone(), e))?;
        let mut seen = HashSet::new();
        let mut creds = Vec::new();
        for spec in &policy.credentials {
            let err = |reason| ProxyError::Placeholder {
                server: server.clone(),
                env: spec.env.clone(),
                reason,
            };
            let placeholder = placeholders
                .get(&spec.env)
                .ok_or_else(|| err("no placeholder was given for it"))?;
            if placeholder.len() < MIN_PLACEHOLDER_LEN {
                return Err(err("its placeholder is too short to be unguessable"));
            }
            if !placeholder
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                return Err(err(
                    "a placeholder may hold only letters, digits, '_' and '-'",
                ));
            }
            if !seen.insert(placeholder.clone()) {
                return Err(err("its placeholder is shared with another credential"));
            }
            creds.push(Cred {
                spec: spec.clone(),
                placeholder: placeholder.clone(),
            });
        }
        let detector = Needles::new(
            &creds
                .iter()
                .map(|c| c.placeholder.as_str())
                .collect::<Vec<_>>(),
        );
        Ok(SandboxEgress {
            server,
            scope: SecretScope::Server,
            policy,
            creds,
            detector,
            scrub_cache: Mutex::new(HashMap::new()),
            plain_http_credentials: HashSet::new(),
            client: None,
            tool_call: Mutex::new(None),
        })
    }

    /// Lets credential `env` be injected into plain-HTTP requests to its hosts (only to hosts a
    /// `http://` rule allows). Off by default: a secret sent in clear can be read on the path.
    pub fn allow_credential_over_plain_http(mut self, env: &str) -> Result<Self, ProxyError> {
        if !self.creds.iter().any(|c| c.spec.env == env) {
            return Err(ProxyError::Placeholder {
                server: self.server.clone(),
                env: env.to_string(),
                reason: "no such credential",
            });
        }
        self.plain_http_credentials.insert(env.to_string());
        Ok(self)
    }

    /// Serves only connections from `addr` (the sandbox's own address). The listener sits on
    /// the host, so without this any local process, or a LAN host routing the pool through the
    /// gateway, could connect and have the sandbox's credentials injected.
    pub fn only_from(mut self, addr: std::net::IpAddr) -> Self {
        self.client = Some(addr);
        self
    }

    /// Injects the secrets of `scope` instead of the server's own.
    pub fn for_scope(mut self, scope: SecretScope) -> Self {
        self.scope = scope;
        self
    }

    pub fn server_name(&self) -> &str {
        &self.server
    }

    pub fn scope(&self) -> SecretScope {
        self.scope
    }

    /// The tool call now running in this sandbox (`None` when idle); stamped on audit records.
    pub fn set_tool_call(&self, tool_call: Option<ToolCall>) {
        *self.tool_call.lock().unwrap_or_else(|p| p.into_inner()) = tool_call;
    }

    /// The scrubber for the secrets injected into one request (credential indexes `creds`),
    /// built once per combination and secret version.
    pub(crate) fn scrub_set(
        &self,
        creds: Vec<usize>,
        secrets: Vec<Zeroizing<String>>,
    ) -> Arc<ScrubSet> {
        let mut cache = self.scrub_cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((built_from, set)) = cache.get(&creds)
            && *built_from == secrets
        {
            return set.clone();
        }
        let entries: Vec<(&str, &str, Option<&str>)> = creds
            .iter()
            .zip(&secrets)
            .map(|(&i, secret)| {
                let cred = &self.creds[i];
                let basic_user = match &cred.spec.inject {
                    Injection::Basic { username } => Some(username.as_str()),
                    _ => None,
                };
                (secret.as_str(), cred.placeholder.as_str(), basic_user)
            })
            .collect();
        let set = Arc::new(ScrubSet::new(&entries));
        if cache.len() >= SCRUB_CACHE_MAX {
            cache.clear();
        }
        cache.insert(creds, (secrets, set.clone()));
        set
    }

    pub(crate) fn tool_call(&self) -> Option<String> {
        self.tool_call
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|c| c.name.clone())
    }

    /// The running tool call's span, when there is a call.
    pub(crate) fn tool_call_span(&self) -> Option<tracing::Span> {
        self.tool_call
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|c| c.span.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::new_placeholder;

    #[test]
    fn sandbox_egress_rejects_missing_weak_or_shared_placeholders() {
        let cred = |env: &str| CredentialSpec {
            env: env.into(),
            secret: None,
            hosts: vec!["api.example.test".parse().unwrap()],
            inject: Injection::Query {
                param: "key".into(),
            },
        };
        let policy = EgressPolicy {
            credentials: vec![cred("A"), cred("B")],
            ..Default::default()
        };
        let ph = new_placeholder();
        let map = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert!(SandboxEgress::new("s", policy.clone(), map(&[("A", &ph)])).is_err());
        assert!(
            SandboxEgress::new("s", policy.clone(), map(&[("A", &ph), ("B", "short")])).is_err()
        );
        assert!(SandboxEgress::new("s", policy.clone(), map(&[("A", &ph), ("B", &ph)])).is_err());
        let other = new_placeholder();
        let ok = SandboxEgress::new("s", policy, map(&[("A", &ph), ("B", &other)])).unwrap();
        assert!(ok.allow_credential_over_plain_http("C").is_err());
    }
}
