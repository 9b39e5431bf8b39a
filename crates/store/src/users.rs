//! Users and their roles.

use crate::Store;
use crate::codec::DbTime;
use crate::error::Result;
use crate::model::{NewUser, Role, User};

macro_rules! user_columns {
    () => {
        "id, subject, email, display_name, created_at"
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

impl Store {
    // -- users ----------------------------------------------------------------------------

    /// Create a user; `Conflict` if the subject exists.
    pub async fn create_user(&self, user: &NewUser<'_>) -> Result<User> {
        let row: UserRow = query!(
            self,
            "create_user",
            returning_one(
                sqlx::query_as(concat!(
                    "INSERT INTO users (subject, email, display_name, created_at)
                     VALUES ($1, $2, $3, $4) RETURNING ",
                    user_columns!()
                ))
                .bind(user.subject)
                .bind(user.email)
                .bind(user.display_name)
                .bind(DbTime::now())
            )
        )?;
        Ok(row.into())
    }

    /// Create the user with identity `subject`, or update the email and name of the existing
    /// one (sign-in refreshes what the identity provider says).
    pub async fn upsert_user(&self, user: &NewUser<'_>) -> Result<User> {
        let row: UserRow = query!(
            self,
            "upsert_user",
            returning_one(
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
            )
        )?;
        Ok(row.into())
    }

    /// The user with row id `id`.
    pub async fn get_user(&self, id: i64) -> Result<Option<User>> {
        let row: Option<UserRow> = query!(
            self,
            "get_user",
            fetch_optional(
                sqlx::query_as(concat!(
                    "SELECT ",
                    user_columns!(),
                    " FROM users WHERE id = $1"
                ))
                .bind(id)
            )
        )?;
        Ok(row.map(Into::into))
    }

    /// The user with identity `subject`.
    pub async fn get_user_by_subject(&self, subject: &str) -> Result<Option<User>> {
        let row: Option<UserRow> = query!(
            self,
            "get_user_by_subject",
            fetch_optional(
                sqlx::query_as(concat!(
                    "SELECT ",
                    user_columns!(),
                    " FROM users WHERE subject = $1"
                ))
                .bind(subject)
            )
        )?;
        Ok(row.map(Into::into))
    }

    /// All users, by id.
    pub async fn list_users(&self) -> Result<Vec<User>> {
        let rows: Vec<UserRow> = query!(
            self,
            "list_users",
            fetch_all(sqlx::query_as(concat!(
                "SELECT ",
                user_columns!(),
                " FROM users ORDER BY id"
            )))
        )?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// Delete a user with their roles, sessions, profiles, tokens and own credentials.
    /// Returns whether the user existed.
    pub async fn delete_user(&self, id: i64) -> Result<bool> {
        let affected = query!(
            self,
            "delete_user",
            execute(sqlx::query("DELETE FROM users WHERE id = $1").bind(id))
        )?;
        Ok(affected > 0)
    }

    // -- roles ----------------------------------------------------------------------------

    /// Give `user_id` the role `role` (idempotent); `MissingReference` if no such user.
    pub async fn grant_role(&self, user_id: i64, role: Role) -> Result<()> {
        query!(
            self,
            "grant_role",
            execute(
                sqlx::query(
                    "INSERT INTO roles (user_id, role) VALUES ($1, $2)
                     ON CONFLICT (user_id, role) DO NOTHING",
                )
                .bind(user_id)
                .bind(role)
            )
        )?;
        Ok(())
    }

    /// Take `role` from `user_id`; returns whether the user had it.
    pub async fn revoke_role(&self, user_id: i64, role: Role) -> Result<bool> {
        let affected = query!(
            self,
            "revoke_role",
            execute(
                sqlx::query("DELETE FROM roles WHERE user_id = $1 AND role = $2")
                    .bind(user_id)
                    .bind(role)
            )
        )?;
        Ok(affected > 0)
    }

    /// Make `role` the user's only role: grant it, then drop every other. Each step leaves a
    /// valid state, and repeating it converges, so a sign-in interrupted halfway is redone by
    /// the next one.
    pub async fn set_only_role(&self, user_id: i64, role: Role) -> Result<()> {
        self.grant_role(user_id, role).await?;
        query!(
            self,
            "set_only_role",
            execute(
                sqlx::query("DELETE FROM roles WHERE user_id = $1 AND role <> $2")
                    .bind(user_id)
                    .bind(role)
            )
        )?;
        Ok(())
    }

    /// The roles of `user_id`, in the order of their stored text (`admin` first). A role this
    /// binary does not know is [`crate::StoreError::InvalidValue`].
    pub async fn list_roles(&self, user_id: i64) -> Result<Vec<Role>> {
        query!(
            self,
            "list_roles",
            fetch_all(
                sqlx::query_scalar("SELECT role FROM roles WHERE user_id = $1 ORDER BY role")
                    .bind(user_id)
            )
        )
    }
}
