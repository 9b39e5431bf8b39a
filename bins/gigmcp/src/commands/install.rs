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
    let record = match installed {
        Ok(record) => record,
        // A dev index (`make run`) names images that live only in a local OCI layout: say so
        // when the registry it names cannot be reached and no layout is set.
        Err(e) if install.oci_layout.is_none() && unreachable(&e) => {
            return Err(anyhow::Error::new(e).context(
                "the image's registry cannot be reached; for `make run`'s dev index the images \
                 are in a local OCI layout: set GIG_OCI_LAYOUT (make run prints the export lines)",
            ));
        }
        Err(e) => return Err(e.into()),
    };
    let what = match gig_registry::InstalledServer::from_record(&record) {
        Ok(gig_registry::InstalledServer::Remote { spec, .. }) => {
            let mut what = format!("remote, {}", spec.url);
            for name in spec.credentials() {
                what.push_str(&format!(
                    "; it needs credential {name}: gigmcp secret set {} {name}",
                    record.name
                ));
            }
            what
        }
        _ => record.image_digest.clone(),
    };
    println!(
        "installed {} {} ({what}); a running gateway starts it within seconds",
        record.name, record.version
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
            if s.image_digest.is_empty() {
                "remote"
            } else {
                &s.image_digest
            }
        );
    }
    secrets.store().close().await;
    Ok(())
}

/// Whether an install failed because a registry could not be reached at all.
fn unreachable(e: &gig_registry::InstallError) -> bool {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    ["Connection refused", "error sending request", "dns error"]
        .iter()
        .any(|m| text.contains(m))
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
