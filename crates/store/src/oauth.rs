//! The gateway as an OAuth authorization server: dynamically registered clients, grants (a
//! user's consent for one client, profile and audience) and the codes and tokens issued under
//! them, all tokens only as hashes.
//!
//! Spending a code or refresh token is one conditional update, so two presentations racing
//! each other cannot both win; a spent one presented again revokes its whole grant in the same
//! transaction (the replay is taken as theft: RFC 6749 §4.1.2, OAuth 2.1 §4.3.1).

use serde_json::Value;
use sqlx::types::Json;
use time::OffsetDateTime;

use crate::Store;
use crate::codec::{DbTime, opt};
use crate::error::Result;

/// A dynamically registered client.
#[derive(Clone, Debug, PartialEq)]
pub struct OAuthClient {
    pub client_id: String,
    /// SHA-256 of the secret of a confidential client; `None`: a public client.
    pub secret_hash: Option<String>,
    /// The registration as accepted.
    pub metadata: Value,
    pub created_at: OffsetDateTime,
}

/// What [`Store::create_oauth_grant`] writes.
#[derive(Clone, Copy, Debug)]
pub struct NewOAuthGrant<'a> {
    pub user_id: i64,
    pub profile_id: i64,
    pub client_id: &'a str,
    /// As shown at consent (a client's own claim when it registered dynamically).
    pub client_name: &'a str,
    /// The audience: the `/mcp` URL the tokens are for.
    pub resource: &'a str,
    pub scope: &'a str,
}

/// A user's consent for one client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OAuthGrant {
    pub id: i64,
    pub user_id: i64,
    pub profile_id: i64,
    pub client_id: String,
    pub client_name: String,
    pub resource: String,
    pub scope: String,
    pub created_at: OffsetDateTime,
    pub last_used_at: Option<OffsetDateTime>,
    pub revoked_at: Option<OffsetDateTime>,
}

stored_enum! {
    /// What a token row is (`oauth_tokens.kind`).
    pub enum OAuthTokenKind as "OAuth token kind" {
        Code = "code",
        Access = "access",
        Refresh = "refresh",
    }
}

/// A code, access token or refresh token by its hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OAuthToken {
    pub token_hash: String,
    pub grant_id: i64,
    pub kind: OAuthTokenKind,
    pub expires_at: OffsetDateTime,
    /// Codes only.
    pub code_challenge: Option<String>,
    /// Codes only.
    pub redirect_uri: Option<String>,
}

/// A token to write: its hash and when it expires.
#[derive(Clone, Copy, Debug)]
pub struct NewOAuthToken<'a> {
    pub token_hash: &'a str,
    pub expires_at: OffsetDateTime,
}

/// Outcome of [`Store::exchange_oauth_token`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Exchange<R> {
    /// Spent now, and the new tokens written under this live grant.
    Issued(Box<OAuthGrant>),
    /// Spent now but refused by the caller's check: the grant has been revoked.
    Refused { grant_id: i64, why: R },
    /// Spent before: its grant (and every token under it) has now been revoked.
    Replayed { grant_id: i64 },
    /// Unknown, expired, of another kind, or its grant revoked.
    Invalid,
}

macro_rules! grant_columns {
    () => {
        "id, user_id, profile_id, client_id, client_name, resource, scope, created_at,
         last_used_at, revoked_at"
    };
}

#[derive(sqlx::FromRow)]
struct GrantRow {
    id: i64,
    user_id: i64,
    profile_id: i64,
    client_id: String,
    client_name: String,
    resource: String,
    scope: String,
    created_at: DbTime,
    last_used_at: Option<DbTime>,
    revoked_at: Option<DbTime>,
}

impl From<GrantRow> for OAuthGrant {
    fn from(r: GrantRow) -> Self {
        OAuthGrant {
            id: r.id,
            user_id: r.user_id,
            profile_id: r.profile_id,
            client_id: r.client_id,
            client_name: r.client_name,
            resource: r.resource,
            scope: r.scope,
            created_at: r.created_at.into(),
            last_used_at: opt(r.last_used_at),
            revoked_at: opt(r.revoked_at),
        }
    }
}

#[derive(sqlx::FromRow)]
struct TokenRow {
    token_hash: String,
    grant_id: i64,
    kind: OAuthTokenKind,
    expires_at: DbTime,
    code_challenge: Option<String>,
    redirect_uri: Option<String>,
}

