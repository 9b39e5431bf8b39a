//! The `mcpServers` file: the format Claude Desktop, Cursor, VS Code and other clients use, so
//! operators can bring their existing configuration unchanged — local servers (`command`) and
//! remote ones (`url`, with `type` `http`/`streamable-http` or `sse`, and `headers`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use gig_policy::{CredentialSpec, EgressPolicy, EgressRule, IpNet, ResourceLimits, ServerName};
use serde::Deserialize;

use gig_policy::instances::{InstanceMode, InstancePolicy, RawInstances};
use gig_policy::remote::{RawOAuth, RawRemote, RemoteSpec};

/// A validated backend declaration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSpec {
    /// The key under `mcpServers`; unique.
    pub name: ServerName,
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
    /// One shared instance (the default), or one per user or per session.
    pub instances: InstancePolicy,
}

/// Everything a servers file declares: local servers (started by the gateway) and remote ones
/// (reached over HTTP). Names are unique across both.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeclaredServers {
    pub local: Vec<ServerSpec>,
    pub remote: Vec<RemoteSpec>,
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
    /// Remote servers: headers sent with every request (VS Code, Cursor).
    #[serde(default)]
    headers: BTreeMap<String, String>,
    /// Remote servers: non-public addresses it may resolve to.
    #[serde(rename = "allowAddresses", default)]
    allow_addresses: Vec<IpNet>,
    /// Remote servers: OAuth toward the server (Gig'MCP's own extension).
    oauth: Option<RawOAuth>,
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
    #[serde(default)]
    instances: InstanceMode,
    max_instances: Option<usize>,
    max_instances_per_user: Option<usize>,
    idle_seconds: Option<u64>,
}

/// Defaults a sandboxed server gets when its declaration says nothing.
pub const DEFAULT_LIMITS: ResourceLimits = ResourceLimits {
    memory_bytes: Some(512 << 20),
    max_processes: Some(256),
    cpu_millis: Some(1000),
};

/// Reads and validates a servers file. Disabled servers are left out.
pub fn parse_servers_file(path: &Path) -> Result<DeclaredServers, ServersFileError> {
    let bytes = std::fs::read(path).map_err(|source| ServersFileError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_servers_json(path, &bytes)
}

fn parse_servers_json(path: &Path, bytes: &[u8]) -> Result<DeclaredServers, ServersFileError> {
    let raw: RawFile = serde_json::from_slice(bytes).map_err(|source| ServersFileError::Parse {
        path: path.to_owned(),
        source,
    })?;
    let fail = |name: &str, reason: &str| ServersFileError::Server {
        path: path.to_owned(),
        name: name.to_owned(),
        reason: reason.to_owned(),
    };
    let mut declared = DeclaredServers::default();
    for (raw_name, server) in raw.mcp_servers {
        // The rule refuses `@`, which starts the gateway's own vault scopes (registry logins).
        let name = ServerName::parse(&raw_name).map_err(|why| fail(&raw_name, &why))?;
        if server.disabled {
            continue;
        }
        if let Some(url) = &server.url {
            let remote = remote_spec(&name, url, &server).map_err(|why| fail(&raw_name, &why))?;
            declared.remote.push(remote);
            continue;
        }
        let local = local_spec(name, server).map_err(|why| fail(&raw_name, &why))?;
        declared.local.push(local);
    }
    Ok(declared)
}

/// A `command` entry: a program (absolute when sandboxed), its arguments and environment, and
/// the sandbox policy when it asks for one.
fn local_spec(name: ServerName, server: RawServer) -> Result<ServerSpec, String> {
    match server.transport.as_deref() {
        None | Some("stdio") => {}
        Some(other) => {
            return Err(format!(
                "transport {other:?} needs a \"url\" (remote server)"
            ));
        }
    }
    if !server.headers.is_empty() || !server.allow_addresses.is_empty() {
        return Err("headers and allowAddresses are for remote (url) servers; a local server's egress is in \"sandbox\"".to_owned());
    }
    let program = server
        .command
        .filter(|c| !c.trim().is_empty())
        .ok_or_else(|| "\"command\" is required".to_owned())?;
    if let Some(key) = server
        .env
        .keys()
        .find(|k| k.is_empty() || k.contains('=') || k.contains('\0'))
    {
        return Err(format!("invalid env variable name {key:?}"));
    }
    if program.contains('\0') || server.args.iter().any(|a| a.contains('\0')) {
        return Err("command and args must not contain NUL".to_owned());
    }
    let sandbox = match server.sandbox {
        None => None,
        Some(raw) => {
            if !Path::new(&program).is_absolute() {
                return Err("a sandboxed server's command must be an absolute path (it is bound into the sandbox)".to_owned());
            }
            if let Some(bad) = raw.bind_ro.iter().find(|p| !p.is_absolute()) {
                return Err(format!("bindRo path {bad:?} must be absolute"));
            }
            let egress = EgressPolicy {
                allow: raw.egress,
                allow_addresses: raw.allow_addresses,
                credentials: raw.credentials,
            };
            egress.validate().map_err(|e| e.to_string())?;
            if let Some(c) = egress
                .credentials
                .iter()
                .find(|c| server.env.contains_key(&c.env))
            {
                return Err(format!(
                    "{} is both a credential and a plain env variable",
                    c.env
                ));
            }
            if raw.memory_bytes.is_some_and(|m| m < 16 << 20) {
                return Err("memoryBytes below 16 MiB cannot run a server".to_owned());
            }
            let instances = InstancePolicy::from_raw(RawInstances {
                instances: raw.instances,
                max_instances: raw.max_instances,
                max_instances_per_user: raw.max_instances_per_user,
                idle_seconds: raw.idle_seconds,
            })?;
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
                instances,
            })
        }
    };
    Ok(ServerSpec {
        name,
        sandbox,
        command: StdioCommand {
            program,
            args: server.args,
            env: server.env,
            cwd: server.cwd,
        },
    })
}

