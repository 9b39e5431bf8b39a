//! How the gateway reaches a backend: the [`Launcher`] trait and its stdio implementation.
//!
//! A launcher knows how to produce one live byte channel to an MCP server; everything above it
//! (supervision, aggregation, routing) is the same whether the server is a plain child process,
//! a sandboxed one, or a remote endpoint. The sandbox and registry add launchers; nothing else
//! changes.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::process::Stdio;

use gig_config::{InstancePolicy, StdioCommand};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use rmcp::RoleClient;
use rmcp::service::{ClientInitializeError, RunningService};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, BufReader};
use tokio::process::{Child, Command};

pub use crate::backend_client::BackendClient;
pub use crate::instances::InstanceOwner;

/// A channel to a running MCP server plus whatever must be torn down with it.
pub struct Connection {
    pub channel: Channel,
    /// Dropping this ends the server (kills its process group, closes its bridge).
    pub guard: Box<dyn Send + Sync>,
    /// Told which tool call is running (`None` when it ends), so the egress proxy's audit
    /// records name the call that caused a request. Sandboxed servers only.
    pub on_tool_call: Option<ToolCallHook>,
    /// The server's stderr: the supervisor logs it and keeps its recent lines for operators.
    pub stderr: Option<Stderr>,
}

/// How MCP messages reach the server.
pub enum Channel {
    /// JSON-RPC, one message per line, over a byte stream: a child's stdio, a sandbox's, or a
    /// bridge to a legacy HTTP+SSE server. The supervisor bounds lines and stalled writes.
    Lines {
        reader: Pin<Box<dyn AsyncRead + Send>>,
        writer: Pin<Box<dyn AsyncWrite + Send>>,
    },
    /// A transport that speaks for itself (rmcp's Streamable HTTP client to a remote server):
    /// given the gateway's client handler, it initializes and serves it.
    Serve(ServeFn),
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Channel::Lines { .. } => "Channel::Lines",
            Channel::Serve(_) => "Channel::Serve",
        })
    }
}

/// See [`Channel::Serve`].
pub type ServeFn = Box<
    dyn FnOnce(
            BackendClient,
        ) -> Pin<
            Box<
                dyn Future<
                        Output = Result<
                            RunningService<RoleClient, BackendClient>,
                            ClientInitializeError,
                        >,
                    > + Send,
            >,
        > + Send,
>;

/// A backend's stderr and the values to scrub from it before anyone sees a line.
pub struct Stderr {
    pub reader: Pin<Box<dyn AsyncRead + Send>>,
    /// Secret values the server was given (a plain child's declared environment); a
    /// sandboxed server only ever holds placeholders, so it has none.
    pub scrub: Vec<String>,
}

impl std::fmt::Debug for Stderr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stderr").finish_non_exhaustive()
    }
}

/// See [`Connection::on_tool_call`]: the running call's name (`server/tool`) and its trace span
/// (the parent of the egress requests it causes), or `None` when it ends.
pub type ToolCallHook = std::sync::Arc<dyn Fn(Option<(String, tracing::Span)>) + Send + Sync>;

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Connection")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("cannot start {program:?}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Other(String),
}

pub type LaunchFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Connection, LaunchError>> + Send + 'a>>;

/// Produces a fresh connection to one backend each time it is called (first start and every
/// restart).
pub trait Launcher: Send + Sync + 'static {
    fn launch(&self) -> LaunchFuture<'_>;

    /// Whether callers share this server's one instance (the default) or get their own.
    fn instances(&self) -> InstancePolicy {
        InstancePolicy::default()
    }

    /// Whether the connection listing this server's catalog speaks as some user (a remote
    /// server with accounts per user): then only its tools are listed, since its prompts and
    /// resources would be that user's own data, shown to everyone.
    fn lists_as_a_user(&self) -> bool {
        false
    }

    /// A launcher for `owner`'s own instance, or why they cannot have one yet (a credential
    /// they have not set: the message tells them where). Asked only when [`Self::instances`]
    /// is per-user or per-session.
    fn launcher_for<'a>(&'a self, _owner: &'a InstanceOwner) -> OwnerLaunch<'a> {
        Box::pin(async { Err("this server runs one shared instance".into()) })
    }
}

/// See [`Launcher::launcher_for`].
pub type OwnerLaunch<'a> =
    Pin<Box<dyn Future<Output = Result<Box<dyn Launcher>, OwnerRefusal>> + Send + 'a>>;

/// Why a caller cannot have their own instance yet, in their words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerRefusal {
    pub message: String,
    /// A page where the caller can fix it in a browser (connect their account): offered to
    /// clients that take URL-mode elicitation.
    pub fix_url: Option<String>,
}

