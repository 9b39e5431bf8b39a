//! Where upstream tokens live: sealed in the vault under the server's scope and one user's,
//! as `oauth:token`. The name holds a `:`, which no declared credential name can, so neither a
//! servers file nor a user setting their own credentials can address it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use gig_secrets::Secrets;
use gig_store::CredentialScope;
use rmcp::transport::auth::{
    AuthError, CredentialRefreshGuard, CredentialStore, StoredCredentials,
};
use serde::{Deserialize, Serialize};

/// A user's connection to a server: their tokens.
pub const TOKEN_CREDENTIAL: &str = "oauth:token";

/// What is sealed under [`TOKEN_CREDENTIAL`].
#[derive(Serialize, Deserialize)]
pub(crate) struct Connection {
    pub(crate) credentials: StoredCredentials,
    /// Why the connection no longer works (a refused refresh), when it does not.
    #[serde(default)]
    pub(crate) broken: Option<String>,
    /// The server's URL when the tokens were issued or last renewed: they are for that server
    /// only. A server (re)declared or reinstalled at another URL under the same name never
    /// gets them; its users connect again. (Absent only in connections sealed before this was
    /// recorded; the next renewal records it.)
    #[serde(default)]
    pub(crate) resource: Option<String>,
}

impl Connection {
    /// Why these tokens may not go to the server now at `resource`, if they may not.
    pub(crate) fn problem(&self, name: &str, resource: &str) -> Option<String> {
        if self.resource.as_deref().is_some_and(|r| r != resource) {
            return Some(format!(
                "{name} now answers at another address than the one your account was connected to; connect it again"
            ));
        }
        self.broken
            .as_ref()
            .map(|why| format!("your connection to {name} stopped working: {why}"))
    }
}

/// One lock per (server, user): the connections of one user to one server (their own and the
/// one listing the catalog, in this gateway and in every replica sharing its database) share a
/// refresh token, and a rotating authorization server revokes the whole grant when a refresh
/// token is used twice. In-process first (waiters here hold no database connection), then the
/// database's lock for the replicas.
#[derive(Debug)]
pub struct RefreshLocks {
    local: Mutex<HashMap<(String, i64), RefreshLock>>,
    store: gig_store::Store,
    /// Each database lock holds a pooled connection while its holder still needs another to
    /// save the tokens: fewer holders at once than the pool has connections.
    holders: Arc<tokio::sync::Semaphore>,
    /// And at most a few per server, so one whose token endpoint stalls (each exchange may
    /// take up to the OAuth timeout) cannot hold every other server's renewals up.
    per_server: Mutex<HashMap<String, Arc<tokio::sync::Semaphore>>>,
}

/// Database locks held at once by one gateway (its PostgreSQL pool has 10 connections).
const MAX_HOLDERS: usize = 6;
/// Of those, held at once for one server.
const MAX_HOLDERS_PER_SERVER: usize = 2;

type RefreshLock = Arc<tokio::sync::Mutex<()>>;

/// Held while one user's tokens for one server are refreshed, replaced or deleted.
#[derive(Debug)]
pub(crate) struct RefreshGuard {
    _replicas: gig_store::StoreLock,
    _holder: tokio::sync::OwnedSemaphorePermit,
    _server_holder: tokio::sync::OwnedSemaphorePermit,
    _local: tokio::sync::OwnedMutexGuard<()>,
}

impl RefreshLocks {
    pub fn new(store: gig_store::Store) -> Self {
        RefreshLocks {
            local: Mutex::default(),
            store,
            holders: Arc::new(tokio::sync::Semaphore::new(MAX_HOLDERS)),
            per_server: Mutex::default(),
        }
    }

    /// Waits until no other task here or in another replica holds `(server, user_id)`.
    pub(crate) async fn lock(&self, server: &str, user_id: i64) -> Result<RefreshGuard, String> {
        let local = self.get(server, user_id).lock_owned().await;
        let stopping = |_| "the gateway is stopping".to_owned();
        let server_holders = {
            let mut per_server = self.per_server.lock().unwrap_or_else(|e| e.into_inner());
            per_server
                .entry(server.to_owned())
                .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(MAX_HOLDERS_PER_SERVER)))
                .clone()
        };
        let server_holder = server_holders.acquire_owned().await.map_err(stopping)?;
        let holder = self
            .holders
            .clone()
            .acquire_owned()
            .await
            .map_err(stopping)?;
        let replicas = self
            .store
            .lock_across_replicas(&format!("oauth-refresh:{server}:{user_id}"))
            .await
            .map_err(|e| format!("the lock shared with other replicas: {e}"))?;
        Ok(RefreshGuard {
            _replicas: replicas,
            _holder: holder,
            _server_holder: server_holder,
            _local: local,
        })
    }

    fn get(&self, server: &str, user_id: i64) -> RefreshLock {
        let mut locks = self.local.lock().unwrap_or_else(|e| e.into_inner());
        locks.retain(|_, lock| Arc::strong_count(lock) > 1);
        locks
            .entry((server.to_owned(), user_id))
            .or_default()
            .clone()
    }
}

