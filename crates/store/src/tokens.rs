//! Bearer tokens, stored only as their hashes: profile tokens (MCP clients open one profile)
//! and API tokens (automation against `/api`, acting as their owner with one role).
//!
//! A token authenticates while it is neither revoked nor expired; `touch_*` checks that and
//! records the use in one statement, so callers cannot forget either half.

use time::OffsetDateTime;

use crate::Store;
use crate::codec::{DbTime, opt};
use crate::error::Result;
use crate::model::{ApiToken, NewApiToken, NewProfileToken, ProfileToken, Role};

macro_rules! profile_token_columns {
    () => {
        "token_hash, profile_id, name, created_at, expires_at, last_used_at, revoked_at"
    };
}
macro_rules! api_token_columns {
    () => {
        "token_hash, user_id, name, role, created_at, expires_at, last_used_at, revoked_at"
    };
}

#[derive(sqlx::FromRow)]
struct ProfileTokenRow {
    token_hash: String,
    profile_id: i64,
    name: String,
    created_at: DbTime,
    expires_at: Option<DbTime>,
    last_used_at: Option<DbTime>,
    revoked_at: Option<DbTime>,
}

impl From<ProfileTokenRow> for ProfileToken {
    fn from(row: ProfileTokenRow) -> Self {
        Self {
            token_hash: row.token_hash,
            profile_id: row.profile_id,
            name: row.name,
            created_at: row.created_at.into(),
            expires_at: opt(row.expires_at),
            last_used_at: opt(row.last_used_at),
            revoked_at: opt(row.revoked_at),
        }
    }
}

#[derive(sqlx::FromRow)]
struct ApiTokenRow {
    token_hash: String,
    user_id: i64,
    name: String,
    role: Role,
    created_at: DbTime,
    expires_at: DbTime,
    last_used_at: Option<DbTime>,
    revoked_at: Option<DbTime>,
}

impl From<ApiTokenRow> for ApiToken {
    fn from(row: ApiTokenRow) -> Self {
        Self {
            token_hash: row.token_hash,
            user_id: row.user_id,
            name: row.name,
            role: row.role,
            created_at: row.created_at.into(),
            expires_at: row.expires_at.into(),
            last_used_at: opt(row.last_used_at),
            revoked_at: opt(row.revoked_at),
        }
    }
}

impl Store {
    // -- profile tokens -------------------------------------------------------------------

    /// Record a profile token by its hash; `Conflict` if the hash exists, `MissingReference` if
    /// the profile does not.
    pub async fn create_profile_token(&self, token: &NewProfileToken<'_>) -> Result<ProfileToken> {
        let row: ProfileTokenRow = query!(
            self,
            "create_profile_token",
            returning_one(
                sqlx::query_as(concat!(
                    "INSERT INTO profile_tokens
                         (token_hash, profile_id, name, created_at, expires_at)
                     VALUES ($1, $2, $3, $4, $5) RETURNING ",
                    profile_token_columns!()
                ))
                .bind(token.token_hash)
                .bind(token.profile_id)
                .bind(token.name)
                .bind(DbTime::now())
                .bind(token.expires_at.map(DbTime::from))
            )
        )?;
        Ok(row.into())
    }

    /// The token with hash `token_hash`, revoked, expired or not (see
    /// [`ProfileToken::is_active`]).
    pub async fn get_profile_token(&self, token_hash: &str) -> Result<Option<ProfileToken>> {
        let row: Option<ProfileTokenRow> = query!(
            self,
            "get_profile_token",
            fetch_optional(
                sqlx::query_as(concat!(
                    "SELECT ",
                    profile_token_columns!(),
                    " FROM profile_tokens WHERE token_hash = $1"
                ))
                .bind(token_hash)
            )
        )?;
        Ok(row.map(Into::into))
    }

