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
}

/// One lock per (server, user): the connections of one user to one server (their own and the
/// one listing the catalog) share a refresh token, and a rotating authorization server revokes
/// the whole grant when a refresh token is used twice.
#[derive(Debug, Default)]
pub struct RefreshLocks(Mutex<HashMap<(String, i64), RefreshLock>>);

type RefreshLock = Arc<tokio::sync::Mutex<()>>;

impl RefreshLocks {
    /// Held while one user's tokens for one server are refreshed, replaced or deleted.
    pub(crate) async fn lock(
        &self,
        server: &str,
        user_id: i64,
    ) -> tokio::sync::OwnedMutexGuard<()> {
        self.get(server, user_id).lock_owned().await
    }

    fn get(&self, server: &str, user_id: i64) -> RefreshLock {
        let mut locks = self.0.lock().unwrap_or_else(|e| e.into_inner());
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
    pub(crate) user_id: i64,
    pub(crate) locks: Arc<RefreshLocks>,
}

#[async_trait::async_trait]
impl CredentialStore for UserTokens {
    async fn load(&self) -> Result<Option<StoredCredentials>, AuthError> {
        let connection = read_connection(&self.secrets, &self.server, self.user_id).await?;
        // A broken connection is as good as none: its user must connect again.
        Ok(connection
            .filter(|c| c.broken.is_none())
            .map(|c| c.credentials))
    }

    async fn save(&self, credentials: StoredCredentials) -> Result<(), AuthError> {
        let connection = Connection {
            credentials,
            broken: None,
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
        };
        write_connection(&self.secrets, &self.server, self.user_id, &connection).await
    }

    async fn acquire_refresh_guard(&self) -> Result<Option<CredentialRefreshGuard>, AuthError> {
        let guard = self.locks.lock(&self.server, self.user_id).await;
        Ok(Some(CredentialRefreshGuard::new(guard)))
    }
}
