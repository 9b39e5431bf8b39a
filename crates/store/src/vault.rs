//! The vault's singleton metadata row: current key, its check value, and rotation progress.
//!
//! A rotation is resumable: [`Store::set_rotation_target`] persists the target key first,
//! [`Store::rotate`] re-wraps every credential in one transaction, and
//! [`Store::finish_rotation`] switches the current key only once no credential is wrapped by
//! any other key. A crash between steps leaves `rotating_to_key_id` set for the next start.

use crate::codec::DbTime;
use crate::error::{Result, StoreError};
use crate::model::VaultMeta;
use crate::{BackendKind, Store};

macro_rules! vault_select {
    () => {
        "SELECT key_id, check_value, rotating_to_key_id, created_at, updated_at
         FROM vault_meta WHERE id = 1"
    };
}

#[derive(sqlx::FromRow)]
struct VaultRow {
    key_id: String,
    check_value: Vec<u8>,
    rotating_to_key_id: Option<String>,
    created_at: DbTime,
    updated_at: DbTime,
}

impl From<VaultRow> for VaultMeta {
    fn from(row: VaultRow) -> Self {
        Self {
            key_id: row.key_id,
            check_value: row.check_value,
            rotating_to_key_id: row.rotating_to_key_id,
            created_at: row.created_at.into(),
            updated_at: row.updated_at.into(),
        }
    }
}

/// The row, locked against concurrent rotation steps (SQLite's `BEGIN IMMEDIATE` already
/// serialises writers; it has no `FOR UPDATE`).
fn select_locked(kind: BackendKind) -> &'static str {
    match kind {
        BackendKind::Sqlite => vault_select!(),
        BackendKind::Postgres => concat!(vault_select!(), " FOR UPDATE"),
    }
}

fn rotation_state(reason: impl Into<String>) -> StoreError {
    StoreError::RotationState {
        reason: reason.into(),
    }
}

impl Store {
    /// The vault metadata, if the vault was initialised.
    pub async fn get_vault_meta(&self) -> Result<Option<VaultMeta>> {
        let row: Option<VaultRow> = query!(
            self,
            "get_vault_meta",
            fetch_optional(sqlx::query_as(vault_select!()))
        )?;
        Ok(row.map(Into::into))
    }

    /// Record the first key and its check value unless the vault is already initialised;
    /// either way returns the stored metadata (compare its `key_id` to detect a wrong key).
    pub async fn init_vault_meta(&self, key_id: &str, check_value: &[u8]) -> Result<VaultMeta> {
        write_tx!(self, "init_vault_meta", |tx| {
            sqlx::query(
                "INSERT INTO vault_meta (id, key_id, check_value, created_at, updated_at)
                 VALUES (1, $1, $2, $3, $3) ON CONFLICT (id) DO NOTHING",
            )
            .bind(key_id)
            .bind(check_value)
            .bind(DbTime::now())
            .execute(&mut *tx)
            .await?;
            let row: VaultRow = sqlx::query_as(vault_select!()).fetch_one(&mut *tx).await?;
            Ok(row.into())
        })
    }

    /// Start (or confirm) a rotation to `key_id`. Refused if the vault is not initialised,
    /// `key_id` is already current, or a rotation to another key is unfinished.
    pub async fn set_rotation_target(&self, key_id: &str) -> Result<VaultMeta> {
        write_tx!(self, "set_rotation_target", |tx, kind| {
            let current: Option<VaultRow> = sqlx::query_as(select_locked(kind))
                .fetch_optional(&mut *tx)
                .await?;
            let current = current.ok_or_else(|| rotation_state("the vault is not initialised"))?;
            if current.key_id == key_id {
                return Err(rotation_state(format!("{key_id} is already the current key")).into());
            }
            if let Some(other) = current
                .rotating_to_key_id
                .as_deref()
                .filter(|k| *k != key_id)
            {
                return Err(rotation_state(format!(
                    "a rotation to {other} is unfinished; finish it first"
                ))
                .into());
            }
            let row: VaultRow = sqlx::query_as(
                "UPDATE vault_meta SET rotating_to_key_id = $1, updated_at = $2 WHERE id = 1
                 RETURNING key_id, check_value, rotating_to_key_id, created_at, updated_at",
            )
            .bind(key_id)
            .bind(DbTime::now())
            .fetch_one(&mut *tx)
            .await?;
            Ok(row.into())
        })
    }

    /// Make the rotation target `key_id` current with its `check_value`, and clear the rotation.
    /// Refused unless a rotation to `key_id` is in progress and every credential is already
    /// wrapped by `key_id`.
    pub async fn finish_rotation(&self, key_id: &str, check_value: &[u8]) -> Result<VaultMeta> {
        write_tx!(self, "finish_rotation", |tx, kind| {
            let current: Option<VaultRow> = sqlx::query_as(select_locked(kind))
                .fetch_optional(&mut *tx)
                .await?;
            let current = current.ok_or_else(|| rotation_state("the vault is not initialised"))?;
            if current.rotating_to_key_id.as_deref() != Some(key_id) {
                return Err(
                    rotation_state(format!("no rotation to {key_id} is in progress")).into(),
                );
            }
            let stale: i64 =
                sqlx::query_scalar("SELECT count(*) FROM credentials WHERE key_id <> $1")
                    .bind(key_id)
                    .fetch_one(&mut *tx)
                    .await?;
            if stale > 0 {
                return Err(rotation_state(format!(
                    "{stale} credential(s) are not yet wrapped by {key_id}"
                ))
                .into());
            }
            let row: VaultRow = sqlx::query_as(
                "UPDATE vault_meta
                 SET key_id = $1, check_value = $2, rotating_to_key_id = NULL, updated_at = $3
                 WHERE id = 1
                 RETURNING key_id, check_value, rotating_to_key_id, created_at, updated_at",
            )
            .bind(key_id)
            .bind(check_value)
            .bind(DbTime::now())
            .fetch_one(&mut *tx)
            .await?;
            Ok(row.into())
        })
    }
}
