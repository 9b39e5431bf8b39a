//! The host runtime: everything that turns a server declaration or an install into a running,
//! confined process — the sandbox (bubblewrap + bootstrap + cgroup), its network (a veth pair
//! to its own egress proxy listener), the data directory's layout, the vault and audit adapters
//! the proxy needs, and the reconciler that keeps installed servers in step with the store —
//! or into a connection to a remote server under the same address policy (`remote`).
//!
//! It plugs into the MCP layer only through `gig_gateway::Launcher`: `gig-gateway` knows
//! nothing of sandboxes, networks or images. It never reads the environment (see `gig-config`)
//! and never holds a real credential longer than one proxied request (the proxy asks the vault).

#![forbid(unsafe_code)]

pub mod contained;
pub mod data_dir;
pub mod installed;
pub mod instance;
pub mod launcher;
pub mod network;
pub mod remote;
pub mod sandbox_ids;
pub mod sandbox_runtime;
pub mod vault_and_audit;

pub use launcher::{SandboxLauncher, SandboxUnavailable, launchers};
pub use network::{NetConfig, NetworkError, SandboxNetwork};
pub use remote::oauth::{ConnectionState, OAuthError, RefreshLocks, UpstreamOAuth};
pub use remote::{RemoteContext, RemoteLauncher, remote_launchers};
pub use sandbox_runtime::{
    ProgramSource, RunningSandbox, SandboxLaunch, SandboxRuntime, SandboxStartError,
};
pub use vault_and_audit::{StoreAudit, VaultSecrets};
