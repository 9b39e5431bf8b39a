//! Users, roles, login sessions, profiles and profile tokens. Sessions and tokens are keyed by
//! their hashes; the raw values never reach the store.

use serde_json::Value;
use sqlx::types::Json;
use time::OffsetDateTime;

use crate::Store;
use crate::codec::{DbTime, opt};
use crate::error::{Result, StoreError, db_err};
use crate::model::{LoginSession, NewSession, NewUser, Profile, ProfileToken, User};

macro_rules! user_columns {
    () => {
        "id, subject, email, display_name, created_at"
    };
}
macro_rules! session_columns {
    () => {
        "id_hash, user_id, impersonating_user_id, created_at, expires_at"
    };
}
macro_rules! profile_columns {
    () => {
        "id, user_id, name, tool_filter, created_at, updated_at"
    };
}
macro_rules! token_columns {
    () => {
        "token_hash, profile_id, created_at, last_used_at, revoked_at"
    };
}

#[derive(sqlx::FromRow)]
struct UserRow {
    id: i64,
    subject: String,
    email: Option<String>,
    display_name: Option<String>,
    created_at: DbTime,
}

impl From<UserRow> for User {
    fn from(row: UserRow) -> Self {
        Self {
            id: row.id,
            subject: row.subject,
            email: row.email,
            display_name: row.display_name,
            created_at: row.created_at.into(),
        }
    }
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

#[derive(sqlx::FromRow)]
struct ProfileRow {
    id: i64,
    user_id: i64,
    name: String,
    tool_filter: Json<Value>,
    created_at: DbTime,
    updated_at: DbTime,
}

impl From<ProfileRow> for Profile {
    fn from(row: ProfileRow) -> Self {
        Self {
            id: row.id,
            user_id: row.user_id,
            name: row.name,
            tool_filter: row.tool_filter.0,
            created_at: row.created_at.into(),
            updated_at: row.updated_at.into(),
        }
    }
}

#[derive(sqlx::FromRow)]
struct TokenRow {
    token_hash: String,
    profile_id: i64,
    created_at: DbTime,
    last_used_at: Option<DbTime>,
    revoked_at: Option<DbTime>,
}

impl From<TokenRow> for ProfileToken {
    fn from(row: TokenRow) -> Self {
        Self {
            token_hash: row.token_hash,
            profile_id: row.profile_id,
            created_at: row.created_at.into(),
            last_used_at: opt(row.last_used_at),
            revoked_at: opt(row.revoked_at),
        }
    }
}

fn not_found(what: &'static str, key: impl ToString) -> StoreError {
    StoreError::NotFound {
        what,
        key: key.to_string(),
    }
}

impl Store {
    // -- users ----------------------------------------------------------------------------

    /// Create a user; `Conflict` if the subject exists.
    pub async fn create_user(&self, user: &NewUser<'_>) -> Result<User> {
        let row: UserRow = on_backend!(self, |pool| {
            sqlx::query_as(concat!(
                "INSERT INTO users (subject, email, display_name, created_at)
                 VALUES ($1, $2, $3, $4) RETURNING ",
                user_columns!()
            ))
            .bind(user.subject)
            .bind(user.email)
            .bind(user.display_name)
            .bind(DbTime::now())
            .fetch_one(pool)
            .await
        })
        .map_err(db_err("create_user"))?;
        Ok(row.into())
    }

    /// Create the user with identity `subject`, or update the email and name of the existing
    /// one (sign-in refreshes what the identity provider says).
    pub async fn upsert_user(&self, user: &NewUser<'_>) -> Result<User> {
        let row: UserRow = on_backend!(self, |pool| {
            sqlx::query_as(concat!(
                "INSERT INTO users (subject, email, display_name, created_at)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (subject) DO UPDATE
                     SET email = excluded.email, display_name = excluded.display_name
                 RETURNING ",
                user_columns!()
            ))
            .bind(user.subject)
            .bind(user.email)
            .bind(user.display_name)
            .bind(DbTime::now())
            .fetch_one(pool)
            .await
        })
        .map_err(db_err("upsert_user"))?;
        Ok(row.into())
    }

