//! `gigmcp`: the gateway and its operator commands. Thin by design: parse the command line
//! (`cli.rs`), set up logging, and hand over to one file per command in `commands/` (start-up
//! and shutdown order live in `gig-server`).

#![forbid(unsafe_code)]

mod cli;
mod commands;

/// mimalloc, not glibc's malloc: a call allocates and frees many small objects (rmcp, hyper,
/// serde), and glibc's allocator took a quarter of the gateway's CPU under load (decision 77).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use cli::{Cli, Command, SandboxAction, VaultAction};
use gig_config::{GatewayConfig, LogConfig, ProcessEnv, StoreConfig};

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
