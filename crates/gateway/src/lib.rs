//! Gig'MCP's core: one MCP endpoint in front of many MCP servers.
//!
//! Owns aggregation (naming, routing, the catalog), supervision (start, restart with backoff,
//! bounded calls) and the `/mcp` HTTP surface. How a backend is started is behind
//! [`Launcher`]: plain stdio children here, sandboxes in `gig-runtime`; start-up and shutdown
//! order belong to `gig-server`. It treats every backend as hostile: a backend
//! can fail its own calls and nothing else. It never reads the environment itself (see
//! `gig-config`) and never holds a credential beyond the static token's digest.

#![forbid(unsafe_code)]

pub mod aggregator;
pub mod audit;
pub mod audit_writer;
pub mod backend;
pub mod backend_client;
mod call_relay;
pub mod catalog;
pub mod http;
pub mod hub;
mod instances;
pub mod launcher;
pub mod naming;
pub mod profile;
pub mod rugpull;
mod session_relay;
pub mod stdout_guard;
mod subscriptions;
mod supervisor;
mod sync;
pub mod trace;

use gig_config::{ServerName, ServerSpec};

pub use hub::Hub;
pub use instances::{InstanceOwner, Lease};
pub use launcher::{Launcher, StdioLauncher};
pub use subscriptions::ResourceSubscriptions;

/// A backend's name and how to start it.
pub type NamedLauncher = (ServerName, Box<dyn Launcher>);

/// Launchers for servers that are all plain stdio children (tests, and files without
/// sandboxed entries).
pub fn stdio_launchers(
    specs: Vec<ServerSpec>,
    parent_env: &[(String, String)],
) -> Vec<NamedLauncher> {
    specs
        .into_iter()
        .map(|spec| {
            let launcher =
                StdioLauncher::new(spec.name.to_string(), spec.command, parent_env.to_vec());
            (spec.name, Box::new(launcher) as Box<dyn Launcher>)
        })
        .collect()
}
