//! The command line: every command and its arguments, as `--help` shows them.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    version,
    about = "Gig'MCP: one MCP endpoint in front of many MCP servers"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
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
