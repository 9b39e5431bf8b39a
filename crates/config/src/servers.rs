//! The `mcpServers` file: the format Claude Desktop, Cursor and other clients use, so operators
//! can bring their existing configuration unchanged.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use gig_policy::{CredentialSpec, EgressPolicy, EgressRule, IpNet, ResourceLimits};
use serde::Deserialize;

/// A validated backend declaration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSpec {
    /// The key under `mcpServers`; unique, non-empty, at most 128 bytes.
    pub name: String,
    pub command: StdioCommand,
    /// Run inside the sandbox (bubblewrap + bootstrap + seccomp) instead of as a plain child.
    pub sandbox: Option<SandboxPolicy>,
}

/// What a sandboxed server may see and do besides the system runtime (`/usr` and friends): the
/// same policy an index entry carries, so a hand-declared server is protected the same way.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SandboxPolicy {
    /// Host paths bound read-only at the same place (the program itself is always bound).
    pub bind_ro: Vec<PathBuf>,
    /// cgroup limits (and RLIMIT_NPROC); every field is filled with a default.
    pub limits: ResourceLimits,
    /// Hosts the server may reach through the egress proxy and the credentials it gets as
    /// placeholders. Empty: no network at all.
    pub egress: EgressPolicy,
}

/// How to start a stdio MCP server as a child process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StdioCommand {
    pub program: String,
    pub args: Vec<String>,
    /// Variables set for the child on top of a minimal inherited set (see the gateway's
    /// `StdioLauncher`); values may hold secrets and are never logged.
    pub env: BTreeMap<String, String>,
    pub cwd: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServersFileError {
    #[error("cannot read servers file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("servers file {path} is not valid: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("servers file {path}: server {name:?}: {reason}")]
    Server {
        path: PathBuf,
        name: String,
        reason: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(rename = "mcpServers")]
    mcp_servers: BTreeMap<String, RawServer>,
}

/// Fields other clients write into the same file are accepted so a file works unchanged;
/// anything unknown is refused so a typo never silently drops a setting.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    command: Option<String>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    cwd: Option<PathBuf>,
    #[serde(rename = "type")]
    transport: Option<String>,
    url: Option<String>,
    #[serde(default)]
    disabled: bool,
    /// Gig'MCP's own extension: `"sandbox": {}` or `{"bindRo": [...], "maxProcesses": 64}`.
    sandbox: Option<RawSandbox>,
    // Client-side UI hints from Claude Desktop / Cline; meaningless to a gateway.
    #[serde(rename = "autoApprove", default)]
    _auto_approve: serde_json::Value,
    #[serde(rename = "alwaysAllow", default)]
    _always_allow: serde_json::Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawSandbox {
    #[serde(default)]
    bind_ro: Vec<PathBuf>,
    max_processes: Option<u64>,
    memory_bytes: Option<u64>,
    cpu_millis: Option<u32>,
    #[serde(default)]
    egress: Vec<EgressRule>,
    #[serde(default)]
    allow_addresses: Vec<IpNet>,
    #[serde(default)]
    credentials: Vec<CredentialSpec>,
}

const MAX_NAME_BYTES: usize = 128;
/// Defaults a sandboxed server gets when its declaration says nothing.
pub const DEFAULT_LIMITS: ResourceLimits = ResourceLimits {
    memory_bytes: Some(512 << 20),
    max_processes: Some(256),
    cpu_millis: Some(1000),
};

