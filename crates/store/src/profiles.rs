//! Profiles: a user's named tool selections.

use serde_json::Value;
use sqlx::types::Json;

use crate::Store;
use crate::codec::DbTime;
use crate::error::{Result, not_found};
use crate::model::Profile;

macro_rules! profile_columns {
    () => {
        "id, user_id, name, tool_filter, created_at, updated_at"
    };
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

impl Store {
    /// Create profile `name` for `user_id`; `Conflict` if the user has one by that name.
    pub async fn create_profile(
        &self,
        user_id: i64,
        name: &str,
        tool_filter: &Value,
    ) -> Result<Profile> {
        let row: ProfileRow = query!(
            self,
            "create_profile",
            returning_one(
                sqlx::query_as(concat!(
                    "INSERT INTO profiles (user_id, name, tool_filter, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $4) RETURNING ",
                    profile_columns!()
                ))
                .bind(user_id)
                .bind(name)
                .bind(Json(tool_filter))
                .bind(DbTime::now())
            )
        )?;
        Ok(row.into())
    }

    /// The profile with row id `id`.
    pub async fn get_profile(&self, id: i64) -> Result<Option<Profile>> {
        let row: Option<ProfileRow> = query!(
            self,
            "get_profile",
            fetch_optional(
                sqlx::query_as(concat!(
                    "SELECT ",
                    profile_columns!(),
                    " FROM profiles WHERE id = $1"
                ))
                .bind(id)
            )
        )?;
        Ok(row.map(Into::into))
    }

    /// The profiles of `user_id`, by name.
    pub async fn list_profiles(&self, user_id: i64) -> Result<Vec<Profile>> {
        let rows: Vec<ProfileRow> = query!(
            self,
            "list_profiles",
            fetch_all(
                sqlx::query_as(concat!(
                    "SELECT ",
                    profile_columns!(),
                    " FROM profiles WHERE user_id = $1 ORDER BY name"
                ))
                .bind(user_id)
            )
        )?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// Every user's profiles (for administrators), by owner then name.
    pub async fn list_all_profiles(&self) -> Result<Vec<Profile>> {
        let rows: Vec<ProfileRow> = query!(
            self,
            "list_all_profiles",
            fetch_all(sqlx::query_as(concat!(
                "SELECT ",
                profile_columns!(),
                " FROM profiles ORDER BY user_id, name"
            )))
        )?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// Rename profile `id`; returns whether it exists. `Conflict` if its owner already has a
    /// profile called `name`.
    pub async fn rename_profile(&self, id: i64, name: &str) -> Result<bool> {
        let affected = query!(
            self,
            "rename_profile",
            execute(
                sqlx::query("UPDATE profiles SET name = $2, updated_at = $3 WHERE id = $1")
                    .bind(id)
                    .bind(name)
                    .bind(DbTime::now())
            )
        )?;
        Ok(affected > 0)
    }

    /// Replace the tool filter of profile `id`; `NotFound` if there is none.
    pub async fn set_profile_tool_filter(&self, id: i64, tool_filter: &Value) -> Result<()> {
        let affected = query!(
            self,
            "set_profile_tool_filter",
            execute(
                sqlx::query("UPDATE profiles SET tool_filter = $2, updated_at = $3 WHERE id = $1")
                    .bind(id)
                    .bind(Json(tool_filter))
                    .bind(DbTime::now())
            )
        )?;
        if affected == 0 {
            return Err(not_found("profile", id));
        }
        Ok(())
    }

    /// Delete profile `id` with its tokens and credentials; returns whether it existed.
    pub async fn delete_profile(&self, id: i64) -> Result<bool> {
        let affected = query!(
            self,
            "delete_profile",
            execute(sqlx::query("DELETE FROM profiles WHERE id = $1").bind(id))
        )?;
        Ok(affected > 0)
    }
}