impl From<String> for OwnerRefusal {
    fn from(message: String) -> Self {
        OwnerRefusal {
            message,
            fix_url: None,
        }
    }
}

impl From<&str> for OwnerRefusal {
    fn from(message: &str) -> Self {
        message.to_owned().into()
    }
}

/// Variables a stdio child inherits from the gateway. Everything else — notably
/// `GIG_BEARER_TOKEN`, `GIG_MASTER_KEY` and any cloud credentials in the gateway's environment —
/// is withheld: a backend gets only these plus what its declaration names.
const INHERITED_ENV: &[&str] = &[
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "TERM",
];

/// Runs an MCP server as a direct child process speaking JSON-RPC over stdin/stdout.
#[derive(Debug, Clone)]
pub struct StdioLauncher {
    backend: String,
    command: StdioCommand,
    inherited: BTreeMap<String, String>,
}

impl StdioLauncher {
    /// `parent_env` is the gateway's own environment (injected so tests need not mutate it).
    pub fn new(
        backend: impl Into<String>,
        command: StdioCommand,
        parent_env: impl IntoIterator<Item = (String, String)>,
    ) -> Self {
        let inherited = parent_env
            .into_iter()
            .filter(|(k, _)| INHERITED_ENV.contains(&k.as_str()))
            .collect();
        Self {
            backend: backend.into(),
            command,
            inherited,
        }
    }

    /// The exact environment the child gets.
    pub fn child_env(&self) -> BTreeMap<String, String> {
        let mut env = self.inherited.clone();
        env.extend(self.command.env.clone());
        env
    }

    fn spawn(&self) -> Result<Connection, LaunchError> {
        tracing::debug!(backend = %self.backend, program = %self.command.program, "starting a stdio backend");
        let mut command = Command::new(&self.command.program);
        command
            .args(&self.command.args)
            .env_clear()
            .envs(self.child_env())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so teardown reaches grandchildren too (npx, uvx, shells).
            .process_group(0)
            .kill_on_drop(true);
        if let Some(cwd) = &self.command.cwd {
            command.current_dir(cwd);
        }
        let mut child = command.spawn().map_err(|source| LaunchError::Spawn {
            program: self.command.program.clone(),
            source,
        })?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(LaunchError::Other("child stdio was not piped".into()));
        };
        // Declared values long enough to be keys are scrubbed from what the server prints.
        let scrub = self
            .command
            .env
            .values()
            .filter(|v| v.len() >= MIN_SCRUBBED)
            .cloned()
            .collect();
        Ok(Connection {
            stderr: Some(Stderr {
                reader: Box::pin(stderr),
                scrub,
            }),
            on_tool_call: None,
            channel: Channel::Lines {
                reader: Box::pin(stdout),
                writer: Box::pin(stdin),
            },
            guard: Box::new(ProcessGroup::new(child)),
        })
    }
}

impl Launcher for StdioLauncher {
    fn launch(&self) -> LaunchFuture<'_> {
        Box::pin(async move { self.spawn() })
    }
}

/// Owns a child process group; dropping it kills the whole group and reaps the leader.
#[derive(Debug)]
pub struct ProcessGroup {
    child: Option<Child>,
    pgid: Option<Pid>,
}

impl ProcessGroup {
    pub fn new(child: Child) -> Self {
        let pgid = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(Pid::from_raw);
        Self {
            child: Some(child),
            pgid,
        }
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        if let Some(pgid) = self.pgid {
            // A descendant that called setsid left the group: found through its parent links
            // while the leader still lives, and killed with the group. (A leader that already
            // died has handed its children to init; the sandbox, not this, contains those.)
            let escaped = descendants(pgid);
            // ESRCH (already gone) is the normal case after a crash.
            let _ = killpg(pgid, Signal::SIGKILL);
            for pid in escaped {
                let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
            }
        }
        if let Some(mut child) = self.child.take() {
            // Reap the leader so it never lingers as a zombie.
            match tokio::runtime::Handle::try_current() {
                Ok(handle) => {
                    handle.spawn(async move {
                        let _ = child.wait().await;
                    });
                }
                Err(_) => {
                    let _ = child.start_kill();
                }
            }
        }
    }
}

