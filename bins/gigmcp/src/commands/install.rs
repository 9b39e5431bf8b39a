//! `gigmcp install|uninstall|list`: servers from the signed index. A running gateway follows
//! the store within seconds (and so does every replica sharing it).

use std::sync::Arc;

use anyhow::bail;
use gig_config::{InstallConfig, ProcessEnv, StoreConfig};

use super::open_secrets;

/// Installs `reference` (`echo` or `echo@1.2.0`) with a progress line on stderr.
pub async fn install(config: StoreConfig, reference: &str) -> anyhow::Result<()> {
    let install = InstallConfig::from_env(&ProcessEnv)?;
    let secrets = Arc::new(open_secrets(&config).await?);
    let installer = gig_server::boot::installer(&config, &install, secrets.clone())?;
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let installed = installer
        .install(reference, &|p| print_progress(&p, terminal))
        .await;
    // The status line ends before anything else is printed, an error included.
    if terminal {
        eprintln!();
    }
    let record = installed?;
    println!(
        "installed {} {} ({}); a running gateway starts it within seconds",
        record.name, record.version, record.image_digest
    );
    secrets.store().close().await;
    Ok(())
}

pub async fn uninstall(config: StoreConfig, name: &str) -> anyhow::Result<()> {
    let secrets = open_secrets(&config).await?;
    if !secrets.store().delete_server(name).await? {
        bail!("{name:?} is not installed");
    }
    println!("uninstalled {name}; a running gateway stops it within seconds");
    secrets.store().close().await;
    Ok(())
}

pub async fn list(config: StoreConfig) -> anyhow::Result<()> {
    let secrets = open_secrets(&config).await?;
    let servers = secrets.store().list_servers().await?;
    if servers.is_empty() {
        println!("no servers installed");
    }
    for s in servers {
        println!(
            "{}\t{}\t{}\t{}",
            s.name,
            s.version,
            s.state.as_str(),
            s.image_digest
        );
    }
    secrets.store().close().await;
    Ok(())
}

/// Progress on stderr: one status line rewritten in place at a terminal; elsewhere (a file, a
/// pipe, CI) one plain line per step, without escape codes.
fn print_progress(progress: &gig_registry::InstallProgress, terminal: bool) {
    use std::io::Write;
    let mut err = std::io::stderr().lock();
    let _ = if terminal {
        write!(err, "\r\x1b[2K{progress}")
    } else {
        writeln!(err, "{progress}")
    };
    let _ = err.flush();
}
