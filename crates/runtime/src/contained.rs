//! Plain (unsandboxed) stdio servers, each start in a cgroup of its own when the gateway may
//! create cgroups (v2, or a v1 hierarchy: pids, memory or cpu).
//!
//! A plain server runs in its own process group, and teardown also kills the descendants it
//! finds through `/proc` (gig-gateway's `ProcessGroup`). That misses what has been handed to
//! init: a child daemonized by a shell that then exited, or a `setsid` child of a leader that
//! died first; nothing in the process tree links it to the server any more. A cgroup does:
//! the child joins before the program starts
//! (a `/bin/sh` shim writes its own pid into `cgroup.procs`, then `exec`s the program, so even a
//! fork in the program's first instruction lands inside), and teardown kills the whole cgroup.
//! No limits are set: a plain server is the operator's own process, not an untrusted one.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use gig_config::StdioCommand;
use gig_gateway::launcher::{LaunchError, LaunchFuture};
use gig_gateway::{Launcher, StdioLauncher};
use gig_sandbox::{CgroupSupport, SandboxCgroup};

/// Joins the cgroup whose `cgroup.procs` is `$1`, then becomes the program (`$2...`). A failed
/// join is said on stderr and the program still runs (teardown then falls back to the process
/// group and `/proc`).
const JOIN_THEN_EXEC: &str =
    "{ echo $$ > \"$1\"; } 2>/dev/null || echo \"gigmcp: cannot join $1\" >&2; shift; exec \"$@\"";

/// A plain server started in a fresh cgroup each time.
#[derive(Debug)]
pub struct ContainedLauncher {
    name: String,
    command: StdioCommand,
    parent_env: Vec<(String, String)>,
    cgroups: Arc<CgroupSupport>,
}

/// Starts of every plain server in this process: with the pid, a cgroup name no other start
/// has (two servers whose names sanitise alike never share one).
static STARTS: AtomicU64 = AtomicU64::new(0);

impl ContainedLauncher {
    /// `None` when the gateway cannot create cgroups.
    pub fn new(
        name: String,
        command: StdioCommand,
        parent_env: Vec<(String, String)>,
        cgroups: Arc<CgroupSupport>,
    ) -> Option<Self> {
        (!matches!(*cgroups, CgroupSupport::Unavailable { .. })).then_some(ContainedLauncher {
            name,
            command,
            parent_env,
            cgroups,
        })
    }

    /// `plain.<server>-<gateway pid>-<n>`, the form a later start recognises as a leftover of a
    /// dead gateway; characters outside `[A-Za-z0-9._]` become `_` (`n` keeps it unique).
    fn cgroup_name(&self) -> String {
        let server: String = self
            .name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let n = STARTS.fetch_add(1, Ordering::Relaxed);
        format!("plain.{server}-{}-{n}", std::process::id())
    }
}

impl Launcher for ContainedLauncher {
    fn launch(&self) -> LaunchFuture<'_> {
        Box::pin(async move {
            let cgroup = self
                .cgroups
                .create_holder(&self.cgroup_name())
                .ok_or_else(|| LaunchError::Other("cgroups are unavailable".into()))?
                .map_err(|e| LaunchError::Other(e.to_string()))?;
            let procs = cgroup
                .dirs()
                .first()
                .map(|dir| dir.join("cgroup.procs").display().to_string())
                .ok_or_else(|| LaunchError::Other("no cgroup directory was created".into()))?;
            // `exec -x` would be an option to the shell's exec: a program named like one runs
            // from the current directory, as `Command` would have run it.
            let program = if self.command.program.starts_with('-') {
                format!("./{}", self.command.program)
            } else {
                self.command.program.clone()
            };
            let mut args = vec![
                "-c".to_owned(),
                JOIN_THEN_EXEC.to_owned(),
                "gigmcp-join".to_owned(),
                procs,
                program,
            ];
            args.extend(self.command.args.iter().cloned());
            let shim = StdioCommand {
                program: "/bin/sh".to_owned(),
                args,
                env: self.command.env.clone(),
                cwd: self.command.cwd.clone(),
            };
            let launcher = StdioLauncher::new(self.name.clone(), shim, self.parent_env.clone());
            let mut connection = launcher.launch().await?;
            connection.guard = Box::new(Contained {
                process: Some(connection.guard),
                cgroup,
            });
            Ok(connection)
        })
    }
}

/// Tears a contained server down: everything in its cgroup killed, then the process group as
/// before (which reaps the leader), then the empty cgroup removed.
struct Contained {
    process: Option<Box<dyn Send + Sync>>,
    cgroup: SandboxCgroup,
}

impl Drop for Contained {
    fn drop(&mut self) {
        self.cgroup.kill_all();
        drop(self.process.take());
    }
}
