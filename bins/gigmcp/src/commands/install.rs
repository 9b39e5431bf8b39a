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
    let record = installer
        .install(reference, &|p| print_progress(&p))
        .await?;
    eprintln!();
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

/// One status line on stderr, rewritten in place: `pulling layer 1/2  1.2 MiB / 5.0 MiB`.
fn print_progress(progress: &gig_registry::InstallProgress) {
    use gig_registry::InstallProgress;
    use std::io::Write;
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let line = match progress {
        InstallProgress::Index => "verifying the signed index".to_string(),
        InstallProgress::Pull(p) if p.cached => "image already in the cache".to_string(),
        InstallProgress::Pull(p) if p.layer == 0 => "fetching manifest and config".to_string(),
        InstallProgress::Pull(p) => format!(
            "pulling layer {}/{}  {:.1} MiB / {:.1} MiB",
            p.layer,
            p.layers,
            mib(p.bytes_done),
            mib(p.bytes_total)
        ),
        InstallProgress::Extract => "extracting".to_string(),
        InstallProgress::Record => "recording the install".to_string(),
    };
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "\r\x1b[2K{line}");
    let _ = err.flush();
}
