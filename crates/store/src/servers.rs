//! Installed servers.

use serde_json::Value;
use sqlx::types::Json;

use crate::Store;
use crate::codec::DbTime;
use crate::error::{Result, StoreError, db_err};
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
    state: String,
    installed_at: DbTime,
    updated_at: DbTime,
}

impl TryFrom<ServerRow> for ServerRecord {
    type Error = StoreError;
    fn try_from(row: ServerRow) -> Result<Self> {
        Ok(Self {
            state: row.state.parse()?,
            name: row.name,
            image_ref: row.image_ref,
            version: row.version,
            image_digest: row.image_digest,
            extracted_path: row.extracted_path,
            manifest: row.manifest.0,
            installed_at: row.installed_at.into(),
            updated_at: row.updated_at.into(),
        })
    }
}

impl Store {
    /// Insert the server, or replace everything but `installed_at` if the name exists — unless
    /// the existing record came from a newer index than `server.index_version`: then nothing
    /// is written and [`StoreError::Outdated`] is returned (compare-and-set in one statement,
    /// so installs racing across processes cannot put an older index's server back).
    pub async fn upsert_server(&self, server: &NewServer<'_>) -> Result<ServerRecord> {
        let now = DbTime::now();
        let row: Option<ServerRow> = on_backend!(self, |pool| {
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
            .bind(server.state.as_str())
            .bind(now)
            .bind(server.index_version)
            .fetch_optional(pool)
            .await
        })
        .map_err(db_err("upsert_server"))?;
        row.ok_or_else(|| StoreError::Outdated {
            name: server.name.to_owned(),
        })?
        .try_into()
    }

    /// The server named `name`.
    pub async fn get_server(&self, name: &str) -> Result<Option<ServerRecord>> {
        let row: Option<ServerRow> = on_backend!(self, |pool| {
            sqlx::query_as(concat!(
                "SELECT ",
                server_columns!(),
                " FROM servers WHERE name = $1"
            ))
            .bind(name)
            .fetch_optional(pool)
            .await
        })
        .map_err(db_err("get_server"))?;
        row.map(TryInto::try_into).transpose()
    }

    /// All servers, by name.
    pub async fn list_servers(&self) -> Result<Vec<ServerRecord>> {
        let rows: Vec<ServerRow> = on_backend!(self, |pool| {
            sqlx::query_as(concat!(
                "SELECT ",
                server_columns!(),
                " FROM servers ORDER BY name"
            ))
            .fetch_all(pool)
            .await
        })
        .map_err(db_err("list_servers"))?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    /// Move server `name` to `state`.
    pub async fn set_server_state(&self, name: &str, state: ServerState) -> Result<()> {
        let affected = on_backend!(self, |pool| {
            sqlx::query("UPDATE servers SET state = $2, updated_at = $3 WHERE name = $1")
                .bind(name)
                .bind(state.as_str())
                .bind(DbTime::now())
                .execute(pool)
                .await
                .map(|done| done.rows_affected())
        })
        .map_err(db_err("set_server_state"))?;
        if affected == 0 {
            return Err(StoreError::NotFound {
                what: "server",
                key: name.to_owned(),
            });
        }
        Ok(())
    }

    /// Remove server `name` and its tool fingerprints (a reinstall is trusted afresh).
    /// Its credentials stay: they belong to the user, not the install. Returns whether it existed.
    pub async fn delete_server(&self, name: &str) -> Result<bool> {
        let op = "delete_server";
        let deleted = on_backend!(self, |pool, kind| {
            let mut tx = pool
                .begin_with(kind.begin_write())
                .await
                .map_err(db_err(op))?;
            sqlx::query("DELETE FROM tool_fingerprints WHERE server = $1")
                .bind(name)
                .execute(&mut *tx)
                .await
                .map_err(db_err(op))?;
            let done = sqlx::query("DELETE FROM servers WHERE name = $1")
                .bind(name)
                .execute(&mut *tx)
                .await
                .map_err(db_err(op))?;
            tx.commit().await.map_err(db_err(op))?;
            done.rows_affected()
        });
        Ok(deleted > 0)
    }
}
