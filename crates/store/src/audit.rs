//! The append-only audit log (the database refuses UPDATE and DELETE on it).

use serde_json::Value;
use sqlx::types::Json;

use crate::Store;
use crate::codec::DbTime;
use crate::error::{Result, db_err};
use crate::model::{AuditEntry, AuditRecord};

#[derive(sqlx::FromRow)]
struct AuditRow {
    id: i64,
    at: DbTime,
    actor: String,
    action: String,
    target: String,
    result: String,
    detail: Json<Value>,
}

impl From<AuditRow> for AuditRecord {
    fn from(row: AuditRow) -> Self {
        Self {
            id: row.id,
            at: row.at.into(),
            actor: row.actor,
            action: row.action,
            target: row.target,
            result: row.result,
            detail: row.detail.0,
        }
    }
}

impl Store {
    /// Append one record; returns its id (ids only grow).
    pub async fn append_audit(&self, entry: &AuditEntry<'_>) -> Result<i64> {
        on_backend!(self, |pool| {
            sqlx::query_scalar(
                "INSERT INTO audit_log (at, actor, action, target, result, detail)
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            )
            .bind(DbTime::now())
            .bind(entry.actor)
            .bind(entry.action)
            .bind(entry.target)
            .bind(entry.result)
            .bind(Json(entry.detail))
            .fetch_one(pool)
            .await
        })
        .map_err(db_err("append_audit"))
    }

    /// The `limit` most recent records, newest first.
    pub async fn list_recent_audit(&self, limit: u32) -> Result<Vec<AuditRecord>> {
        let rows: Vec<AuditRow> = on_backend!(self, |pool| {
            sqlx::query_as(
                "SELECT id, at, actor, action, target, result, detail
                 FROM audit_log ORDER BY id DESC LIMIT $1",
            )
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await
        })
        .map_err(db_err("list_recent_audit"))?;
        Ok(rows.into_iter().map(Into::into).collect())
    }
}