    /// The tokens of `profile_id`, oldest first.
    pub async fn list_profile_tokens(&self, profile_id: i64) -> Result<Vec<ProfileToken>> {
        let rows: Vec<ProfileTokenRow> = query!(
            self,
            "list_profile_tokens",
            fetch_all(
                sqlx::query_as(concat!(
                    "SELECT ",
                    profile_token_columns!(),
                    " FROM profile_tokens WHERE profile_id = $1 ORDER BY created_at, token_hash"
                ))
                .bind(profile_id)
            )
        )?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// Note a use of the token now. Returns the token only if it exists and is active (not
    /// revoked, not expired), so one call both checks and records.
    pub async fn touch_profile_token(&self, token_hash: &str) -> Result<Option<ProfileToken>> {
        let row: Option<ProfileTokenRow> = query!(
            self,
            "touch_profile_token",
            returning_optional(
                sqlx::query_as(concat!(
                    "UPDATE profile_tokens SET last_used_at = $2
                     WHERE token_hash = $1 AND revoked_at IS NULL
                       AND (expires_at IS NULL OR expires_at > $2)
                     RETURNING ",
                    profile_token_columns!()
                ))
                .bind(token_hash)
                .bind(DbTime::now())
            )
        )?;
        Ok(row.map(Into::into))
    }

    /// Revoke a token for good; returns whether it was unrevoked until now.
    pub async fn revoke_profile_token(&self, token_hash: &str) -> Result<bool> {
        let affected = query!(
            self,
            "revoke_profile_token",
            execute(
                sqlx::query(
                    "UPDATE profile_tokens SET revoked_at = $2
                     WHERE token_hash = $1 AND revoked_at IS NULL",
                )
                .bind(token_hash)
                .bind(DbTime::now())
            )
        )?;
        Ok(affected > 0)
    }

    // -- API tokens -----------------------------------------------------------------------

    /// Record an API token by its hash; `Conflict` if the hash exists, `MissingReference` if the
    /// user does not.
    pub async fn create_api_token(&self, token: &NewApiToken<'_>) -> Result<ApiToken> {
        let row: ApiTokenRow = query!(
            self,
            "create_api_token",
            returning_one(
                sqlx::query_as(concat!(
                    "INSERT INTO api_tokens
                         (token_hash, user_id, name, role, created_at, expires_at)
                     VALUES ($1, $2, $3, $4, $5, $6) RETURNING ",
                    api_token_columns!()
                ))
                .bind(token.token_hash)
                .bind(token.user_id)
                .bind(token.name)
                .bind(token.role)
                .bind(DbTime::now())
                .bind(DbTime::from(token.expires_at))
            )
        )?;
        Ok(row.into())
    }

    /// The API token with hash `token_hash`, revoked, expired or not (see
    /// [`ApiToken::is_active`]).
    pub async fn get_api_token(&self, token_hash: &str) -> Result<Option<ApiToken>> {
        let row: Option<ApiTokenRow> = query!(
            self,
            "get_api_token",
            fetch_optional(
                sqlx::query_as(concat!(
                    "SELECT ",
                    api_token_columns!(),
                    " FROM api_tokens WHERE token_hash = $1"
                ))
                .bind(token_hash)
            )
        )?;
        Ok(row.map(Into::into))
    }

    /// The API tokens of `user_id`, oldest first, revoked and expired ones included.
    pub async fn list_api_tokens(&self, user_id: i64) -> Result<Vec<ApiToken>> {
        let rows: Vec<ApiTokenRow> = query!(
            self,
            "list_api_tokens",
            fetch_all(
                sqlx::query_as(concat!(
                    "SELECT ",
                    api_token_columns!(),
                    " FROM api_tokens WHERE user_id = $1 ORDER BY created_at, token_hash"
                ))
                .bind(user_id)
            )
        )?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// Note a use of the API token at `now`. Returns the token only if it exists and is active
    /// (not revoked, not expired at `now`), so one call both checks and records.
    pub async fn touch_api_token(
        &self,
        token_hash: &str,
        now: OffsetDateTime,
    ) -> Result<Option<ApiToken>> {
        let row: Option<ApiTokenRow> = query!(
            self,
            "touch_api_token",
            returning_optional(
                sqlx::query_as(concat!(
                    "UPDATE api_tokens SET last_used_at = $2
                     WHERE token_hash = $1 AND revoked_at IS NULL AND expires_at > $2
                     RETURNING ",
                    api_token_columns!()
                ))
                .bind(token_hash)
                .bind(DbTime::from(now))
            )
        )?;
        Ok(row.map(Into::into))
    }

    /// Revoke `user_id`'s API token `token_hash` for good. Returns whether it was unrevoked
    /// until now; another user's token is left alone (and reported as `false`).
    pub async fn revoke_api_token(&self, user_id: i64, token_hash: &str) -> Result<bool> {
        let affected = query!(
            self,
            "revoke_api_token",
            execute(
                sqlx::query(
                    "UPDATE api_tokens SET revoked_at = $3
                     WHERE token_hash = $2 AND user_id = $1 AND revoked_at IS NULL",
                )
                .bind(user_id)
                .bind(token_hash)
                .bind(DbTime::now())
            )
        )?;
        Ok(affected > 0)
    }
}
