//! Tool fingerprints: detect a server that silently changes its tool definitions.
//!
//! The first definition seen is trusted (trust on first use). A different one later is kept as
//! pending — never silently adopted — until an administrator approves exactly that fingerprint.

use crate::Store;
use crate::codec::{DbTime, opt};
use crate::error::{Result, StoreError};
use crate::model::{FingerprintCheck, ToolFingerprint};

macro_rules! fingerprint_columns {
    () => {
        "server, tool, sha256, first_seen, approved_at, pending_fingerprint, definition, pending_definition"
    };
}

#[derive(sqlx::FromRow)]
struct FingerprintRow {
    server: String,
    tool: String,
    sha256: String,
    first_seen: DbTime,
    approved_at: Option<DbTime>,
    pending_fingerprint: Option<String>,
    definition: Option<String>,
    pending_definition: Option<String>,
}

impl From<FingerprintRow> for ToolFingerprint {
    fn from(row: FingerprintRow) -> Self {
        Self {
            server: row.server,
            tool: row.tool,
            sha256: row.sha256,
            first_seen: row.first_seen.into(),
            approved_at: opt(row.approved_at),
            pending_fingerprint: row.pending_fingerprint,
            definition: row.definition,
            pending_definition: row.pending_definition,
        }
    }
}

impl Store {
    /// Compare a tool's current definition hash with the trusted one: record it if the tool is
    /// new, clear any pending change if it matches, or store it as pending if it differs.
    pub async fn record_or_compare_fingerprint(
        &self,
        server: &str,
        tool: &str,
        sha256: &str,
    ) -> Result<FingerprintCheck> {
        write_tx!(self, "record_or_compare_fingerprint", |tx| {
            let inserted = sqlx::query(
                "INSERT INTO tool_fingerprints (server, tool, sha256, first_seen)
                 VALUES ($1, $2, $3, $4) ON CONFLICT (server, tool) DO NOTHING",
            )
            .bind(server)
            .bind(tool)
            .bind(sha256)
            .bind(DbTime::now())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if inserted > 0 {
                return Ok(FingerprintCheck::New);
            }
            let trusted: String = sqlx::query_scalar(
                "UPDATE tool_fingerprints
                 SET pending_fingerprint = CASE WHEN sha256 = $3 THEN NULL ELSE $3 END
                 WHERE server = $1 AND tool = $2 RETURNING sha256",
            )
            .bind(server)
            .bind(tool)
            .bind(sha256)
            .fetch_one(&mut *tx)
            .await?;
            Ok(if trusted == sha256 {
                FingerprintCheck::Unchanged
            } else {
                FingerprintCheck::Changed {
                    trusted,
                    pending: sha256.to_owned(),
                }
            })
        })
    }

    /// Keeps the definition text behind `sha256` for `server`/`tool` beside whichever
    /// fingerprint it matches (trusted or pending), so a change can be shown as a diff. The
    /// caller bounds its size; trust is never decided on it.
    pub async fn record_fingerprint_definition(
        &self,
        server: &str,
        tool: &str,
        sha256: &str,
        definition: &str,
    ) -> Result<()> {
        query!(
            self,
            "record_fingerprint_definition",
            execute(
                sqlx::query(
                    "UPDATE tool_fingerprints
                     SET definition = CASE WHEN sha256 = $3 THEN $4 ELSE definition END,
                         pending_definition =
                             CASE WHEN pending_fingerprint = $3 THEN $4 ELSE pending_definition END
                     WHERE server = $1 AND tool = $2",
                )
                .bind(server)
                .bind(tool)
                .bind(sha256)
                .bind(definition)
            )
        )?;
        Ok(())
    }

    /// Every tool whose changed definition waits for approval, across servers.
    pub async fn list_pending_fingerprints(&self) -> Result<Vec<ToolFingerprint>> {
        let rows: Vec<FingerprintRow> = query!(
            self,
            "list_pending_fingerprints",
            fetch_all(sqlx::query_as(concat!(
                "SELECT ",
                fingerprint_columns!(),
                " FROM tool_fingerprints WHERE pending_fingerprint IS NOT NULL
                   ORDER BY server, tool"
            )))
        )?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// Trust the pending definition `sha256` of `server`/`tool`. Refused (`NotFound`) unless
    /// exactly that fingerprint is pending, so an approval never covers a later change.
    pub async fn approve_fingerprint(&self, server: &str, tool: &str, sha256: &str) -> Result<()> {
        let affected = query!(
            self,
            "approve_fingerprint",
            execute(
                sqlx::query(
                    "UPDATE tool_fingerprints
                     SET sha256 = pending_fingerprint, pending_fingerprint = NULL,
                         approved_at = $4, definition = pending_definition,
                         pending_definition = NULL
                     WHERE server = $1 AND tool = $2 AND pending_fingerprint = $3",
                )
                .bind(server)
                .bind(tool)
                .bind(sha256)
                .bind(DbTime::now())
            )
        )?;
        if affected == 0 {
            return Err(StoreError::NotFound {
                what: "pending fingerprint",
                key: format!("{server}/{tool} {sha256}"),
            });
        }
        Ok(())
    }

    /// The fingerprint record of `server`/`tool`.
    pub async fn get_fingerprint(
        &self,
        server: &str,
        tool: &str,
    ) -> Result<Option<ToolFingerprint>> {
        let row: Option<FingerprintRow> = query!(
            self,
            "get_fingerprint",
            fetch_optional(
                sqlx::query_as(concat!(
                    "SELECT ",
                    fingerprint_columns!(),
                    " FROM tool_fingerprints WHERE server = $1 AND tool = $2"
                ))
                .bind(server)
                .bind(tool)
            )
        )?;
        Ok(row.map(Into::into))
    }

    /// Forgets the records of `tools` of `server` (tools it no longer lists, expired to keep
    /// the table bounded); returns how many went.
    pub async fn forget_fingerprints(&self, server: &str, tools: &[String]) -> Result<u64> {
        write_tx!(self, "forget_fingerprints", |tx| {
            let mut forgotten = 0;
            for tool in tools {
                forgotten +=
                    sqlx::query("DELETE FROM tool_fingerprints WHERE server = $1 AND tool = $2")
                        .bind(server)
                        .bind(tool)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
            }
            Ok(forgotten)
        })
    }

    /// All fingerprint records of `server`, by tool name.
    pub async fn list_fingerprints(&self, server: &str) -> Result<Vec<ToolFingerprint>> {
        let rows: Vec<FingerprintRow> = query!(
            self,
            "list_fingerprints",
            fetch_all(
                sqlx::query_as(concat!(
                    "SELECT ",
                    fingerprint_columns!(),
                    " FROM tool_fingerprints WHERE server = $1 ORDER BY tool"
                ))
                .bind(server)
            )
        )?;
        Ok(rows.into_iter().map(Into::into).collect())
    }
}
