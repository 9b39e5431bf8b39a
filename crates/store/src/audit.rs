//! The append-only audit log (the database refuses UPDATE and DELETE on it).

use serde_json::Value;
use sqlx::types::Json;
use sqlx::{Database, Encode, QueryBuilder, Type};

use crate::Store;
use crate::codec::DbTime;
use crate::error::Result;
use crate::model::{AuditEntry, AuditQuery, AuditRecord};

/// The LIKE pattern matching every text that starts with `prefix`: `\`, `%` and `_` in the
/// prefix are escaped with `\` (the statement says `ESCAPE '\'`).
fn like_prefix(prefix: &str) -> String {
    let mut pattern = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '\\' | '%' | '_') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

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

/// The statement behind [`Store::list_audit`], for either backend.
fn audit_select<'q, DB>(query: &AuditQuery<'q>) -> QueryBuilder<'q, DB>
where
    DB: Database,
    &'q str: Encode<'q, DB> + Type<DB>,
    String: Encode<'q, DB> + Type<DB>,
    DbTime: Encode<'q, DB> + Type<DB>,
    i64: Encode<'q, DB> + Type<DB>,
{
    let mut sql = QueryBuilder::new(
        "SELECT id, at, actor, action, target, result, detail FROM audit_log WHERE TRUE",
    );
    if let Some(actor) = query.actor {
        sql.push(" AND actor = ").push_bind(actor);
    }
    // SQLite's LIKE ignores ASCII case, PostgreSQL's does not: the LIKE narrows the rows
    // (escaped, so `%` and `_` are literal) and the substr comparison makes the match
    // case-sensitive on both.
    for (column, prefix) in [
        ("target", query.target_prefix),
        ("action", query.action_prefix),
    ] {
        if let Some(prefix) = prefix {
            sql.push(format_args!(" AND {column} LIKE "))
                .push_bind(like_prefix(prefix))
                .push(format_args!(" ESCAPE '\\' AND substr({column}, 1, length("))
                .push_bind(prefix)
                .push(")) = ")
                .push_bind(prefix);
        }
    }
    if let Some(since) = query.since {
        sql.push(" AND at >= ").push_bind(DbTime::from(since));
    }
    if let Some(until) = query.until {
        sql.push(" AND at < ").push_bind(DbTime::from(until));
    }
    if let Some(before_id) = query.before_id {
        sql.push(" AND id < ").push_bind(before_id);
    }
    sql.push(" ORDER BY id DESC LIMIT ")
        .push_bind(i64::from(query.limit));
    sql
}

impl Store {
    /// Append one record; returns its id (ids only grow).
    pub async fn append_audit(&self, entry: &AuditEntry<'_>) -> Result<i64> {
        query!(
            self,
            "append_audit",
            returning_one(
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
            )
        )
    }

    /// The `limit` most recent records, newest first.
    pub async fn list_recent_audit(&self, limit: u32) -> Result<Vec<AuditRecord>> {
        let rows: Vec<AuditRow> = query!(
            self,
            "list_recent_audit",
            fetch_all(
                sqlx::query_as(
                    "SELECT id, at, actor, action, target, result, detail
                     FROM audit_log ORDER BY id DESC LIMIT $1",
                )
                .bind(i64::from(limit))
            )
        )?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// Records matching `query`, newest first (see [`AuditQuery`] for the filters and paging).
    pub async fn list_audit(&self, query: &AuditQuery<'_>) -> Result<Vec<AuditRecord>> {
        let rows: Vec<AuditRow> = query!(
            self,
            "list_audit",
            fetch_all(audit_select(query).build_query_as())
        )?;
        Ok(rows.into_iter().map(Into::into).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::like_prefix;

    #[test]
    fn like_prefix_escapes_wildcards_and_the_escape() {
        assert_eq!(like_prefix("tool."), "tool.%");
        assert_eq!(like_prefix("a_b%c"), "a\\_b\\%c%");
        assert_eq!(like_prefix("a\\b"), "a\\\\b%");
        assert_eq!(like_prefix(""), "%");
    }
}