/// Reads and validates a servers file. Disabled servers are left out.
pub fn parse_servers_file(path: &Path) -> Result<Vec<ServerSpec>, ServersFileError> {
    let bytes = std::fs::read(path).map_err(|source| ServersFileError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_servers_json(path, &bytes)
}

fn parse_servers_json(path: &Path, bytes: &[u8]) -> Result<Vec<ServerSpec>, ServersFileError> {
    let raw: RawFile = serde_json::from_slice(bytes).map_err(|source| ServersFileError::Parse {
        path: path.to_owned(),
        source,
    })?;
    let fail = |name: &str, reason: &str| ServersFileError::Server {
        path: path.to_owned(),
        name: name.to_owned(),
        reason: reason.to_owned(),
    };
    let mut specs = Vec::new();
    for (name, server) in raw.mcp_servers {
        // `@` is reserved for the gateway's own vault scopes (registry logins).
        if name.starts_with('@') {
            return Err(fail(&name, "names starting with '@' are reserved"));
        }
        if name.is_empty() || name.len() > MAX_NAME_BYTES || name.chars().any(char::is_control) {
            return Err(fail(
                &name,
                "name must be 1-128 bytes without control characters",
            ));
        }
        if server.disabled {
            continue;
        }
        match server.transport.as_deref() {
            None | Some("stdio") => {}
            Some(other) => {
                return Err(fail(
                    &name,
                    &format!("transport {other:?} is not supported yet; only stdio"),
                ));
            }
        }
        if server.url.is_some() {
            return Err(fail(
                &name,
                "remote (url) servers are not supported yet; only stdio",
            ));
        }
        let program = server
            .command
            .filter(|c| !c.trim().is_empty())
            .ok_or_else(|| fail(&name, "\"command\" is required"))?;
        if let Some(key) = server
            .env
            .keys()
            .find(|k| k.is_empty() || k.contains('=') || k.contains('\0'))
        {
            return Err(fail(&name, &format!("invalid env variable name {key:?}")));
        }
        if program.contains('\0') || server.args.iter().any(|a| a.contains('\0')) {
            return Err(fail(&name, "command and args must not contain NUL"));
        }
        let sandbox = match server.sandbox {
            None => None,
            Some(raw) => {
                if !Path::new(&program).is_absolute() {
                    return Err(fail(
                        &name,
                        "a sandboxed server's command must be an absolute path (it is bound into the sandbox)",
                    ));
                }
                if let Some(bad) = raw.bind_ro.iter().find(|p| !p.is_absolute()) {
                    return Err(fail(
                        &name,
                        &format!("bindRo path {bad:?} must be absolute"),
                    ));
                }
                let egress = EgressPolicy {
                    allow: raw.egress,
                    allow_addresses: raw.allow_addresses,
                    credentials: raw.credentials,
                };
                egress.validate().map_err(|e| fail(&name, &e.to_string()))?;
                if let Some(c) = egress
                    .credentials
                    .iter()
                    .find(|c| server.env.contains_key(&c.env))
                {
                    return Err(fail(
                        &name,
                        &format!("{} is both a credential and a plain env variable", c.env),
                    ));
                }
                if raw.memory_bytes.is_some_and(|m| m < 16 << 20) {
                    return Err(fail(&name, "memoryBytes below 16 MiB cannot run a server"));
                }
                Some(SandboxPolicy {
                    bind_ro: raw.bind_ro,
                    limits: ResourceLimits {
                        memory_bytes: raw.memory_bytes.or(DEFAULT_LIMITS.memory_bytes),
                        max_processes: Some(
                            raw.max_processes
                                .or(DEFAULT_LIMITS.max_processes)
                                .unwrap_or(1)
                                .max(1),
                        ),
                        cpu_millis: raw
                            .cpu_millis
                            .or(DEFAULT_LIMITS.cpu_millis)
                            .map(|c| c.max(1)),
                    },
                    egress,
                })
            }
        };
        specs.push(ServerSpec {
            name,
            sandbox,
            command: StdioCommand {
                program,
                args: server.args,
                env: server.env,
                cwd: server.cwd,
            },
        });
    }
    Ok(specs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Vec<ServerSpec>, ServersFileError> {
        parse_servers_json(Path::new("servers.json"), json.as_bytes())
    }

    #[test]
    fn claude_desktop_file_parses_unchanged() {
        let specs = parse(
            r#"{"mcpServers": {
                "time": {"command": "mcp-server-time", "args": ["--local-timezone", "UTC"],
                         "env": {"TZ": "UTC"}, "autoApprove": ["get_current_time"]},
                "echo": {"type": "stdio", "command": "echo-mcp"},
                "off":  {"command": "x", "disabled": true}
            }}"#,
        )
        .unwrap();
        assert_eq!(specs.len(), 2);
        assert_eq!(specs[0].name, "echo");
        assert_eq!(specs[1].name, "time");
        assert_eq!(specs[1].command.args, ["--local-timezone", "UTC"]);
        assert_eq!(specs[1].command.env["TZ"], "UTC");
    }

    #[test]
    fn sandbox_policy_is_parsed_and_checked() {
        let specs = parse(
            r#"{"mcpServers": {"s": {"command": "/opt/s", "sandbox": {"bindRo": ["/opt/data"], "maxProcesses": 8}},
                               "d": {"command": "/opt/d", "sandbox": {}}}}"#,
        )
        .unwrap();
        assert_eq!(
            specs[0].sandbox,
            Some(SandboxPolicy {
                bind_ro: vec![],
                limits: DEFAULT_LIMITS,
                egress: EgressPolicy::default(),
            })
        );
        assert_eq!(
            specs[1].sandbox.as_ref().unwrap().limits.max_processes,
            Some(8)
        );
        assert_eq!(
            specs[1].sandbox.as_ref().unwrap().bind_ro,
            [PathBuf::from("/opt/data")]
        );
        for (json, needle) in [
            (
                r#"{"mcpServers": {"s": {"command": "rel", "sandbox": {}}}}"#,
                "absolute",
            ),
            (
                r#"{"mcpServers": {"s": {"command": "/x", "sandbox": {"bindRo": ["rel"]}}}}"#,
                "absolute",
            ),
            (
                r#"{"mcpServers": {"s": {"command": "/x", "sandbox": {"network": true}}}}"#,
                "network",
            ),
            (
                r#"{"mcpServers": {"s": {"command": "/x", "sandbox": {"egress": ["*.com"]}}}}"#,
                "wildcard",
            ),
            (
                r#"{"mcpServers": {"s": {"command": "/x", "sandbox": {"memoryBytes": 1024}}}}"#,
                "16 MiB",
            ),
            (
                r#"{"mcpServers": {"s": {"command": "/x", "env": {"K": "v"}, "sandbox": {"credentials": [
                    {"env": "K", "hosts": ["a.example"], "inject": {"type": "query", "param": "k"}}]}}}}"#,
                "both a credential",
            ),
            (
                r#"{"mcpServers": {"s": {"command": "/x", "sandbox": {"credentials": [
                    {"env": "K", "hosts": [], "inject": {"type": "query", "param": "k"}}]}}}}"#,
                "at least one host",
            ),
        ] {
            let err = parse(json).expect_err(json).to_string();
            assert!(err.contains(needle), "{err}");
        }
    }

    #[test]
    fn egress_policy_and_credentials_are_read() {
        let specs = parse(
            r#"{"mcpServers": {"f": {"command": "/opt/f", "sandbox": {
                "egress": ["api.example.com", "*.example.org:443,8443"],
                "allowAddresses": ["127.0.0.1/32"],
                "memoryBytes": 67108864, "cpuMillis": 250,
                "credentials": [{"env": "API_KEY", "secret": "example-key", "hosts": ["api.example.com"],
                                 "inject": {"type": "header", "name": "Authorization", "template": "Bearer {}"}}]}}}}"#,
        )
        .unwrap();
        let policy = specs[0].sandbox.as_ref().unwrap();
        assert!(policy.egress.rule_for("api.example.com", 443).is_some());
        assert!(policy.egress.rule_for("x.example.org", 8443).is_some());
        assert!(policy.egress.rule_for("example.org", 443).is_none());
        assert_eq!(policy.egress.allow_addresses[0].to_string(), "127.0.0.1/32");
        assert_eq!(policy.egress.credentials[0].secret_name(), "example-key");
        assert_eq!(policy.limits.memory_bytes, Some(64 << 20));
        assert_eq!(policy.limits.cpu_millis, Some(250));
        assert_eq!(policy.limits.max_processes, DEFAULT_LIMITS.max_processes);
    }

    #[test]
    fn bad_entries_are_refused_with_their_name() {
        for (json, needle) in [
            (r#"{"mcpServers": {"a": {}}}"#, "command"),
            (
                r#"{"mcpServers": {"a": {"command": "x", "typo": 1}}}"#,
                "typo",
            ),
            (
                r#"{"mcpServers": {"a": {"url": "https://x", "command": "x"}}}"#,
                "remote",
            ),
            (
                r#"{"mcpServers": {"a": {"type": "sse", "command": "x"}}}"#,
                "sse",
            ),
            (r#"{"mcpServers": {"": {"command": "x"}}}"#, "name"),
            (
                r#"{"mcpServers": {"a": {"command": "x", "env": {"A=B": "1"}}}}"#,
                "env",
            ),
            (r#"{"servers": {}}"#, "servers"),
            ("not json", "not valid"),
        ] {
            let err = parse(json).expect_err(json).to_string();
            assert!(err.contains(needle), "{err} should mention {needle}");
        }
    }
}
