//! The newest accepted signed index (its version and content hash), for rollback protection.

use crate::Store;
use crate::codec::DbTime;
use crate::error::{Result, StoreError};

/// What the gateway remembers of the newest index it accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcceptedIndexState {
    pub version: u64,
    pub content_sha256: String,
}

impl Store {
    pub async fn accepted_index(&self) -> Result<Option<AcceptedIndexState>> {
        let row: Option<(i64, String)> = query!(
            self,
            "accepted_index",
            fetch_optional(sqlx::query_as(
                "SELECT version, content_sha256 FROM index_state WHERE id = 1"
            ))
        )?;
        Ok(row.map(|(version, content_sha256)| AcceptedIndexState {
            version: version as u64,
            content_sha256,
        }))
    }

    /// Records `state` as the newest accepted index. Refused (nothing changed) if the stored one
    /// is newer, or has the same version with different content: another replica may have
    /// accepted a newer index since this one was verified.
    pub async fn accept_index(&self, state: &AcceptedIndexState) -> Result<()> {
        let version = i64::try_from(state.version).map_err(|_| StoreError::IndexNotNewer {
            version: state.version,
            reason: "versions above 2^63 cannot be stored".into(),
        })?;
        let affected = query!(
            self,
            "accept_index",
            execute(
                sqlx::query(
                    "INSERT INTO index_state (id, version, content_sha256, accepted_at)
                     VALUES (1, $1, $2, $3)
                     ON CONFLICT (id) DO UPDATE SET
                         version = excluded.version,
                         content_sha256 = excluded.content_sha256,
                         accepted_at = excluded.accepted_at
                     WHERE index_state.version < excluded.version
                        OR (index_state.version = excluded.version
                            AND index_state.content_sha256 = excluded.content_sha256)",
                )
                .bind(version)
                .bind(&state.content_sha256)
                .bind(DbTime::now())
            )
        )?;
        if affected == 0 {
            return Err(StoreError::IndexNotNewer {
                version: state.version,
                reason: "a newer index, or another document under this version, was accepted \
                         already"
                    .into(),
            });
        }
        Ok(())
    }
}
