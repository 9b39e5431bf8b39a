//! How many instances of a sandboxed server run, and for whom: the servers file's
//! `"sandbox": {"instances": "per-user", "maxInstances": 16, "maxInstancesPerUser": 1,
//! "idleSeconds": 600}`, or the same keys in a signed index entry's version.
//!
//! A sandboxed server never holds a real key: the egress proxy injects it. One shared instance
//! can therefore only ever be given the server's own credentials, since the proxy cannot tell
//! which caller caused a request when calls of several users run in one process. A per-user
//! instance is a sandbox of its own whose proxy injects that user's credentials only.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Whose instance a call runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum InstanceMode {
    /// One instance for every caller, with the server's own (shared) credentials.
    #[default]
    Shared,
    /// One instance per user, with that user's credentials.
    PerUser,
    /// One instance per MCP session, with its user's credentials.
    PerSession,
}

/// A server's instance policy. The instance every server has (the one whose tools the catalog
/// lists) runs in every mode; per-user and per-session instances start at a caller's first
/// call and stop after `idle` without calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstancePolicy {
    pub mode: InstanceMode,
    /// Most per-user or per-session instances of this server running at once.
    pub max_instances: usize,
    /// Most of them belonging to one user (per-session: sessions of one user).
    pub max_per_user: usize,
    /// An instance without a call for this long is stopped.
    pub idle: Duration,
}

pub const DEFAULT_MAX_INSTANCES: usize = 16;
pub const DEFAULT_MAX_SESSIONS_PER_USER: usize = 4;
pub const DEFAULT_IDLE: Duration = Duration::from_secs(600);

impl Default for InstancePolicy {
    fn default() -> Self {
        InstancePolicy {
            mode: InstanceMode::Shared,
            max_instances: DEFAULT_MAX_INSTANCES,
            max_per_user: 1,
            idle: DEFAULT_IDLE,
        }
    }
}

impl InstanceMode {
    pub fn is_shared(&self) -> bool {
        *self == InstanceMode::Shared
    }
}

/// The written spelling (servers file, index entry), checked by [`InstancePolicy::from_raw`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawInstances {
    #[serde(default)]
    pub instances: InstanceMode,
    pub max_instances: Option<usize>,
    pub max_instances_per_user: Option<usize>,
    pub idle_seconds: Option<u64>,
}

impl InstancePolicy {
    pub fn from_raw(raw: RawInstances) -> Result<Self, String> {
        let mode = raw.instances;
        if mode == InstanceMode::Shared
            && (raw.max_instances.is_some()
                || raw.max_instances_per_user.is_some()
                || raw.idle_seconds.is_some())
        {
            return Err(
                "maxInstances, maxInstancesPerUser and idleSeconds need \"instances\": \"per-user\" or \"per-session\""
                    .to_owned(),
            );
        }
        let max_instances = raw.max_instances.unwrap_or(DEFAULT_MAX_INSTANCES);
        let max_per_user = match mode {
            // One user has exactly one per-user instance.
            InstanceMode::PerUser if raw.max_instances_per_user.is_some_and(|n| n != 1) => {
                return Err(
                    "maxInstancesPerUser is always 1 for \"per-user\"; it bounds \"per-session\""
                        .to_owned(),
                );
            }
            InstanceMode::PerSession => raw
                .max_instances_per_user
                .unwrap_or(DEFAULT_MAX_SESSIONS_PER_USER),
            _ => 1,
        };
        if max_instances == 0 || max_per_user == 0 {
            return Err("maxInstances and maxInstancesPerUser must be at least 1".to_owned());
        }
        if max_per_user > max_instances {
            return Err("maxInstancesPerUser cannot exceed maxInstances".to_owned());
        }
        let idle = match raw.idle_seconds {
            None => DEFAULT_IDLE,
            Some(0) => return Err("idleSeconds must be at least 1".to_owned()),
            Some(s) => Duration::from_secs(s),
        };
        Ok(InstancePolicy {
            mode,
            max_instances,
            max_per_user,
            idle,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<InstancePolicy, String> {
        InstancePolicy::from_raw(serde_json::from_str(json).map_err(|e| e.to_string())?)
    }

    #[test]
    fn shared_is_the_default_and_takes_no_caps() {
        assert_eq!(parse("{}").unwrap(), InstancePolicy::default());
        assert!(
            parse(r#"{"maxInstances": 3}"#)
                .unwrap_err()
                .contains("need")
        );
    }

    #[test]
    fn per_user_and_per_session_get_their_caps() {
        let p = parse(r#"{"instances": "per-user", "maxInstances": 3, "idleSeconds": 5}"#).unwrap();
        assert_eq!(
            (p.mode, p.max_instances, p.max_per_user, p.idle),
            (InstanceMode::PerUser, 3, 1, Duration::from_secs(5))
        );
        let p = parse(r#"{"instances": "per-session"}"#).unwrap();
        assert_eq!((p.max_instances, p.max_per_user), (16, 4));
    }

    #[test]
    fn impossible_caps_are_refused() {
        for bad in [
            r#"{"instances": "per-user", "maxInstancesPerUser": 2}"#,
            r#"{"instances": "per-session", "maxInstances": 0}"#,
            r#"{"instances": "per-session", "maxInstances": 2, "maxInstancesPerUser": 3}"#,
            r#"{"instances": "per-session", "idleSeconds": 0}"#,
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert!(parse(r#"{"instances": "per-process"}"#).is_err());
    }
}
