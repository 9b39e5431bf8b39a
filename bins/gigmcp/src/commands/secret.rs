//! `gigmcp secret set|list|delete`: stored secrets. Values come from stdin or a file, never
//! from arguments (which other users can read in /proc).

use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context, bail};
use gig_config::StoreConfig;
use gig_store::CredentialScope;

use super::open_secrets;
use crate::cli::SecretAction;

/// Largest secret value accepted from stdin or a file.
const MAX_SECRET_BYTES: u64 = 64 * 1024;

fn read_value(file: Option<PathBuf>) -> anyhow::Result<Vec<u8>> {
    let mut value = Vec::new();
    match &file {
        Some(path) => std::fs::File::open(path)
            .with_context(|| format!("cannot read {}", path.display()))?
            .take(MAX_SECRET_BYTES + 1)
            .read_to_end(&mut value)?,
        None => std::io::stdin()
            .take(MAX_SECRET_BYTES + 1)
            .read_to_end(&mut value)?,
    };
    if value.len() as u64 > MAX_SECRET_BYTES {
        bail!("secret values are limited to {MAX_SECRET_BYTES} bytes");
    }
    // A trailing newline from `echo` or an editor is never part of a key.
    while value.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        value.pop();
    }
    if value.is_empty() {
        bail!("empty secret value");
    }
    Ok(value)
}

/// Servers installed in the store or declared in `GIG_SERVERS_FILE` (when it is set).
async fn known_servers(
    secrets: &gig_secrets::Secrets,
) -> anyhow::Result<std::collections::BTreeSet<String>> {
    let mut known: std::collections::BTreeSet<String> = secrets
        .store()
        .list_servers()
        .await?
        .into_iter()
        .map(|s| s.name)
        .collect();
    let config = gig_config::GatewayConfig::servers_file(&gig_config::ProcessEnv);
    if let Some(path) = config {
        let declared = gig_config::parse_servers_file(&path)?;
        known.extend(declared.local.into_iter().map(|s| s.name.into()));
        known.extend(declared.remote.into_iter().map(|r| r.name.into()));
    }
    Ok(known)
}

pub async fn run(config: StoreConfig, action: SecretAction) -> anyhow::Result<()> {
    let secrets = open_secrets(&config).await?;
    let scope = |server| CredentialScope {
        server,
        user_id: None,
        profile_id: None,
    };
    match action {
        SecretAction::Set { server, name, file } => {
            let name = gig_policy::CredentialName::parse(&name).map_err(anyhow::Error::msg)?;
            let value = zeroize::Zeroizing::new(read_value(file)?);
            let known = known_servers(&secrets).await?;
            secrets.set(&scope(&server), name.as_str(), &value).await?;
            println!("stored {name} for {server}");
            if !known.contains(&server) {
                // Stored anyway: declaring or installing the server may come next.
                let listed = if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.into_iter().collect::<Vec<_>>().join(", ")
                };
                eprintln!(
                    "warning: no server named {server:?} is installed or declared in GIG_SERVERS_FILE \
                     (known: {listed}); the secret waits for one of that name"
                );
            }
        }
        SecretAction::List { server } => {
            for meta in secrets.list(server.as_deref()).await? {
                println!(
                    "{}\t{}\tkey {}\tupdated {}",
                    meta.server, meta.name, meta.key_id, meta.updated_at
                );
            }
        }
        SecretAction::Delete { server, name } => {
            // Any stored name, so that one written before names had a rule can still go.
            if !secrets.delete(&scope(&server), &name).await? {
                bail!("no secret {name} for {server}");
            }
            println!("deleted {name} for {server}");
        }
    }
    secrets.store().close().await;
    Ok(())
}
