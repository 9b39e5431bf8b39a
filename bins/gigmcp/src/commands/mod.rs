//! One file per command (as youki does). Each takes its validated configuration and returns
//! an `anyhow::Result` the binary prints.

pub mod doctor;
pub mod install;
pub mod sandbox_exec;
pub mod secret;
pub mod serve;
pub mod tools;
pub mod vault;

use gig_config::{ProcessEnv, StoreConfig};
use gig_secrets::Secrets;
use gig_store::Store;

async fn open_store(config: &StoreConfig) -> anyhow::Result<Store> {
    Ok(gig_server::boot::open_store(config).await?)
}

async fn open_secrets(config: &StoreConfig) -> anyhow::Result<Secrets> {
    Ok(gig_server::boot::open_secrets(config, &ProcessEnv).await?)
}