impl From<TokenRow> for OAuthToken {
    fn from(r: TokenRow) -> Self {
        OAuthToken {
            token_hash: r.token_hash,
            grant_id: r.grant_id,
            kind: r.kind,
            expires_at: r.expires_at.into(),
            code_challenge: r.code_challenge,
            redirect_uri: r.redirect_uri,
        }
    }
}

#[derive(sqlx::FromRow)]
struct ClientRow {
    client_id: String,
    secret_hash: Option<String>,
    metadata: Json<Value>,
    created_at: DbTime,
}

const TOKEN_COLUMNS: &str = "token_hash, grant_id, kind, expires_at, code_challenge, redirect_uri";

impl Store {
    // -- clients ----------------------------------------------------------------------------

    /// Registers a client; `Conflict` if the id exists.
    pub async fn create_oauth_client(
        &self,
        client_id: &str,
        secret_hash: Option<&str>,
        metadata: &Value,
    ) -> Result<()> {
        query!(
            self,
            "create_oauth_client",
            execute(
                sqlx::query(
                    "INSERT INTO oauth_clients (client_id, secret_hash, metadata, created_at)
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(client_id)
                .bind(secret_hash)
                .bind(Json(metadata))
                .bind(DbTime::now())
            )
        )?;
        Ok(())
    }

    pub async fn get_oauth_client(&self, client_id: &str) -> Result<Option<OAuthClient>> {
        let row: Option<ClientRow> = query!(
            self,
            "get_oauth_client",
            fetch_optional(
                sqlx::query_as(
                    "SELECT client_id, secret_hash, metadata, created_at FROM oauth_clients
                     WHERE client_id = $1",
                )
                .bind(client_id)
            )
        )?;
        Ok(row.map(|r| OAuthClient {
            client_id: r.client_id,
            secret_hash: r.secret_hash,
            metadata: r.metadata.0,
            created_at: r.created_at.into(),
        }))
    }

    /// How many clients are registered (registration is unauthenticated, so it is capped).
    pub async fn count_oauth_clients(&self) -> Result<i64> {
        query!(
            self,
            "count_oauth_clients",
            fetch_one(sqlx::query_scalar("SELECT COUNT(*) FROM oauth_clients"))
        )
    }

    /// Forgets clients registered before `before` that no user ever granted anything.
    pub async fn delete_unused_oauth_clients(&self, before: OffsetDateTime) -> Result<u64> {
        query!(
            self,
            "delete_unused_oauth_clients",
            execute(
                sqlx::query(
                    "DELETE FROM oauth_clients WHERE created_at < $1
                     AND client_id NOT IN (SELECT client_id FROM oauth_grants)",
                )
                .bind(DbTime::from(before))
            )
        )
    }

    /// Deletes up to `count` of the oldest clients no user ever granted; returns how many.
    pub async fn delete_oldest_unused_oauth_clients(&self, count: i64) -> Result<u64> {
        query!(
            self,
            "delete_oldest_unused_oauth_clients",
            execute(
                sqlx::query(
                    "DELETE FROM oauth_clients WHERE client_id IN (
                       SELECT client_id FROM oauth_clients
                       WHERE client_id NOT IN (SELECT client_id FROM oauth_grants)
                       ORDER BY created_at LIMIT $1)",
                )
                .bind(count)
            )
        )
    }

    // -- grants -----------------------------------------------------------------------------

