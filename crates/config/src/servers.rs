//! The `mcpServers` file: the format Claude Desktop, Cursor and other clients use, so operators
//! can bring their existing configuration unchanged.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

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

/// What a sandboxed server may see besides the system runtime (`/usr` and friends).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SandboxPolicy {
    /// Host paths bound read-only at the same place (the program itself is always bound).
    pub bind_ro: Vec<PathBuf>,
    /// RLIMIT_NPROC inside the sandbox.
    pub max_processes: u64,
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
#[serde(deny_unknown_fields)]
struct RawSandbox {
    #[serde(rename = "bindRo", default)]
    bind_ro: Vec<PathBuf>,
    #[serde(rename = "maxProcesses")]
    max_processes: Option<u64>,
}

const MAX_NAME_BYTES: usize = 128;
const DEFAULT_SANDBOX_PROCESSES: u64 = 256;

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
                Some(SandboxPolicy {
                    bind_ro: raw.bind_ro,
                    max_processes: raw
                        .max_processes
                        .unwrap_or(DEFAULT_SANDBOX_PROCESSES)
                        .max(1),
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
                max_processes: 256
            })
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
        ] {
            let err = parse(json).expect_err(json).to_string();
            assert!(err.contains(needle), "{err}");
        }
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
