//! `gigmcp tools list|approve`: the rug-pull check's review side.

use anyhow::bail;
use gig_config::StoreConfig;

use super::open_store;
use crate::cli::ToolsAction;

pub async fn run(config: StoreConfig, action: ToolsAction) -> anyhow::Result<()> {
    let store = open_store(&config).await?;
    match action {
        ToolsAction::List { server } => {
            let tools = store.list_fingerprints(&server).await?;
            if tools.is_empty() {
                println!("no tools recorded for {server:?} (it records them at its first start)");
            }
            for t in tools {
                let state = match &t.pending_fingerprint {
                    Some(p) => format!("CHANGED, hidden (pending {})", &p[..12.min(p.len())]),
                    None => "trusted".into(),
                };
                println!(
                    "{}\t{}\t{}",
                    t.tool,
                    &t.sha256[..12.min(t.sha256.len())],
                    state
                );
            }
        }
        ToolsAction::Approve { server, tool } => {
            let Some(fp) = store.get_fingerprint(&server, &tool).await? else {
                bail!("no tool {tool:?} is recorded for server {server:?}");
            };
            let Some(pending) = fp.pending_fingerprint else {
                bail!("{server}/{tool} has no changed definition waiting for approval");
            };
            store.approve_fingerprint(&server, &tool, &pending).await?;
            let detail = serde_json::json!({"tool": tool, "approved": pending});
            store
                .append_audit(&gig_store::AuditEntry {
                    actor: "operator",
                    action: "tool.definition_approved",
                    target: &format!("{server}/{tool}"),
                    result: "ok",
                    detail: &detail,
                })
                .await?;
            println!("approved the new definition of {server}/{tool}");
        }
    }
    store.close().await;
    Ok(())
}
