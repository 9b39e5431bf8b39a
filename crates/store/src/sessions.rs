//! Dashboard login sessions, keyed by the hash of the session cookie (the cookie itself never
//! reaches the store).

use time::OffsetDateTime;

use crate::Store;
use crate::codec::DbTime;
use crate::error::Result;
use crate::model::{LoginSession, NewSession};

macro_rules! session_columns {
    () => {
        "id_hash, user_id, impersonating_user_id, created_at, expires_at"
    };
}

#[derive(sqlx::FromRow)]
struct SessionRow {
    id_hash: String,
    user_id: i64,
    impersonating_user_id: Option<i64>,
    created_at: DbTime,
    expires_at: DbTime,
}

impl From<SessionRow> for LoginSession {
    fn from(row: SessionRow) -> Self {
        Self {
            id_hash: row.id_hash,
            user_id: row.user_id,
            impersonating_user_id: row.impersonating_user_id,
            created_at: row.created_at.into(),
            expires_at: row.expires_at.into(),
        }
    }
}

impl Store {
    /// Record a login session; `Conflict` if the hash exists.
    pub async fn create_session(&self, session: &NewSession<'_>) -> Result<LoginSession> {
        let row: SessionRow = query!(
            self,
            "create_session",
            returning_one(
                sqlx::query_as(concat!(
                    "INSERT INTO login_sessions
                         (id_hash, user_id, impersonating_user_id, created_at, expires_at)
                     VALUES ($1, $2, $3, $4, $5) RETURNING ",
                    session_columns!()
                ))
                .bind(session.id_hash)
                .bind(session.user_id)
                .bind(session.impersonating_user_id)
                .bind(DbTime::now())
                .bind(DbTime::from(session.expires_at))
            )
        )?;
        Ok(row.into())
    }

    /// The session whose cookie hashes to `id_hash`, expired or not (the caller checks
    /// `expires_at`).
    pub async fn get_session(&self, id_hash: &str) -> Result<Option<LoginSession>> {
        let row: Option<SessionRow> = query!(
            self,
            "get_session",
            fetch_optional(
                sqlx::query_as(concat!(
                    "SELECT ",
                    session_columns!(),
                    " FROM login_sessions WHERE id_hash = $1"
                ))
                .bind(id_hash)
            )
        )?;
        Ok(row.map(Into::into))
    }

    /// Start (`Some(user_id)`) or end (`None`) impersonation in session `id_hash`. Returns
    /// whether the session exists; `MissingReference` if the impersonated user does not. Who may
    /// impersonate whom is the caller's decision.
    pub async fn set_session_impersonation(
        &self,
        id_hash: &str,
        impersonating_user_id: Option<i64>,
    ) -> Result<bool> {
        let affected = query!(
            self,
            "set_session_impersonation",
            execute(
                sqlx::query(
                    "UPDATE login_sessions SET impersonating_user_id = $2 WHERE id_hash = $1",
                )
                .bind(id_hash)
                .bind(impersonating_user_id)
            )
        )?;
        Ok(affected > 0)
    }

    /// End a session (logout); returns whether it existed.
    pub async fn revoke_session(&self, id_hash: &str) -> Result<bool> {
        let affected = query!(
            self,
            "revoke_session",
            execute(sqlx::query("DELETE FROM login_sessions WHERE id_hash = $1").bind(id_hash))
        )?;
        Ok(affected > 0)
    }

    /// Delete sessions that expired at or before `now`; returns how many.
    pub async fn delete_expired_sessions(&self, now: OffsetDateTime) -> Result<u64> {
        query!(
            self,
            "delete_expired_sessions",
            execute(
                sqlx::query("DELETE FROM login_sessions WHERE expires_at <= $1")
                    .bind(DbTime::from(now))
            )
        )
    }
}
