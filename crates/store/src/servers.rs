//! Installed servers.

use serde_json::Value;
use sqlx::types::Json;

use crate::Store;
use crate::codec::DbTime;
use crate::error::{Result, StoreError, not_found};
use crate::model::{NewServer, ServerRecord, ServerState};

macro_rules! server_columns {
    () => {
        "name, image_ref, version, image_digest, extracted_path, manifest, state, installed_at, updated_at"
    };
}

#[derive(sqlx::FromRow)]
struct ServerRow {
    name: String,
    image_ref: String,
    version: String,
    image_digest: String,
    extracted_path: Option<String>,
    manifest: Json<Value>,
    state: ServerState,
    installed_at: DbTime,
    updated_at: DbTime,
}

impl From<ServerRow> for ServerRecord {
    fn from(row: ServerRow) -> Self {
        Self {
            name: row.name,
            image_ref: row.image_ref,
            version: row.version,
            image_digest: row.image_digest,
            extracted_path: row.extracted_path,
            manifest: row.manifest.0,
            state: row.state,
            installed_at: row.installed_at.into(),
            updated_at: row.updated_at.into(),
        }
    }
}

impl Store {
    /// Insert the server, or replace everything but `installed_at` if the name exists — unless
    /// the existing record came from a newer index than `server.index_version`: then nothing
    /// is written and [`StoreError::Outdated`] is returned (compare-and-set in one statement,
    /// so installs racing across processes cannot put an older index's server back).
    pub async fn upsert_server(&self, server: &NewServer<'_>) -> Result<ServerRecord> {
        let row: Option<ServerRow> = query!(
            self,
            "upsert_server",
            returning_optional(
                sqlx::query_as(concat!(
                    "INSERT INTO servers (",
                    server_columns!(),
                    ", index_version)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9)
                     ON CONFLICT (name) DO UPDATE SET
                         image_ref = excluded.image_ref,
                         version = excluded.version,
                         image_digest = excluded.image_digest,
                         extracted_path = excluded.extracted_path,
                         manifest = excluded.manifest,
                         state = excluded.state,
                         updated_at = excluded.updated_at,
                         index_version = excluded.index_version
                     WHERE servers.index_version <= excluded.index_version
                     RETURNING ",
                    server_columns!()
                ))
                .bind(server.name)
                .bind(server.image_ref)
                .bind(server.version)
                .bind(server.image_digest)
                .bind(server.extracted_path)
                .bind(Json(server.manifest))
                .bind(server.state)
                .bind(DbTime::now())
                .bind(server.index_version)
            )
        )?;
        let row = row.ok_or_else(|| StoreError::Outdated {
            name: server.name.to_owned(),
        })?;
        Ok(row.into())
    }

    /// The server named `name`.
    pub async fn get_server(&self, name: &str) -> Result<Option<ServerRecord>> {
        let row: Option<ServerRow> = query!(
            self,
            "get_server",
            fetch_optional(
                sqlx::query_as(concat!(
                    "SELECT ",
                    server_columns!(),
                    " FROM servers WHERE name = $1"
                ))
                .bind(name)
            )
        )?;
        Ok(row.map(Into::into))
    }

    /// All servers, by name.
    pub async fn list_servers(&self) -> Result<Vec<ServerRecord>> {
        let rows: Vec<ServerRow> = query!(
            self,
            "list_servers",
            fetch_all(sqlx::query_as(concat!(
                "SELECT ",
                server_columns!(),
                " FROM servers ORDER BY name"
            )))
        )?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// Move server `name` to `state`.
    pub async fn set_server_state(&self, name: &str, state: ServerState) -> Result<()> {
        let affected = query!(
            self,
            "set_server_state",
            execute(
                sqlx::query("UPDATE servers SET state = $2, updated_at = $3 WHERE name = $1")
                    .bind(name)
                    .bind(state)
                    .bind(DbTime::now())
            )
        )?;
        if affected == 0 {
            return Err(not_found("server", name));
        }
        Ok(())
    }

    /// Remove server `name` and its tool fingerprints (a reinstall is trusted afresh).
    /// Its credentials stay: they belong to the user, not the install. Returns whether it existed.
    pub async fn delete_server(&self, name: &str) -> Result<bool> {
        write_tx!(self, "delete_server", |tx| {
            sqlx::query("DELETE FROM tool_fingerprints WHERE server = $1")
                .bind(name)
                .execute(&mut *tx)
                .await?;
            let done = sqlx::query("DELETE FROM servers WHERE name = $1")
                .bind(name)
                .execute(&mut *tx)
                .await?;
            Ok(done.rows_affected() > 0)
        })
    }
}
