//! `gigmcp`: the gateway and its operator commands. Thin by design: parse the command line, set
//! up logging, and hand over to one file per command in `commands/` (start-up and shutdown
//! order live in `gig-server`).

#![forbid(unsafe_code)]

mod commands;

/// mimalloc, not glibc's malloc: a call allocates and frees many small objects (rmcp, hyper,
/// serde), and glibc's allocator took a quarter of the gateway's CPU under load (decision 77).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use gig_config::{GatewayConfig, LogConfig, ProcessEnv, StoreConfig};

#[derive(Parser)]
#[command(
    version,
    about = "Gig'MCP: one MCP endpoint in front of many MCP servers"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway (the default). Configuration comes from GIG_* variables.
    Serve,
    /// Manage stored secrets (values are read from stdin or a file, never from arguments).
    Secret {
        #[command(subcommand)]
        action: SecretAction,
    },
    /// Vault maintenance.
    Vault {
        #[command(subcommand)]
        action: VaultAction,
    },
    /// Run a command in the sandbox a server gets, for debugging.
    Sandbox {
        #[command(subcommand)]
        action: SandboxAction,
    },
    /// Install a server from the signed index (GIG_INDEX_URL, GIG_INDEX_PUBKEYS): `echo` or
    /// `echo@1.2.0`.
    Install { reference: String },
    /// Remove an installed server (its cached image stays for a reinstall).
    Uninstall { name: String },
    /// List installed servers.
    List,
    /// Check the host and the configuration the gateway needs, one line per check with the
    /// fix; exits 1 when something required is broken.
    Doctor,
    /// Review tool definitions that changed since first seen (hidden until approved).
    Tools {
        #[command(subcommand)]
        action: ToolsAction,
    },
}

#[derive(Debug, Subcommand)]
pub enum ToolsAction {
    /// List a server's recorded tools, marking the ones whose definition changed.
    List { server: String },
    /// Trust a tool's changed definition; a running gateway shows it within seconds.
    Approve { server: String, tool: String },
}

#[derive(Debug, Subcommand)]
pub enum SandboxAction {
    /// Run COMMAND ARGS... in exactly the sandbox a server gets (namespaces, bootstrap,
    /// seccomp, limits), with stdio passed through; exits with the command's status.
    Exec {
        /// Bind a host path read-only at the same place (repeatable).
        #[arg(long = "bind-ro", value_name = "PATH")]
        bind_ro: Vec<PathBuf>,
        /// Allow egress to HOST[:PORT] through the proxy (repeatable).
        #[arg(long = "allow-host", value_name = "HOST[:PORT]")]
        allow_host: Vec<String>,
        /// The command (an absolute path inside the sandbox) and its arguments.
        #[arg(last = true, required = true)]
        command: Vec<std::ffi::OsString>,
    },
}

#[derive(Debug, Subcommand)]
pub enum SecretAction {
    /// Store (or replace) a secret for a server. The value is read from stdin unless --file.
    Set {
        server: String,
        name: String,
        /// Read the value from this file instead of stdin.
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// List stored secrets: names, servers and key ids — never values.
    List { server: Option<String> },
    /// Delete a secret.
    Delete { server: String, name: String },
}

#[derive(Debug, Subcommand)]
pub enum VaultAction {
    /// Re-wrap every secret under a new master key (from GIG_NEW_MASTER_KEY or --new-key-file),
    /// in one transaction. Safe to re-run after an interruption.
    Rotate {
        #[arg(long)]
        new_key_file: Option<PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Held for the whole run: dropping it flushes the spans not yet exported.
    let _telemetry = gig_telemetry::init(
        &LogConfig::from_env(&ProcessEnv)?,
        &gig_config::TracesConfig::from_env(&ProcessEnv)?,
    )?;
    let store = || StoreConfig::from_env(&ProcessEnv);
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let config = GatewayConfig::from_env(&ProcessEnv)?;
            runtime(config.worker_threads)?.block_on(commands::serve::run(config))
        }
        // Operator commands need only the store and the master key, not the client token.
        Command::Secret { action } => runtime(1)?.block_on(commands::secret::run(store()?, action)),
        Command::Vault {
            action: VaultAction::Rotate { new_key_file },
        } => runtime(1)?.block_on(commands::vault::rotate(store()?, new_key_file)),
        Command::Install { reference } => {
            runtime(1)?.block_on(commands::install::install(store()?, &reference))
        }
        Command::Uninstall { name } => {
            runtime(1)?.block_on(commands::install::uninstall(store()?, &name))
        }
        Command::List => runtime(1)?.block_on(commands::install::list(store()?)),
        Command::Doctor => std::process::exit(runtime(1)?.block_on(commands::doctor::run())?),
        Command::Tools { action } => runtime(1)?.block_on(commands::tools::run(store()?, action)),
        Command::Sandbox {
            action:
                SandboxAction::Exec {
                    bind_ro,
                    allow_host,
                    command,
                },
        } => {
            let code =
                runtime(1)?.block_on(commands::sandbox_exec::run(bind_ro, allow_host, command))?;
            std::process::exit(code)
        }
    }
}

/// One thread by default: on small machines, cross-thread wake-ups cost more than the
/// parallelism gains (decision 18, docs/design/gateway.md).
fn runtime(threads: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(threads);
        builder
    };
    Ok(builder.enable_all().build()?)
}
