//! `gigmcp vault rotate`: re-wraps every secret under a new master key in one transaction.

use std::path::PathBuf;

use gig_config::{ProcessEnv, StoreConfig};
use gig_server::boot::master_key;

use super::open_store;

pub async fn rotate(config: StoreConfig, new_key_file: Option<PathBuf>) -> anyhow::Result<()> {
    let old = master_key(&ProcessEnv, "GIG_MASTER_KEY")?;
    let new = match new_key_file {
        // Owner-only, not a symlink, bounded: a key file others can read is refused.
        Some(path) => gig_secrets::read_master_key_file(&path)?,
        None => master_key(&ProcessEnv, "GIG_NEW_MASTER_KEY")?,
    };
    let store = open_store(&config).await?;
    let count = gig_secrets::rotate(&store, &old, &new).await?;
    store.close().await;
    println!("re-wrapped {count} secrets; set GIG_MASTER_KEY to the new key before the next start");
    Ok(())
}
