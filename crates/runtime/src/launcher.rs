//! A backend run inside the sandbox: bubblewrap + bootstrap + seccomp, through the same
//! [`Launcher`] interface as a plain stdio child, so supervision and aggregation do not change.

use std::sync::Arc;

use gig_config::{InstanceMode, InstancePolicy, ServerName, ServerSpec};
use gig_gateway::launcher::{
    Channel, Connection, LaunchError, LaunchFuture, OwnerLaunch, Stderr, ToolCallHook,
};
use gig_gateway::{InstanceOwner, Launcher, NamedLauncher, StdioLauncher};
use gig_proxy::SecretScope;

use crate::contained::ContainedLauncher;
use crate::sandbox_runtime::{ProgramSource, RunningSandbox, SandboxLaunch, SandboxRuntime};

/// A servers-file entry asks for a sandbox, but this host cannot give one.
#[derive(Debug, thiserror::Error)]
#[error(
    "server {0:?} is declared sandboxed, but the sandbox is unavailable (bubblewrap or bootstrap missing)"
)]
pub struct SandboxUnavailable(pub ServerName);

/// Launchers for the backends declared in the servers file. Sandboxed ones need the runtime;
/// without it a sandboxed declaration is refused (never run unsandboxed by accident).
/// Plain ones run in a cgroup of their own per start when `plain_cgroups` can make one
/// (see [`crate::contained`]), as plain process groups otherwise.
pub fn launchers(
    specs: Vec<ServerSpec>,
    parent_env: &[(String, String)],
    sandbox: Option<Arc<SandboxRuntime>>,
    plain_cgroups: Option<Arc<gig_sandbox::CgroupSupport>>,
) -> Result<Vec<NamedLauncher>, SandboxUnavailable> {
    specs
        .into_iter()
        .map(|spec| {
            let launcher: Box<dyn Launcher> = match (&spec.sandbox, &sandbox) {
                (None, _) => {
                    let contained = plain_cgroups.clone().and_then(|cgroups| {
                        ContainedLauncher::new(
                            spec.name.to_string(),
                            spec.command.clone(),
                            parent_env.to_vec(),
                            cgroups,
                        )
                    });
                    match contained {
                        Some(contained) => Box::new(contained),
                        None => Box::new(StdioLauncher::new(
                            spec.name.to_string(),
                            spec.command,
                            parent_env.to_vec(),
                        )),
                    }
                }
                (Some(policy), Some(runtime)) => Box::new(SandboxLauncher::new(
                    spec.name.to_string(),
                    SandboxLaunch {
                        command: spec.command.clone(),
                        policy: policy.clone(),
                        source: ProgramSource::HostPath,
                    },
                    runtime.clone(),
                )),
                (Some(_), None) => return Err(SandboxUnavailable(spec.name)),
            };
            Ok((spec.name, launcher))
        })
        .collect()
}

/// Starts one declared server in a fresh sandbox per (re)start.
pub struct SandboxLauncher {
    backend: String,
    launch: SandboxLaunch,
    runtime: Arc<SandboxRuntime>,
    /// Whose credentials its proxy injects: the server's, one user's, or (the listing instance
    /// of a per-user or per-session server) nobody's.
    scope: SecretScope,
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
        launch: SandboxLaunch,
        runtime: Arc<SandboxRuntime>,
    ) -> Self {
        // A server with instances of its own per user lists its tools from an instance that
        // serves no user's call: it is given no credential at all.
        let scope = match launch.policy.instances.mode {
            InstanceMode::Shared => SecretScope::Server,
            InstanceMode::PerUser | InstanceMode::PerSession => SecretScope::Nobody,
        };
        Self {
            backend: backend.into(),
            launch,
            runtime,
            scope,
        }
    }

    /// The credentials `user_id` has not set among those this server is given; the first
    /// one's message says where to set it.
    async fn check_user_credentials(&self, user_id: i64) -> Result<(), String> {
        let credentials = &self.launch.policy.egress.credentials;
        if credentials.is_empty() {
            return Ok(());
        }
        let secrets = self.runtime.secrets().ok_or_else(|| {
            format!(
                "server {:?} needs sandbox networking, which this host does not have",
                self.backend
            )
        })?;
        for credential in credentials {
            secrets
                .secret(
                    &self.backend,
                    SecretScope::User(user_id),
                    credential.secret_name(),
                )
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    async fn start(&self) -> Result<Connection, LaunchError> {
        let mut running = self
            .runtime
            .start_for(&self.backend, &self.launch, self.scope)
            .await?;
        let sandbox = &mut running.sandbox;
        let pipe = |what: &str| LaunchError::Other(format!("sandbox {what} was not piped"));
        let stdin = sandbox.child.stdin.take().ok_or_else(|| pipe("stdin"))?;
        let stdout = sandbox.child.stdout.take().ok_or_else(|| pipe("stdout"))?;
        let stderr = sandbox.child.stderr.take().ok_or_else(|| pipe("stderr"))?;
        let io = |e: std::io::Error| LaunchError::Other(format!("sandbox stdio: {e}"));
        let stdin = tokio::process::ChildStdin::from_std(stdin).map_err(io)?;
        let stdout = tokio::process::ChildStdout::from_std(stdout).map_err(io)?;
        let stderr = tokio::process::ChildStderr::from_std(stderr).map_err(io)?;
        let on_tool_call = running.egress.clone().map(|egress| {
            std::sync::Arc::new(move |call: Option<(String, tracing::Span)>| {
                egress.set_tool_call(call.map(|(name, span)| gig_proxy::ToolCall { name, span }))
            }) as ToolCallHook
        });
        Ok(Connection {
            // A sandboxed server holds placeholders only: nothing of its stderr is secret.
            stderr: Some(Stderr {
                reader: Box::pin(stderr),
                scrub: Vec::new(),
            }),
            on_tool_call,
            channel: Channel::Lines {
                reader: Box::pin(stdout),
                writer: Box::pin(stdin),
            },
            guard: Box::new(SandboxGuard(Some(running))),
        })
    }
}

impl Launcher for SandboxLauncher {
    fn launch(&self) -> LaunchFuture<'_> {
        Box::pin(self.start())
    }

    fn instances(&self) -> InstancePolicy {
        self.launch.policy.instances
    }

    /// A sandbox of the owner's own, whose proxy injects that user's credentials only; refused
    /// (with where to set it) while the user lacks one of them.
    fn launcher_for<'a>(&'a self, owner: &'a InstanceOwner) -> OwnerLaunch<'a> {
        Box::pin(async move {
            self.check_user_credentials(owner.user_id).await?;
            Ok(Box::new(SandboxLauncher {
                backend: self.backend.clone(),
                launch: self.launch.clone(),
                runtime: self.runtime.clone(),
                scope: SecretScope::User(owner.user_id),
            }) as Box<dyn Launcher>)
        })
    }
}

/// Ends the sandbox when the connection ends. Killing and reaping bubblewrap blocks briefly,
/// so it happens off the async runtime.
struct SandboxGuard(Option<RunningSandbox>);

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