/// Every live descendant of `root`, by the parent links in `/proc` (bounded by the process
/// table; a process forked meanwhile may be missed, and is then an orphan of init).
fn descendants(root: Pid) -> Vec<Pid> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut parent_of = std::collections::HashMap::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        // `pid (comm) state ppid ...`: the command may hold spaces and parentheses, so the
        // fields are read after the last `)`.
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<i32>().ok());
        if let Some(ppid) = ppid {
            parent_of.insert(pid, ppid);
        }
    }
    let mut found = Vec::new();
    let mut frontier = vec![root.as_raw()];
    while let Some(parent) = frontier.pop() {
        for (&pid, &ppid) in &parent_of {
            if ppid == parent && !found.contains(&Pid::from_raw(pid)) {
                found.push(Pid::from_raw(pid));
                frontier.push(pid);
            }
        }
    }
    found
}

/// Values shorter than this are not scrubbed from stderr (they would match ordinary words).
const MIN_SCRUBBED: usize = 8;

/// Recent stderr lines of one backend, for operators (`GET /api/servers/{name}/logs`): bounded
/// in lines and line length, scrubbed of the secrets the server was given.
#[derive(Debug, Default)]
pub struct StderrTail(std::sync::Mutex<std::collections::VecDeque<String>>);

impl StderrTail {
    /// Lines kept per backend.
    pub const LINES: usize = 200;

    fn push(&self, line: String) {
        let mut lines = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if lines.len() >= Self::LINES {
            lines.pop_front();
        }
        lines.push_back(line);
    }

    /// The kept lines, oldest first.
    pub fn lines(&self) -> Vec<String> {
        let lines = self.0.lock().unwrap_or_else(|p| p.into_inner());
        lines.iter().cloned().collect()
    }
}

/// `text` with every secret replaced by `[redacted]`.
fn scrubbed(text: &str, secrets: &[String]) -> String {
    secrets.iter().fold(text.to_owned(), |text, secret| {
        text.replace(secret.as_str(), "[redacted]")
    })
}

/// Forwards a backend's stderr to the log and to its tail: bounded lines, at most
/// `STDERR_LINES_PER_SEC` per second (the rest counted and reported as dropped), scrubbed of
/// the secrets it was given. A hostile server flooding stderr must not starve the runtime or
/// fill the operator's disk.
pub async fn log_stderr(backend: String, stderr: Stderr, tail: std::sync::Arc<StderrTail>) {
    const MAX_LINE: u64 = 64 * 1024;
    const MAX_LOGGED: usize = 2048;
    const STDERR_LINES_PER_SEC: u32 = 50;
    let mut lines = BufReader::new(stderr.reader);
    let mut line = Vec::new();
    let mut window = tokio::time::Instant::now();
    let (mut logged, mut dropped) = (0u32, 0u64);
    loop {
        line.clear();
        let mut limited = (&mut lines).take(MAX_LINE);
        match tokio::io::AsyncBufReadExt::read_until(&mut limited, b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if window.elapsed() >= std::time::Duration::from_secs(1) {
            if dropped > 0 {
                tracing::warn!(target: "backend_stderr", backend = %backend, dropped, "stderr lines dropped (rate limit)");
            }
            window = tokio::time::Instant::now();
            (logged, dropped) = (0, 0);
        }
        let text = String::from_utf8_lossy(&line[..line.len().min(MAX_LOGGED)]);
        let text = scrubbed(text.trim_end(), &stderr.scrub);
        if !text.is_empty() {
            if logged < STDERR_LINES_PER_SEC {
                logged += 1;
                tracing::info!(target: "backend_stderr", backend = %backend, "{text}");
                tail.push(text);
            } else {
                dropped += 1;
            }
        }
        tokio::task::yield_now().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(env: &[(&str, &str)]) -> StdioCommand {
        StdioCommand {
            program: "/bin/sh".into(),
            args: vec![],
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            cwd: None,
        }
    }

    #[test]
    fn child_env_withholds_gateway_secrets() {
        let parent = [
            ("PATH", "/usr/bin"),
            ("GIG_BEARER_TOKEN", "secret"),
            ("GIG_MASTER_KEY", "secret"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
            ("HOME", "/root"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let launcher = StdioLauncher::new("t", command(&[("API_KEY", "declared")]), parent);
        let env = launcher.child_env();
        assert_eq!(
            env.keys().map(String::as_str).collect::<Vec<_>>(),
            ["API_KEY", "HOME", "PATH"]
        );
        assert!(!env.values().any(|v| v == "secret"));
    }

    #[test]
    fn declared_env_overrides_inherited() {
        let parent = [("PATH".to_string(), "/usr/bin".to_string())];
        let launcher = StdioLauncher::new("t", command(&[("PATH", "/opt/bin")]), parent);
        assert_eq!(launcher.child_env()["PATH"], "/opt/bin");
    }
}
