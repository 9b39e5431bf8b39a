//! A backend run inside the sandbox: bubblewrap + bootstrap + seccomp, through the same
//! [`Launcher`] interface as a plain stdio child, so supervision and aggregation do not change.

use std::path::PathBuf;
use std::sync::Arc;

use gig_config::{SandboxPolicy, StdioCommand};
use gig_sandbox::{Bind, Sandbox, SandboxSpec, Spawner, SystemLayout};

use crate::backend::{Connection, LaunchError, LaunchFuture, Launcher, log_stderr};

/// Starts one declared server in a fresh sandbox per (re)start.
pub struct SandboxLauncher {
    backend: String,
    spec: SandboxSpec,
    spawner: Arc<dyn Spawner + Send + Sync>,
}

impl std::fmt::Debug for SandboxLauncher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxLauncher")
            .field("backend", &self.backend)
            .finish()
    }
}

impl SandboxLauncher {
    /// Only the declared `env` reaches the server: nothing of the gateway's environment does.
    pub fn new(
        backend: impl Into<String>,
        command: &StdioCommand,
        policy: &SandboxPolicy,
        bootstrap: PathBuf,
        spawner: Arc<dyn Spawner + Send + Sync>,
    ) -> Self {
        let mut spec = SandboxSpec::new(&command.program, bootstrap);
        spec.args = command.args.iter().map(Into::into).collect();
        spec.env = command.env.clone();
        spec.env
            .entry("PATH".into())
            .or_insert_with(|| "/usr/local/bin:/usr/bin:/bin".into());
        spec.ro_binds = std::iter::once(Bind::same(&command.program))
            .chain(policy.bind_ro.iter().map(Bind::same))
            .collect();
        spec.max_processes = Some(policy.max_processes);
        spec.layout = SystemLayout::detect();
        Self {
            backend: backend.into(),
            spec,
            spawner,
        }
    }

    fn start(&self) -> Result<Connection, LaunchError> {
        let mut sandbox = self
            .spawner
            .spawn(&self.spec, false)
            .map_err(|e| LaunchError::Other(format!("sandbox: {e}")))?;
        let pipe = |what: &str| LaunchError::Other(format!("sandbox {what} was not piped"));
        let stdin = sandbox.child.stdin.take().ok_or_else(|| pipe("stdin"))?;
        let stdout = sandbox.child.stdout.take().ok_or_else(|| pipe("stdout"))?;
        let stderr = sandbox.child.stderr.take().ok_or_else(|| pipe("stderr"))?;
        let io = |e: std::io::Error| LaunchError::Other(format!("sandbox stdio: {e}"));
        let stdin = tokio::process::ChildStdin::from_std(stdin).map_err(io)?;
        let stdout = tokio::process::ChildStdout::from_std(stdout).map_err(io)?;
        let stderr = tokio::process::ChildStderr::from_std(stderr).map_err(io)?;
        tokio::spawn(log_stderr(self.backend.clone(), stderr));
        Ok(Connection {
            reader: Box::pin(stdout),
            writer: Box::pin(stdin),
            guard: Box::new(SandboxGuard(Some(sandbox))),
        })
    }
}

impl Launcher for SandboxLauncher {
    fn launch(&self) -> LaunchFuture<'_> {
        Box::pin(async move { self.start() })
    }
}

/// Ends the sandbox when the connection ends. Killing and reaping bubblewrap blocks briefly,
/// so it happens off the async runtime.
struct SandboxGuard(Option<Sandbox>);

impl Drop for SandboxGuard {
    fn drop(&mut self) {
        if let Some(sandbox) = self.0.take() {
            match tokio::runtime::Handle::try_current() {
                Ok(handle) => {
                    handle.spawn_blocking(move || drop(sandbox));
                }
                Err(_) => drop(sandbox),
            }
        }
    }
}
