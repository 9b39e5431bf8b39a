//! Credentials at rest: joins the vault (crypto only) and the store (rows only).
//!
//! Owns the rules that need both: which row a ciphertext is bound to, the check that the master
//! key is the one the database was sealed with (at start and again at every write), key
//! rotation, and reading a key file an operator hands it. It never logs, prints or returns a
//! plaintext except through [`gig_vault::SecretBytes`] to its caller.

#![forbid(unsafe_code)]

mod key_file;

pub use key_file::{KeyFileError, read_master_key_file};

use gig_store::{
    CredentialMeta, CredentialRow, CredentialScope, SealedCredential, Store, StoreError,
};
use gig_vault::{Aad, KeyId, MasterKey, Sealed, SecretBytes, Vault, VaultError};

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error(
        "GIG_MASTER_KEY does not match the key this database was sealed with \
         (database key id {stored}, this key's id {given}); refusing to start, nothing was changed"
    )]
    WrongMasterKey { stored: String, given: KeyId },
    #[error(
        "a master-key rotation to key id {target} was interrupted; run `gigmcp vault rotate` \
         again with the same old and new keys to finish it"
    )]
    RotationInProgress { target: String },
    #[error(
        "the database holds {credentials} credential(s) but no vault key record (vault_meta), so \
         no key can be checked against it; refusing to start, nothing was changed (restore the \
         database from a backup)"
    )]
    KeyRecordMissing { credentials: usize },
    #[error(
        "the database's master key is now key id {stored}, not this handle's {held} (rotated \
         since it was opened); nothing was written: open it again with the current key"
    )]
    KeyChanged { stored: String, held: KeyId },
    #[error(
        "a master-key rotation to key id {stored} finished while this value was being written, \
         so it is sealed under the old key {held} and cannot be opened: set it again with the \
         current key"
    )]
    RotatedDuringWrite { stored: String, held: KeyId },
    #[error("credential {name:?} of server {server:?} cannot be opened: {source}")]
    Open {
        server: String,
        name: String,
        source: VaultError,
    },
    #[error("the old key is not the database's current master key (database key id {stored})")]
    OldKeyMismatch { stored: String },
    #[error("the new master key equals the current one")]
    SameKey,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("re-wrapping failed, nothing was changed: {0}")]
    Rotate(String),
}

/// Which row a ciphertext belongs to: the credential's unique key (server, user, profile,
/// name). A ciphertext copied onto any other row fails to open.
fn aad_id(scope: &CredentialScope<'_>) -> String {
    format!(
        "u{}:p{}",
        scope.user_id.map_or(String::new(), |u| u.to_string()),
        scope.profile_id.map_or(String::new(), |p| p.to_string())
    )
}

fn row_scope(row: &CredentialMeta) -> CredentialScope<'_> {
    CredentialScope {
        server: &row.server,
        user_id: row.user_id,
        profile_id: row.profile_id,
    }
}

fn sealed_of(row: &CredentialRow) -> Result<Sealed, VaultError> {
    Ok(Sealed {
        key_id: row.meta.key_id.parse()?,
        wrapped_dek: row.wrapped_dek.clone(),
        ciphertext: row.ciphertext.clone(),
    })
}

/// The credential service the gateway and the operator CLI use.
#[derive(Debug)]
pub struct Secrets {
    store: Store,
    vault: Vault,
}