    /// The user with row id `id`.
    pub async fn get_user(&self, id: i64) -> Result<Option<User>> {
        let row: Option<UserRow> = on_backend!(self, |pool| {
            sqlx::query_as(concat!(
                "SELECT ",
                user_columns!(),
                " FROM users WHERE id = $1"
            ))
            .bind(id)
            .fetch_optional(pool)
            .await
        })
        .map_err(db_err("get_user"))?;
        Ok(row.map(Into::into))
    }

    /// The user with identity `subject`.
    pub async fn get_user_by_subject(&self, subject: &str) -> Result<Option<User>> {
        let row: Option<UserRow> = on_backend!(self, |pool| {
            sqlx::query_as(concat!(
                "SELECT ",
                user_columns!(),
                " FROM users WHERE subject = $1"
            ))
            .bind(subject)
            .fetch_optional(pool)
            .await
        })
        .map_err(db_err("get_user_by_subject"))?;
        Ok(row.map(Into::into))
    }

    /// All users, by id.
    pub async fn list_users(&self) -> Result<Vec<User>> {
        let rows: Vec<UserRow> = on_backend!(self, |pool| {
            sqlx::query_as(concat!(
                "SELECT ",
                user_columns!(),
                " FROM users ORDER BY id"
            ))
            .fetch_all(pool)
            .await
        })
        .map_err(db_err("list_users"))?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// Delete a user with their roles, sessions, profiles, tokens and own credentials.
    /// Returns whether the user existed.
    pub async fn delete_user(&self, id: i64) -> Result<bool> {
        let affected = on_backend!(self, |pool| {
            sqlx::query("DELETE FROM users WHERE id = $1")
                .bind(id)
                .execute(pool)
                .await
                .map(|done| done.rows_affected())
        })
        .map_err(db_err("delete_user"))?;
        Ok(affected > 0)
    }

    // -- roles ----------------------------------------------------------------------------

    /// Give `user_id` the role `role` (idempotent); `MissingReference` if no such user.
    pub async fn grant_role(&self, user_id: i64, role: &str) -> Result<()> {
        on_backend!(self, |pool| {
            sqlx::query(
                "INSERT INTO roles (user_id, role) VALUES ($1, $2)
                 ON CONFLICT (user_id, role) DO NOTHING",
            )
            .bind(user_id)
            .bind(role)
            .execute(pool)
            .await
            .map(|done| done.rows_affected())
        })
        .map_err(db_err("grant_role"))?;
        Ok(())
    }

    /// Take `role` from `user_id`; returns whether the user had it.
    pub async fn revoke_role(&self, user_id: i64, role: &str) -> Result<bool> {
        let affected = on_backend!(self, |pool| {
            sqlx::query("DELETE FROM roles WHERE user_id = $1 AND role = $2")
                .bind(user_id)
                .bind(role)
                .execute(pool)
                .await
                .map(|done| done.rows_affected())
        })
        .map_err(db_err("revoke_role"))?;
        Ok(affected > 0)
    }

    /// Make `role` the user's only role: grant it, then drop every other. Each step leaves a
    /// valid state, and repeating it converges, so a sign-in interrupted halfway is redone by
    /// the next one.
    pub async fn set_only_role(&self, user_id: i64, role: &str) -> Result<()> {
        self.grant_role(user_id, role).await?;
        on_backend!(self, |pool| {
            sqlx::query("DELETE FROM roles WHERE user_id = $1 AND role <> $2")
                .bind(user_id)
                .bind(role)
                .execute(pool)
                .await
                .map(|done| done.rows_affected())
        })
        .map_err(db_err("set_only_role"))?;
        Ok(())
    }

    /// The roles of `user_id`, sorted.
    pub async fn list_roles(&self, user_id: i64) -> Result<Vec<String>> {
        on_backend!(self, |pool| {
            sqlx::query_scalar("SELECT role FROM roles WHERE user_id = $1 ORDER BY role")
                .bind(user_id)
                .fetch_all(pool)
                .await
        })
        .map_err(db_err("list_roles"))
    }

    // -- login sessions -------------------------------------------------------------------

    /// Record a login session; `Conflict` if the hash exists.
    pub async fn create_session(&self, session: &NewSession<'_>) -> Result<LoginSession> {
        let row: SessionRow = on_backend!(self, |pool| {
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
            .fetch_one(pool)
            .await
        })
        .map_err(db_err("create_session"))?;
        Ok(row.into())
    }

    /// The session whose cookie hashes to `id_hash`, expired or not (the caller checks
    /// `expires_at`).
    pub async fn get_session(&self, id_hash: &str) -> Result<Option<LoginSession>> {
        let row: Option<SessionRow> = on_backend!(self, |pool| {
            sqlx::query_as(concat!(
                "SELECT ",
                session_columns!(),
                " FROM login_sessions WHERE id_hash = $1"
            ))
            .bind(id_hash)
            .fetch_optional(pool)
            .await
        })
        .map_err(db_err("get_session"))?;
        Ok(row.map(Into::into))
    }

    /// End a session (logout); returns whether it existed.
    pub async fn revoke_session(&self, id_hash: &str) -> Result<bool> {
        let affected = on_backend!(self, |pool| {
            sqlx::query("DELETE FROM login_sessions WHERE id_hash = $1")
                .bind(id_hash)
                .execute(pool)
                .await
                .map(|done| done.rows_affected())
        })
        .map_err(db_err("revoke_session"))?;
        Ok(affected > 0)
    }

    /// Delete sessions that expired at or before `now`; returns how many.
    pub async fn delete_expired_sessions(&self, now: OffsetDateTime) -> Result<u64> {
        let affected = on_backend!(self, |pool| {
            sqlx::query("DELETE FROM login_sessions WHERE expires_at <= $1")
                .bind(DbTime::from(now))
                .execute(pool)
                .await
                .map(|done| done.rows_affected())
        })
        .map_err(db_err("delete_expired_sessions"))?;
        Ok(affected)
    }

    // -- profiles -------------------------------------------------------------------------

    /// Create profile `name` for `user_id`; `Conflict` if the user has one by that name.
    pub async fn create_profile(
        &self,
        user_id: i64,
        name: &str,
        tool_filter: &Value,
    ) -> Result<Profile> {
        let row: ProfileRow = on_backend!(self, |pool| {
            sqlx::query_as(concat!(
                "INSERT INTO profiles (user_id, name, tool_filter, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $4) RETURNING ",
                profile_columns!()
            ))
            .bind(user_id)
            .bind(name)
            .bind(Json(tool_filter))
            .bind(DbTime::now())
            .fetch_one(pool)
            .await
        })
        .map_err(db_err("create_profile"))?;
        Ok(row.into())
    }

    /// The profile with row id `id`.
    pub async fn get_profile(&self, id: i64) -> Result<Option<Profile>> {
        let row: Option<ProfileRow> = on_backend!(self, |pool| {
            sqlx::query_as(concat!(
                "SELECT ",
                profile_columns!(),
                " FROM profiles WHERE id = $1"
            ))
            .bind(id)
            .fetch_optional(pool)
            .await
        })
        .map_err(db_err("get_profile"))?;
        Ok(row.map(Into::into))
    }

    /// The profiles of `user_id`, by name.
    pub async fn list_profiles(&self, user_id: i64) -> Result<Vec<Profile>> {
        let rows: Vec<ProfileRow> = on_backend!(self, |pool| {
            sqlx::query_as(concat!(
                "SELECT ",
                profile_columns!(),
                " FROM profiles WHERE user_id = $1 ORDER BY name"
            ))
            .bind(user_id)
            .fetch_all(pool)
            .await
        })
        .map_err(db_err("list_profiles"))?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// Replace the tool filter of profile `id`.
    pub async fn set_profile_tool_filter(&self, id: i64, tool_filter: &Value) -> Result<()> {
        let affected = on_backend!(self, |pool| {
            sqlx::query("UPDATE profiles SET tool_filter = $2, updated_at = $3 WHERE id = $1")
                .bind(id)
                .bind(Json(tool_filter))
                .bind(DbTime::now())
                .execute(pool)
                .await
                .map(|done| done.rows_affected())
        })
        .map_err(db_err("set_profile_tool_filter"))?;
        if affected == 0 {
            return Err(not_found("profile", id));
        }
        Ok(())
    }

    /// Delete profile `id` with its tokens and credentials; returns whether it existed.
    pub async fn delete_profile(&self, id: i64) -> Result<bool> {
        let affected = on_backend!(self, |pool| {
            sqlx::query("DELETE FROM profiles WHERE id = $1")
                .bind(id)
                .execute(pool)
                .await
                .map(|done| done.rows_affected())
        })
        .map_err(db_err("delete_profile"))?;
        Ok(affected > 0)
    }

    // -- profile tokens -------------------------------------------------------------------

    /// Record a token for `profile_id` by its hash; `Conflict` if the hash exists.
    pub async fn create_profile_token(
        &self,
        token_hash: &str,
        profile_id: i64,
    ) -> Result<ProfileToken> {
        let row: TokenRow = on_backend!(self, |pool| {
            sqlx::query_as(concat!(
                "INSERT INTO profile_tokens (token_hash, profile_id, created_at)
                 VALUES ($1, $2, $3) RETURNING ",
                token_columns!()
            ))
            .bind(token_hash)
            .bind(profile_id)
            .bind(DbTime::now())
            .fetch_one(pool)
            .await
        })
        .map_err(db_err("create_profile_token"))?;
        Ok(row.into())
    }

    /// The token with hash `token_hash`, revoked or not (see [`ProfileToken::is_active`]).
    pub async fn get_profile_token(&self, token_hash: &str) -> Result<Option<ProfileToken>> {
        let row: Option<TokenRow> = on_backend!(self, |pool| {
            sqlx::query_as(concat!(
                "SELECT ",
                token_columns!(),
                " FROM profile_tokens WHERE token_hash = $1"
            ))
            .bind(token_hash)
            .fetch_optional(pool)
            .await
        })
        .map_err(db_err("get_profile_token"))?;
        Ok(row.map(Into::into))
    }

    /// The tokens of `profile_id`, oldest first.
    pub async fn list_profile_tokens(&self, profile_id: i64) -> Result<Vec<ProfileToken>> {
        let rows: Vec<TokenRow> = on_backend!(self, |pool| {
            sqlx::query_as(concat!(
                "SELECT ",
                token_columns!(),
                " FROM profile_tokens WHERE profile_id = $1 ORDER BY created_at, token_hash"
            ))
            .bind(profile_id)
            .fetch_all(pool)
            .await
        })
        .map_err(db_err("list_profile_tokens"))?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// Note a successful use of an active token. Returns the token only if it exists and is
    /// not revoked, so one call both checks and records.
    pub async fn touch_profile_token(&self, token_hash: &str) -> Result<Option<ProfileToken>> {
        let row: Option<TokenRow> = on_backend!(self, |pool| {
            sqlx::query_as(concat!(
                "UPDATE profile_tokens SET last_used_at = $2
                 WHERE token_hash = $1 AND revoked_at IS NULL RETURNING ",
                token_columns!()
            ))
            .bind(token_hash)
            .bind(DbTime::now())
            .fetch_optional(pool)
            .await
        })
        .map_err(db_err("touch_profile_token"))?;
        Ok(row.map(Into::into))
    }

    /// Revoke a token for good; returns whether it was active until now.
    pub async fn revoke_profile_token(&self, token_hash: &str) -> Result<bool> {
        let affected = on_backend!(self, |pool| {
            sqlx::query(
                "UPDATE profile_tokens SET revoked_at = $2
                 WHERE token_hash = $1 AND revoked_at IS NULL",
            )
            .bind(token_hash)
            .bind(DbTime::now())
            .execute(pool)
            .await
            .map(|done| done.rows_affected())
        })
        .map_err(db_err("revoke_profile_token"))?;
        Ok(affected > 0)
    }
}
