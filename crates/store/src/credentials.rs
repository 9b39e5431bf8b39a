//! Vault ciphertext: credentials and key rotation. Plaintext never reaches this module.

use crate::codec::DbTime;
use crate::error::{Result, RotateError, TxError, not_found};
use crate::model::{CredentialMeta, CredentialRow, CredentialScope, SealedCredential};
use crate::{BackendKind, Store};

macro_rules! meta_columns {
    () => {
        "id, server, user_id, profile_id, name, key_id, created_at, updated_at"
    };
}

macro_rules! sealed_columns {
    () => {
        concat!(meta_columns!(), ", wrapped_dek, ciphertext")
    };
}

/// One statement, so concurrent puts of one key cannot both insert. The conflict target names
/// the uniqueness rule that treats NULL scope members as equal: an expression index on SQLite,
/// a `NULLS NOT DISTINCT` constraint on PostgreSQL.
macro_rules! put_credential_sql {
    ($conflict_target:literal) => {
        concat!(
            "INSERT INTO credentials
                 (server, user_id, profile_id, name, key_id, wrapped_dek, ciphertext, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)
             ON CONFLICT ", $conflict_target, " DO UPDATE SET
                 key_id = excluded.key_id,
                 wrapped_dek = excluded.wrapped_dek,
                 ciphertext = excluded.ciphertext,
                 updated_at = excluded.updated_at
             RETURNING id"
        )
    };
}

const PUT_SQLITE: &str =
    put_credential_sql!("(server, ifnull(user_id, 0), ifnull(profile_id, 0), name)");
const PUT_POSTGRES: &str = put_credential_sql!("ON CONSTRAINT credentials_scope_name");

#[derive(sqlx::FromRow)]
struct MetaRow {
    id: i64,
    server: String,
    user_id: Option<i64>,
    profile_id: Option<i64>,
    name: String,
    key_id: String,
    created_at: DbTime,
    updated_at: DbTime,
}

impl From<MetaRow> for CredentialMeta {
    fn from(row: MetaRow) -> Self {
        Self {
            id: row.id,
            server: row.server,
            user_id: row.user_id,
            profile_id: row.profile_id,
            name: row.name,
            key_id: row.key_id,
            created_at: row.created_at.into(),
            updated_at: row.updated_at.into(),
        }
    }
}

#[derive(sqlx::FromRow)]
struct SealedRow {
    #[sqlx(flatten)]
    meta: MetaRow,
    wrapped_dek: Vec<u8>,
    ciphertext: Vec<u8>,
}

impl From<SealedRow> for CredentialRow {
    fn from(row: SealedRow) -> Self {
        Self {
            meta: row.meta.into(),
            wrapped_dek: row.wrapped_dek,
            ciphertext: row.ciphertext,
        }
    }
}

impl Store {
    /// Insert the credential, or replace the sealed value of the one with the same scope and
    /// name, in one statement. Returns its id (stable across replacements).
    pub async fn put_credential(&self, credential: &SealedCredential<'_>) -> Result<i64> {
        let sql = match self.kind() {
            BackendKind::Sqlite => PUT_SQLITE,
            BackendKind::Postgres => PUT_POSTGRES,
        };
        query!(
            self,
            "put_credential",
            returning_one(
                sqlx::query_scalar(sql)
                    .bind(credential.scope.server)
                    .bind(credential.scope.user_id)
                    .bind(credential.scope.profile_id)
                    .bind(credential.name)
                    .bind(credential.key_id)
                    .bind(credential.wrapped_dek)
                    .bind(credential.ciphertext)
                    .bind(DbTime::now())
            )
        )
    }

    /// The credential `name` of exactly `scope` (no fallback from user to global: that policy
    /// belongs to the caller).
    pub async fn get_credential(
        &self,
        scope: &CredentialScope<'_>,
        name: &str,
    ) -> Result<Option<CredentialRow>> {
        let row: Option<SealedRow> = query!(
            self,
            "get_credential",
            fetch_optional(
                sqlx::query_as(concat!(
                    "SELECT ",
                    sealed_columns!(),
                    " FROM credentials
                     WHERE server = $1 AND user_id IS NOT DISTINCT FROM $2
                       AND profile_id IS NOT DISTINCT FROM $3 AND name = $4"
                ))
                .bind(scope.server)
                .bind(scope.user_id)
                .bind(scope.profile_id)
                .bind(name)
            )
        )?;
        Ok(row.map(Into::into))
    }