pub(crate) fn user_scope(server: &str, user_id: i64) -> CredentialScope<'_> {
    CredentialScope {
        server,
        user_id: Some(user_id),
        profile_id: None,
    }
}

fn store_error(e: impl std::fmt::Display) -> AuthError {
    AuthError::CredentialStoreError(e.to_string())
}

pub(crate) async fn read_connection(
    secrets: &Secrets,
    server: &str,
    user_id: i64,
) -> Result<Option<Connection>, AuthError> {
    let Some(sealed) = secrets
        .get(&user_scope(server, user_id), TOKEN_CREDENTIAL)
        .await
        .map_err(store_error)?
    else {
        return Ok(None);
    };
    serde_json::from_slice(sealed.expose())
        .map(Some)
        .map_err(store_error)
}

pub(crate) async fn write_connection(
    secrets: &Secrets,
    server: &str,
    user_id: i64,
    connection: &Connection,
) -> Result<(), AuthError> {
    let bytes = zeroize::Zeroizing::new(serde_json::to_vec(connection).map_err(store_error)?);
    secrets
        .set(&user_scope(server, user_id), TOKEN_CREDENTIAL, &bytes)
        .await
        .map_err(store_error)?;
    Ok(())
}

/// One user's tokens for one server, as rmcp's authorization manager reads and renews them.
pub(crate) struct UserTokens {
    pub(crate) secrets: Arc<Secrets>,
    pub(crate) server: String,
    /// The server's URL now (see [`Connection::resource`]).
    pub(crate) resource: String,
    pub(crate) user_id: i64,
    pub(crate) locks: Arc<RefreshLocks>,
}

#[async_trait::async_trait]
impl CredentialStore for UserTokens {
    async fn load(&self) -> Result<Option<StoredCredentials>, AuthError> {
        let connection = read_connection(&self.secrets, &self.server, self.user_id).await?;
        // A broken connection, or one made to the server at another URL, is as good as none:
        // its user must connect again.
        Ok(connection
            .filter(|c| c.problem(&self.server, &self.resource).is_none())
            .map(|c| c.credentials))
    }

    async fn save(&self, credentials: StoredCredentials) -> Result<(), AuthError> {
        let connection = Connection {
            credentials,
            broken: None,
            resource: Some(self.resource.clone()),
        };
        write_connection(&self.secrets, &self.server, self.user_id, &connection).await
    }

    async fn clear(&self) -> Result<(), AuthError> {
        self.secrets
            .delete(&user_scope(&self.server, self.user_id), TOKEN_CREDENTIAL)
            .await
            .map_err(store_error)?;
        Ok(())
    }

    async fn on_refresh_token_rejected(
        &self,
        credentials: &StoredCredentials,
    ) -> Result<(), AuthError> {
        tracing::warn!(server = %self.server, user = self.user_id, "the authorization server refused a refresh token; the connection is marked broken");
        let connection = Connection {
            credentials: credentials.clone(),
            broken: Some(
                "the authorization server refused to renew the token (invalid_grant); connect again"
                    .to_owned(),
            ),
            resource: Some(self.resource.clone()),
        };
        write_connection(&self.secrets, &self.server, self.user_id, &connection).await
    }

    async fn acquire_refresh_guard(&self) -> Result<Option<CredentialRefreshGuard>, AuthError> {
        let guard = self
            .locks
            .lock(&self.server, self.user_id)
            .await
            .map_err(store_error)?;
        Ok(Some(CredentialRefreshGuard::new(guard)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connection(resource: Option<&str>, broken: Option<&str>) -> Connection {
        Connection {
            credentials: StoredCredentials::new("gateway".into(), None, Vec::new(), None),
            broken: broken.map(str::to_owned),
            resource: resource.map(str::to_owned),
        }
    }

    #[test]
    fn tokens_go_only_to_the_url_they_were_issued_for() {
        let here = "https://mcp.issues.example/mcp";
        assert_eq!(connection(Some(here), None).problem("issues", here), None);
        let moved = connection(Some(here), None)
            .problem("issues", "https://evil.example/mcp")
            .unwrap();
        assert!(moved.contains("another address"), "{moved}");
        // A connection sealed before the URL was recorded is used, and sealed at its renewal.
        assert_eq!(connection(None, None).problem("issues", here), None);
        let broken = connection(Some(here), Some("invalid_grant"))
            .problem("issues", here)
            .unwrap();
        assert!(
            broken.contains("stopped working: invalid_grant"),
            "{broken}"
        );
        // The sealed form keeps the URL.
        let sealed = serde_json::to_value(connection(Some(here), None)).unwrap();
        assert_eq!(sealed["resource"], here);
    }
}