    /// Records a consent with its first code, in one transaction.
    pub async fn create_oauth_grant(
        &self,
        grant: &NewOAuthGrant<'_>,
        code: &NewOAuthToken<'_>,
        code_challenge: &str,
        redirect_uri: &str,
    ) -> Result<OAuthGrant> {
        write_tx!(self, "create_oauth_grant", |tx| {
            let row: GrantRow = sqlx::query_as(concat!(
                "INSERT INTO oauth_grants
                   (user_id, profile_id, client_id, client_name, resource, scope, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING ",
                grant_columns!()
            ))
            .bind(grant.user_id)
            .bind(grant.profile_id)
            .bind(grant.client_id)
            .bind(grant.client_name)
            .bind(grant.resource)
            .bind(grant.scope)
            .bind(DbTime::now())
            .fetch_one(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO oauth_tokens
                   (token_hash, grant_id, kind, expires_at, code_challenge, redirect_uri)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(code.token_hash)
            .bind(row.id)
            .bind(OAuthTokenKind::Code)
            .bind(DbTime::from(code.expires_at))
            .bind(code_challenge)
            .bind(redirect_uri)
            .execute(&mut *tx)
            .await?;
            Ok(row.into())
        })
    }

    pub async fn get_oauth_grant(&self, id: i64) -> Result<Option<OAuthGrant>> {
        let row: Option<GrantRow> = query!(
            self,
            "get_oauth_grant",
            fetch_optional(
                sqlx::query_as(concat!(
                    "SELECT ",
                    grant_columns!(),
                    " FROM oauth_grants WHERE id = $1"
                ))
                .bind(id)
            )
        )?;
        Ok(row.map(Into::into))
    }

    /// The live grants of `user_id`, newest first.
    pub async fn list_oauth_grants(&self, user_id: i64) -> Result<Vec<OAuthGrant>> {
        let rows: Vec<GrantRow> = query!(
            self,
            "list_oauth_grants",
            fetch_all(
                sqlx::query_as(concat!(
                    "SELECT ",
                    grant_columns!(),
                    " FROM oauth_grants WHERE user_id = $1 AND revoked_at IS NULL
                      ORDER BY id DESC"
                ))
                .bind(user_id)
            )
        )?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// Revokes grant `id` and deletes every code and token under it. `owner`: only when the
    /// grant is that user's. Returns whether a live grant was revoked.
    pub async fn revoke_oauth_grant(&self, id: i64, owner: Option<i64>) -> Result<bool> {
        write_tx!(self, "revoke_oauth_grant", |tx| {
            let revoked = sqlx::query(
                "UPDATE oauth_grants SET revoked_at = $3
                 WHERE id = $1 AND ($2 IS NULL OR user_id = $2) AND revoked_at IS NULL",
            )
            .bind(id)
            .bind(owner)
            .bind(DbTime::now())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if revoked > 0 {
                sqlx::query("DELETE FROM oauth_tokens WHERE grant_id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            Ok(revoked > 0)
        })
    }

    /// Notes a use of grant `id` now.
    pub async fn touch_oauth_grant(&self, id: i64) -> Result<()> {
        query!(
            self,
            "touch_oauth_grant",
            execute(
                sqlx::query("UPDATE oauth_grants SET last_used_at = $2 WHERE id = $1")
                    .bind(id)
                    .bind(DbTime::now())
            )
        )?;
        Ok(())
    }

    // -- codes and tokens -------------------------------------------------------------------

    /// Exchanges a code or refresh token for a new access and refresh token, in one
    /// transaction: the presented one is spent if it is unspent, unexpired and of `kind` under
    /// a live grant; then `accept` judges it (client, PKCE, redirect URI, resource). Accepted,
    /// the new tokens are written; refused, the grant is revoked. A spent one presented again
    /// revokes its grant. Only the latest spent refresh token of a grant is kept (enough to
    /// recognise the replay that matters, without a row per refresh forever).
    pub async fn exchange_oauth_token<R: Send>(
        &self,
        presented_hash: &str,
        kind: OAuthTokenKind,
        accept: impl Fn(&OAuthToken, &OAuthGrant) -> std::result::Result<(), R> + Send + Sync,
        access: &NewOAuthToken<'_>,
        refresh: &NewOAuthToken<'_>,
    ) -> Result<Exchange<R>> {
        let now = DbTime::now();
        write_tx!(self, "exchange_oauth_token", |tx| {
            let spent: Option<TokenRow> = sqlx::query_as(&format!(
                "UPDATE oauth_tokens SET used_at = $3
                 WHERE token_hash = $1 AND kind = $2 AND used_at IS NULL AND expires_at > $3
                   AND grant_id IN (SELECT id FROM oauth_grants WHERE revoked_at IS NULL)
                 RETURNING {TOKEN_COLUMNS}"
            ))
            .bind(presented_hash)
            .bind(kind)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(token) = spent.map(OAuthToken::from) else {
                let replayed: Option<i64> = sqlx::query_scalar(
                    "SELECT grant_id FROM oauth_tokens
                     WHERE token_hash = $1 AND kind = $2 AND used_at IS NOT NULL",
                )
                .bind(presented_hash)
                .bind(kind)
                .fetch_optional(&mut *tx)
                .await?;
                return Ok(match replayed {
                    Some(grant_id) => {
                        revoke_in(&mut tx, grant_id, now).await?;
                        Exchange::Replayed { grant_id }
                    }
                    None => Exchange::Invalid,
                });
            };
            let grant: OAuthGrant = sqlx::query_as::<_, GrantRow>(concat!(
                "SELECT ",
                grant_columns!(),
                " FROM oauth_grants WHERE id = $1"
            ))
            .bind(token.grant_id)
            .fetch_one(&mut *tx)
            .await?
            .into();
            if let Err(why) = accept(&token, &grant) {
                revoke_in(&mut tx, grant.id, now).await?;
                return Ok(Exchange::Refused {
                    grant_id: grant.id,
                    why,
                });
            }
            sqlx::query(
                "DELETE FROM oauth_tokens WHERE grant_id = $1 AND kind = $2
                 AND used_at IS NOT NULL AND token_hash <> $3",
            )
            .bind(grant.id)
            .bind(OAuthTokenKind::Refresh)
            .bind(presented_hash)
            .execute(&mut *tx)
            .await?;
            for (new, kind) in [
                (access, OAuthTokenKind::Access),
                (refresh, OAuthTokenKind::Refresh),
            ] {
                sqlx::query(
                    "INSERT INTO oauth_tokens (token_hash, grant_id, kind, expires_at)
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(new.token_hash)
                .bind(grant.id)
                .bind(kind)
                .bind(DbTime::from(new.expires_at))
                .execute(&mut *tx)
                .await?;
            }
            Ok(Exchange::Issued(Box::new(grant)))
        })
    }

    /// A live access token and its grant: unexpired, grant not revoked.
    pub async fn get_oauth_access(&self, token_hash: &str) -> Result<Option<OAuthGrant>> {
        let row: Option<GrantRow> = query!(
            self,
            "get_oauth_access",
            fetch_optional(
                sqlx::query_as(concat!(
                    "SELECT ",
                    grant_columns!(),
                    " FROM oauth_grants WHERE revoked_at IS NULL AND id = (
                       SELECT grant_id FROM oauth_tokens
                       WHERE token_hash = $1 AND kind = $2 AND expires_at > $3)"
                ))
                .bind(token_hash)
                .bind(OAuthTokenKind::Access)
                .bind(DbTime::now())
            )
        )?;
        Ok(row.map(Into::into))
    }

    /// The token with this hash and its grant's client, if any (for revocation, RFC 7009).
    pub async fn find_oauth_token(&self, token_hash: &str) -> Result<Option<(OAuthToken, String)>> {
        #[derive(sqlx::FromRow)]
        struct Row {
            #[sqlx(flatten)]
            token: TokenRow,
            client_id: String,
        }
        let row: Option<Row> = query!(
            self,
            "find_oauth_token",
            fetch_optional(
                sqlx::query_as(
                    "SELECT t.token_hash, t.grant_id, t.kind, t.expires_at, t.code_challenge,
                            t.redirect_uri, g.client_id
                     FROM oauth_tokens t JOIN oauth_grants g ON g.id = t.grant_id
                     WHERE t.token_hash = $1",
                )
                .bind(token_hash)
            )
        )?;
        Ok(row.map(|r| (r.token.into(), r.client_id)))
    }

    /// Deletes one token (an access token revoked on its own).
    pub async fn delete_oauth_token(&self, token_hash: &str) -> Result<()> {
        query!(
            self,
            "delete_oauth_token",
            execute(sqlx::query("DELETE FROM oauth_tokens WHERE token_hash = $1").bind(token_hash))
        )?;
        Ok(())
    }

    /// Deletes codes and tokens that expired before `now`. Spent rows are kept until they
    /// expire, so a replay within their lifetime is still recognised as one.
    pub async fn delete_expired_oauth_tokens(&self, now: OffsetDateTime) -> Result<u64> {
        query!(
            self,
            "delete_expired_oauth_tokens",
            execute(
                sqlx::query("DELETE FROM oauth_tokens WHERE expires_at <= $1")
                    .bind(DbTime::from(now))
            )
        )
    }
}

/// Revokes a grant and deletes its codes and tokens, inside the caller's transaction.
async fn revoke_in<'c, DB>(
    tx: &mut sqlx::Transaction<'c, DB>,
    grant_id: i64,
    now: DbTime,
) -> std::result::Result<(), sqlx::Error>
where
    DB: sqlx::Database,
    for<'e> &'e mut <DB as sqlx::Database>::Connection: sqlx::Executor<'e, Database = DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> DbTime: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
{
    sqlx::query::<DB>(
        "UPDATE oauth_grants SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
    )
    .bind(grant_id)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    sqlx::query::<DB>("DELETE FROM oauth_tokens WHERE grant_id = $1")
        .bind(grant_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
