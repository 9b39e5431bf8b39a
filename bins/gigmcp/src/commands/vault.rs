//! `gigmcp vault rotate`: re-wraps every secret under a new master key in one transaction.

use std::path::PathBuf;

use anyhow::Context;
use gig_config::{ProcessEnv, StoreConfig};
use gig_server::boot::master_key;
use gig_vault::MasterKey;

use super::open_store;

pub async fn rotate(config: StoreConfig, new_key_file: Option<PathBuf>) -> anyhow::Result<()> {
    let old = master_key(&ProcessEnv, "GIG_MASTER_KEY")?;
    let new = match new_key_file {
        Some(path) => {
            let text = zeroize::Zeroizing::new(
                std::fs::read_to_string(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?,
            );
            MasterKey::from_hex(text.trim())?
        }
        None => master_key(&ProcessEnv, "GIG_NEW_MASTER_KEY")?,
    };
    let store = open_store(&config).await?;
    let count = gig_secrets::rotate(&store, &old, &new).await?;
    store.close().await;
    println!("re-wrapped {count} secrets; set GIG_MASTER_KEY to the new key before the next start");
    Ok(())
}