/// A `url` entry: the remote checks shared with the index (see [`RemoteSpec::from_raw`]), and
/// none of a local server's fields.
fn remote_spec(name: &ServerName, raw_url: &str, server: &RawServer) -> Result<RemoteSpec, String> {
    if server.command.is_some()
        || !server.args.is_empty()
        || !server.env.is_empty()
        || server.cwd.is_some()
        || server.sandbox.is_some()
    {
        return Err("a url server takes no command, args, env, cwd or sandbox".into());
    }
    RemoteSpec::from_raw(
        name,
        &RawRemote {
            url: raw_url.to_owned(),
            transport: server.transport.clone(),
            headers: server.headers.clone(),
            allow_addresses: server.allow_addresses.clone(),
            oauth: server.oauth.clone(),
        },
    )
}

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;
    use gig_policy::remote::{HeaderTemplate, RemoteTransport};

    fn parse(json: &str) -> Result<Vec<ServerSpec>, ServersFileError> {
        parse_servers_json(Path::new("servers.json"), json.as_bytes()).map(|d| d.local)
    }

    fn parse_remote(json: &str) -> Result<Vec<RemoteSpec>, ServersFileError> {
        parse_servers_json(Path::new("servers.json"), json.as_bytes()).map(|d| d.remote)
    }

    #[test]
    fn header_values_never_show_in_debug_output() {
        let template = HeaderTemplate::parse("Bearer sk-literal-secret ${credential:gh}").unwrap();
        let shown = format!("{template:?}");
        assert!(
            !shown.contains("sk-literal-secret") && shown.contains("gh"),
            "{shown}"
        );
    }

    #[test]
    fn remote_servers_in_the_clients_spellings() {
        let remote = parse_remote(
            r#"{"mcpServers": {
                "gh": {"type": "http", "url": "https://api.example.com/mcp",
                       "headers": {"Authorization": "Bearer ${credential:gh-token}", "X-Team": "core"}},
                "cursor": {"url": "https://mcp.example.org/mcp"},
                "legacy": {"type": "sse", "url": "http://10.1.2.3:8080/sse", "allowAddresses": ["10.1.2.3/32"]}
            }}"#,
        )
        .unwrap();
        let names: Vec<_> = remote
            .iter()
            .map(|r| (r.name.as_str(), r.transport))
            .collect();
        assert_eq!(
            names,
            [
                ("cursor", RemoteTransport::StreamableHttp),
                ("gh", RemoteTransport::StreamableHttp),
                ("legacy", RemoteTransport::Sse)
            ]
        );
        assert_eq!(remote[1].credentials(), ["gh-token"]);
        let rendered = remote[1].headers["Authorization"]
            .render(|name| Ok::<_, ()>(format!("<{name}>")))
            .unwrap();
        assert_eq!(rendered, "Bearer <gh-token>");
        assert_eq!(remote[2].allow_addresses[0].to_string(), "10.1.2.3/32");
    }

    #[test]
    fn remote_oauth_is_read_and_its_secret_is_a_declared_credential() {
        let remote = parse_remote(
            r#"{"mcpServers": {"svc": {"url": "https://x/mcp", "oauth": {"grant": "client_credentials",
                "clientId": "gig", "clientSecret": "${credential:svc-secret}"}}}}"#,
        )
        .unwrap();
        assert_eq!(remote[0].credentials(), ["svc-secret"]);
        for (json, needle) in [
            (
                r#"{"mcpServers": {"a": {"url": "https://x/sse", "type": "sse", "oauth": {"grant": "authorization_code"}}}}"#,
                "Streamable HTTP",
            ),
            (
                r#"{"mcpServers": {"a": {"url": "https://x/mcp", "headers": {"authorization": "Bearer ${credential:t}"},
                    "oauth": {"grant": "authorization_code"}}}}"#,
                "sets the Authorization header",
            ),
        ] {
            let err = parse_remote(json).unwrap_err().to_string();
            assert!(err.contains(needle), "{json}: {err}");
        }
    }

    #[test]
    fn remote_entries_are_checked() {
        for (json, needle) in [
            (
                r#"{"mcpServers": {"a": {"url": "http://api.example.com/mcp"}}}"#,
                "plain http",
            ),
            (
                r#"{"mcpServers": {"a": {"url": "ftp://x/mcp"}}}"#,
                "http(s)",
            ),
            (
                r#"{"mcpServers": {"a": {"url": "https://u:p@x/mcp"}}}"#,
                "credentials",
            ),
            (
                r#"{"mcpServers": {"a": {"url": "https://x/mcp", "type": "ws"}}}"#,
                "ws",
            ),
            (
                r#"{"mcpServers": {"a": {"url": "https://x/mcp", "command": "x"}}}"#,
                "no command",
            ),
            (
                r#"{"mcpServers": {"a": {"url": "https://x/mcp", "headers": {"Host": "y"}}}}"#,
                "set by the gateway",
            ),
            (
                r#"{"mcpServers": {"a": {"url": "https://x/mcp", "headers": {"A": "${credential:x"}}}}"#,
                "unclosed",
            ),
            (
                r#"{"mcpServers": {"a": {"url": "https://x/mcp", "headers": {"A": "${credential:a b}"}}}}"#,
                "not a credential name",
            ),
            (
                r#"{"mcpServers": {"a": {"url": "https://x/mcp", "headers": {"A": "x\ny"}}}}"#,
                "control",
            ),
            (
                r#"{"mcpServers": {"a": {"command": "x", "headers": {"A": "b"}}}}"#,
                "remote",
            ),
        ] {
            let err = parse_servers_json(Path::new("s.json"), json.as_bytes())
                .expect_err(json)
                .to_string();
            assert!(err.contains(needle), "{err} should mention {needle}");
        }
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
        assert_eq!(specs[0].name.as_str(), "echo");
        assert_eq!(specs[1].name.as_str(), "time");
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
                instances: Default::default(),
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
            (
                r#"{"mcpServers": {"s": {"command": "/x", "sandbox": {"credentials": [
                    {"env": "K", "secret": "../k", "hosts": ["a.example"], "inject": {"type": "query", "param": "k"}}]}}}}"#,
                "secret \"../k\" is not a credential name",
            ),
            (
                r#"{"mcpServers": {"a": {"url": "https://x/mcp", "headers": {"A": "${credential:.hidden}"}}}}"#,
                "not starting with '.'",
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
                r#"{"mcpServers": {"a": {"type": "sse", "command": "x"}}}"#,
                "sse",
            ),
            (r#"{"mcpServers": {"": {"command": "x"}}}"#, "name"),
            (
                r#"{"mcpServers": {"my server": {"command": "x"}}}"#,
                "[A-Za-z0-9._-]",
            ),
            (
                r#"{"mcpServers": {"../up": {"command": "x"}}}"#,
                "[A-Za-z0-9._-]",
            ),
            (
                r#"{"mcpServers": {"@registry": {"command": "x"}}}"#,
                "[A-Za-z0-9._-]",
            ),
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
