//! `secret-writer URL MASTER_KEY_HEX`: stores secrets `K0, K1, ...` one after another and prints
//! `ack N` after each write is committed. The durability test SIGKILLs it mid-batch and checks
//! that every acknowledged write survived, whole.

use std::io::Write;

use gig_secrets::Secrets;
use gig_store::{CredentialScope, Store};
use gig_vault::MasterKey;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(url), Some(key)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: secret-writer URL MASTER_KEY_HEX");
    };
    let secrets = Secrets::open(Store::open(&url).await?, &MasterKey::from_hex(&key)?).await?;
    let scope = CredentialScope {
        server: "durability",
        user_id: None,
        profile_id: None,
    };
    let mut out = std::io::stdout().lock();
    for n in 0u64.. {
        secrets
            .set(&scope, &format!("K{n}"), format!("value-{n}").as_bytes())
            .await?;
        writeln!(out, "ack {n}")?;
        out.flush()?;
    }
    Ok(())
}