impl Secrets {
    /// Checks `master` against the database's key check value (initialising it on first use).
    /// A wrong key is refused before anything is written. Refused too: a database that holds
    /// credentials but no key record (any key would pass), and a first start that loses the
    /// race to initialise to another replica with another key (the stored record is checked,
    /// not the one this process tried to write).
    pub async fn open(store: Store, master: &MasterKey) -> Result<Self, SecretsError> {
        let vault = Vault::new(master);
        let meta = match store.get_vault_meta().await? {
            Some(meta) => meta,
            None => {
                let credentials = store.list_credentials(None).await?.len();
                if credentials > 0 {
                    return Err(SecretsError::KeyRecordMissing { credentials });
                }
                store
                    .init_vault_meta(&vault.key_id().to_string(), &vault.check_value())
                    .await?
            }
        };
        if let Some(target) = meta.rotating_to_key_id {
            return Err(SecretsError::RotationInProgress { target });
        }
        let same_id = meta.key_id == vault.key_id().to_string();
        if !same_id || vault.verify_check_value(&meta.check_value).is_err() {
            return Err(SecretsError::WrongMasterKey {
                stored: meta.key_id,
                given: *vault.key_id(),
            });
        }
        Ok(Self { store, vault })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Seals and stores a value (insert or replace). Returns the credential's id.
    ///
    /// The database's key is checked at write time, not only at open: a handle opened before a
    /// `vault rotate` would otherwise seal under the retired key a value nobody can open. The
    /// store cannot make the check and the write one transaction, so the key is read again
    /// after the write; a rotation that finished in between is reported, not hidden.
    pub async fn set(
        &self,
        scope: &CredentialScope<'_>,
        name: &str,
        value: &[u8],
    ) -> Result<i64, SecretsError> {
        self.check_current_key().await?;
        let id = aad_id(scope);
        let sealed = self.vault.seal(
            &Aad {
                secret_id: &id,
                owner: scope.server,
                name,
            },
            value,
        );
        let key_id = sealed.key_id.to_string();
        let row_id = self
            .store
            .put_credential(&SealedCredential {
                scope: *scope,
                name,
                key_id: &key_id,
                wrapped_dek: &sealed.wrapped_dek,
                ciphertext: &sealed.ciphertext,
            })
            .await?;
        if let Some(meta) = self.store.get_vault_meta().await?
            && meta.key_id != key_id
        {
            // A rotation that started before the write re-wrapped it; one that only finished
            // after it left it under the old key.
            let row = self.store.get_credential(scope, name).await?;
            if row.is_some_and(|row| row.meta.key_id != meta.key_id) {
                return Err(SecretsError::RotatedDuringWrite {
                    stored: meta.key_id,
                    held: *self.vault.key_id(),
                });
            }
        }
        Ok(row_id)
    }

    /// The database's key is still this handle's, and no rotation is under way.
    async fn check_current_key(&self) -> Result<(), SecretsError> {
        let held = *self.vault.key_id();
        let Some(meta) = self.store.get_vault_meta().await? else {
            return Err(SecretsError::KeyRecordMissing {
                credentials: self.store.list_credentials(None).await?.len(),
            });
        };
        if let Some(target) = meta.rotating_to_key_id {
            return Err(SecretsError::RotationInProgress { target });
        }
        if meta.key_id != held.to_string() {
            return Err(SecretsError::KeyChanged {
                stored: meta.key_id,
                held,
            });
        }
        Ok(())
    }

    /// Opens a stored value, or `None` when there is no such credential.
    pub async fn get(
        &self,
        scope: &CredentialScope<'_>,
        name: &str,
    ) -> Result<Option<SecretBytes>, SecretsError> {
        let Some(row) = self.store.get_credential(scope, name).await? else {
            return Ok(None);
        };
        let fail = |source| SecretsError::Open {
            server: scope.server.to_owned(),
            name: name.to_owned(),
            source,
        };
        let sealed = sealed_of(&row).map_err(fail)?;
        let id = aad_id(scope);
        let aad = Aad {
            secret_id: &id,
            owner: scope.server,
            name,
        };
        self.vault.open(&aad, &sealed).map(Some).map_err(fail)
    }

    /// Metadata only: names, scopes, key ids. Never values.
    pub async fn list(&self, server: Option<&str>) -> Result<Vec<CredentialMeta>, SecretsError> {
        Ok(self.store.list_credentials(server).await?)
    }

    pub async fn delete(
        &self,
        scope: &CredentialScope<'_>,
        name: &str,
    ) -> Result<bool, SecretsError> {
        match self.store.get_credential(scope, name).await? {
            Some(row) => Ok(self.store.delete_credential(row.meta.id).await?),
            None => Ok(false),
        }
    }
}

/// Re-wraps every credential's data key from `old` to `new` in one transaction. Resumable:
/// the target key is recorded first, and re-running with the same keys finishes the job
/// (rows already under `new` are left as they are).
pub async fn rotate(
    store: &Store,
    old: &MasterKey,
    new: &MasterKey,
) -> Result<usize, SecretsError> {
    let (old, new) = (Vault::new(old), Vault::new(new));
    if old.key_id() == new.key_id() {
        return Err(SecretsError::SameKey);
    }
    let meta = store
        .get_vault_meta()
        .await?
        .ok_or_else(|| SecretsError::Rotate("the vault has never been initialised".into()))?;
    if meta.key_id != old.key_id().to_string() || old.verify_check_value(&meta.check_value).is_err()
    {
        return Err(SecretsError::OldKeyMismatch {
            stored: meta.key_id,
        });
    }
    let target = new.key_id().to_string();
    if meta.rotating_to_key_id.as_deref() != Some(target.as_str()) {
        store.set_rotation_target(&target).await?;
    }
    let count = store
        .rotate(|row| {
            let scope = row_scope(&row.meta);
            let id = aad_id(&scope);
            let aad = Aad {
                secret_id: &id,
                owner: scope.server,
                name: &row.meta.name,
            };
            let sealed = new.rewrap(&old, &aad, &sealed_of(row)?)?;
            Ok::<_, VaultError>((sealed.key_id.to_string(), sealed.wrapped_dek))
        })
        .await
        .map_err(|e| SecretsError::Rotate(e.to_string()))?;
    store.finish_rotation(&target, &new.check_value()).await?;
    Ok(count)
}