    /// Metadata (no sealed bytes) of every credential, or of one server's.
    pub async fn list_credentials(&self, server: Option<&str>) -> Result<Vec<CredentialMeta>> {
        let rows: Vec<MetaRow> = query!(
            self,
            "list_credentials",
            fetch_all(
                sqlx::query_as(concat!(
                    "SELECT ",
                    meta_columns!(),
                    " FROM credentials
                     WHERE $1 IS NULL OR server = $1 ORDER BY server, name, id"
                ))
                .bind(server)
            )
        )?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// Delete credential `id`; returns whether it existed.
    pub async fn delete_credential(&self, id: i64) -> Result<bool> {
        let affected = query!(
            self,
            "delete_credential",
            execute(sqlx::query("DELETE FROM credentials WHERE id = $1").bind(id))
        )?;
        Ok(affected > 0)
    }

    /// Every credential with its sealed bytes, by id (for the vault's rotation and checks).
    pub async fn list_all_sealed(&self) -> Result<Vec<CredentialRow>> {
        let rows: Vec<SealedRow> = query!(
            self,
            "list_all_sealed",
            fetch_all(sqlx::query_as(concat!(
                "SELECT ",
                sealed_columns!(),
                " FROM credentials ORDER BY id"
            )))
        )?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// Replace credential `id`'s wrapped data key (the ciphertext is unchanged by a re-wrap, and
    /// so is `updated_at`, which tracks the secret itself).
    pub async fn update_wrap(&self, id: i64, key_id: &str, wrapped_dek: &[u8]) -> Result<()> {
        let affected = query!(
            self,
            "update_wrap",
            execute(
                sqlx::query("UPDATE credentials SET key_id = $2, wrapped_dek = $3 WHERE id = $1")
                    .bind(id)
                    .bind(key_id)
                    .bind(wrapped_dek)
            )
        )?;
        if affected == 0 {
            return Err(not_found("credential", id));
        }
        Ok(())
    }

    /// Re-wrap every credential in one transaction: `rewrap` maps each row to its new
    /// `(key_id, wrapped_dek)`. If `rewrap` or the database fails for any row, the transaction
    /// is rolled back and no credential changes. Writers wait until it ends. Returns the number
    /// of credentials re-wrapped.
    pub async fn rotate<F, E>(&self, rewrap: F) -> Result<usize, RotateError<E>>
    where
        F: Fn(&CredentialRow) -> Result<(String, Vec<u8>), E>,
    {
        write_tx!(self, "rotate", |tx, kind| {
            if kind == BackendKind::Postgres {
                // Blocks concurrent puts (which could otherwise land under the old key after
                // the snapshot below) while still allowing reads.
                sqlx::query("LOCK TABLE credentials IN EXCLUSIVE MODE")
                    .execute(&mut *tx)
                    .await?;
            }
            let rows: Vec<SealedRow> = sqlx::query_as(concat!(
                "SELECT ",
                sealed_columns!(),
                " FROM credentials ORDER BY id"
            ))
            .fetch_all(&mut *tx)
            .await?;
            let count = rows.len();
            for row in rows {
                let row = CredentialRow::from(row);
                let (key_id, wrapped_dek) = rewrap(&row).map_err(|source| {
                    TxError::Refused(RotateError::Rewrap {
                        id: row.meta.id,
                        source,
                    })
                })?;
                sqlx::query("UPDATE credentials SET key_id = $2, wrapped_dek = $3 WHERE id = $1")
                    .bind(row.meta.id)
                    .bind(key_id)
                    .bind(wrapped_dek)
                    .execute(&mut *tx)
                    .await?;
            }
            Ok(count)
        })
    }
}
