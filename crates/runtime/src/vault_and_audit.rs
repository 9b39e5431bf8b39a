//! The egress proxy's two gateway-side dependencies: real secrets from the vault, and audit
//! records into the store. Both are written so the proxy never waits on storage longer than a
//! vault read: audit records go through the gateway's bounded, retrying audit writer.

use std::sync::Arc;

use futures::future::BoxFuture;
use gig_gateway::audit_writer::{AuditWriter, OwnedAuditEntry};
use gig_proxy::{
    AuditEvent, AuditSink, Decision, SecretError, SecretScope, SecretSource, Zeroizing,
};
use gig_secrets::Secrets;
use gig_store::{CredentialScope, Store};

/// Secrets of a sandbox's own server: its shared scope (`gigmcp secret set SERVER NAME`) or, in
/// a user's own instance, that user's scope for the server — never another server's or user's,
/// and never the shared value in place of a user's missing one.
#[derive(Debug, Clone)]
pub struct VaultSecrets(pub Arc<Secrets>);

impl SecretSource for VaultSecrets {
    fn secret<'a>(
        &'a self,
        server: &'a str,
        scope: SecretScope,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Zeroizing<String>, SecretError>> {
        Box::pin(async move {
            let fail = |reason: String| SecretError {
                name: name.to_owned(),
                reason,
            };
            let user_id = match scope {
                SecretScope::Server => None,
                SecretScope::User(id) => Some(id),
                SecretScope::Nobody => return Err(fail("this instance serves no user".into())),
            };
            let vault_scope = CredentialScope {
                server,
                user_id,
                profile_id: None,
            };
            let value = self
                .0
                .get(&vault_scope, name)
                .await
                .map_err(|e| fail(e.to_string()))?
                .ok_or_else(|| fail(missing_credential(server, user_id, name)))?;
            let text = std::str::from_utf8(value.expose())
                .map_err(|_| fail("the stored value is not UTF-8 text".into()))?;
            Ok(Zeroizing::new(text.to_owned()))
        })
    }
}

/// Where to set a credential that is not in the vault (shown to the sandbox and the caller).
pub fn missing_credential(server: &str, user_id: Option<i64>, name: &str) -> String {
    match user_id {
        None => format!("not in the vault; set it with `gigmcp secret set {server} {name}`"),
        Some(_) => format!(
            "you have not set your own {name:?} for {server:?}; set it with PUT /api/me/credentials/{server}/{name} (or on the dashboard's credentials page)"
        ),
    }
}

/// Records beyond this many waiting are dropped (and counted in a warning) rather than
/// slowing the proxy down.
const AUDIT_QUEUE: usize = 4096;

/// Writes every proxy decision into the store's append-only audit log, through the gateway's
/// [`AuditWriter`] (held and retried while the database is unreachable).
#[derive(Debug, Clone)]
pub struct StoreAudit {
    writer: AuditWriter<AuditEvent>,
}

impl StoreAudit {
    /// Starts the writer task (on the current runtime).
    pub fn start(store: Store) -> Self {
        StoreAudit {
            writer: AuditWriter::start(store, "egress", AUDIT_QUEUE, entry),
        }
    }
}

fn entry(event: AuditEvent) -> OwnedAuditEntry {
    let result = match (event.decision, event.exfiltration) {
        (_, true) => "exfiltration",
        (Decision::Allowed, false) => "ok",
        (Decision::Refused, false) => "denied",
    };
    OwnedAuditEntry {
        detail: serde_json::json!({
            "toolCall": event.tool_call,
            "method": event.method,
            "host": event.host,
            "port": event.port,
            "path": event.path,
            "status": event.status,
            "requestBytes": event.request_bytes,
            "responseBytes": event.response_bytes,
            "credentials": event.credentials,
            "reason": event.reason,
            "exfiltration": event.exfiltration,
            "upstream": event.upstream.map(|a| a.to_string()),
            "user": event.user,
        }),
        target: format!("{}:{}", event.host, event.port),
        actor: event.server,
        action: "egress.request",
        result,
    }
}

impl AuditSink for StoreAudit {
    fn record(&self, event: AuditEvent) {
        if event.exfiltration {
            tracing::warn!(server = %event.server, host = %event.host, reason = ?event.reason, "egress: credential placeholder sent to a host it does not belong to");
        }
        self.writer.send(event);
    }
}
