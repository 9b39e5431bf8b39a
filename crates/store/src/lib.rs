//! Persistence for the Gig'MCP gateway: installed servers, vault ciphertext, users and their
//! sessions, profiles, profile and API tokens, OAuth clients, grants and tokens, tool
//! fingerprints, and the append-only audit log.
//!
//! It owns the schema (versioned migrations embedded from `migrations/sqlite` and
//! `migrations/postgres`, applied at [`Store::open`]) and nothing else: it never sees a plaintext
//! secret or a raw token (the vault hands it ciphertext, the auth layer hands it hashes), never
//! logs, and never puts a database password into an error.
//!
//! # Backends
//! - `sqlite://PATH` — the embedded default for one machine: the file is created if missing,
//!   opened in WAL mode with foreign keys on and a busy timeout. A file that is not SQLite is
//!   refused before SQLite touches it.
//! - `postgres://USER:PASSWORD@HOST:PORT/DB` — PostgreSQL 15 or newer (for
//!   `UNIQUE NULLS NOT DISTINCT`), shared by gateway replicas. Connecting retries with bounded
//!   exponential backoff; migrations take sqlx's advisory lock, so replicas may start together.
//!
//! A database whose schema is newer than this binary (an applied migration beyond the newest
//! embedded one) is refused with [`StoreError::SchemaTooNew`] before anything is written.
//!
//! # Design: one concrete `Store` over a private two-variant enum
//! The set of backends is closed (SQLite and PostgreSQL), so [`Store`] is a cheap-to-clone struct
//! holding `enum Backend { Sqlite(SqlitePool), Postgres(PgPool) }`, and every method is an
//! ordinary `async fn`. Compared with `Box<dyn Store>`: no boxed futures, no `async-trait`, no
//! object-safety workarounds, and callers get `Send` futures they can spawn. The cost of the
//! enum — writing each query for two drivers — is paid once, by two internal macros (in the
//! `backend` module): a method body is written once and compiled against each pool type, so both
//! backends share the same SQL (sqlx accepts `$N` placeholders on SQLite too) and only the few
//! statements that must differ (conflict targets, table locks) pick a dialect. Tests swap the
//! backend, not a mock: SQLite in a temporary directory is real and fast.
//!
//! # Writing a method: `query!` and `write_tx!`
//! A method body is its SQL, its binds and the conversion of the result; the macros own the
//! backend dispatch, the `.await`, the transaction and the classification of driver errors
//! (unique violation → [`StoreError::Conflict`], foreign key → [`StoreError::MissingReference`],
//! unknown stored enum text → [`StoreError::InvalidValue`], anything else →
//! [`StoreError::Query`], each naming the operation):
//!
//! ```text
//! // One statement: `fetch_one`, `fetch_optional`, `fetch_all`, or `execute` (rows affected).
//! let row: Option<UserRow> = query!(self, "get_user", fetch_optional(
//!     sqlx::query_as("SELECT ... FROM users WHERE id = $1").bind(id)
//! ))?;
//!
//! // Several statements in one write transaction: committed if the block returns `Ok`, rolled
//! // back if it returns `Err`; driver errors take a plain `?`, refusals are `Err(e.into())`.
//! write_tx!(self, "delete_server", |tx| {
//!     sqlx::query("DELETE FROM tool_fingerprints WHERE server = $1")
//!         .bind(name).execute(&mut *tx).await?;
//!     let done = sqlx::query("DELETE FROM servers WHERE name = $1")
//!         .bind(name).execute(&mut *tx).await?;
//!     Ok(done.rows_affected() > 0)
//! })
//! ```
//!
//! Columns holding a closed set of values (a server's state, a role, an OAuth token's kind) are
//! enums declared with the internal `stored_enum!` macro: one table of variant ↔ text from which
//! `FromStr`, `Display`, [`StoredEnum`] and sqlx's encoding and decoding follow, so rows hold and
//! statements bind the enum itself, and text no variant spells is an [`UnknownValue`].
//!
//! Queries are runtime-checked (`sqlx::query`/`query_as` with binds), so building needs no
//! database. Timestamps use the `time` crate (`OffsetDateTime`, UTC, microsecond precision —
//! what both databases keep); see the `codec` module for how SQLite stores them.
//!
//! # Concurrency
//! Every multi-statement change runs in one transaction. On SQLite write transactions start
//! with `BEGIN IMMEDIATE`, so they queue on the busy timeout instead of failing on a lock
//! upgrade; on PostgreSQL, key rotation also locks the credentials table against writers.

#![forbid(unsafe_code)]

#[macro_use]
mod backend;
#[macro_use]
mod stored_enum;

mod audit;
mod codec;
mod credentials;
mod error;
mod fingerprints;
mod index_state;
mod locks;
mod model;
mod oauth;
mod open;
mod profiles;
mod servers;
mod sessions;
mod tokens;
mod users;
mod vault;

use std::fmt;

use backend::Backend;

pub use error::{Result, RotateError, StoreError};
pub use index_state::AcceptedIndexState;
pub use locks::StoreLock;
pub use model::{
    ApiToken, AuditEntry, AuditQuery, AuditRecord, BackendKind, CredentialMeta, CredentialRow,
    CredentialScope, FingerprintCheck, LoginSession, NewApiToken, NewProfileToken, NewServer,
    NewSession, NewUser, Profile, ProfileToken, Role, SealedCredential, ServerRecord, ServerState,
    ToolFingerprint, User, VaultMeta,
};
pub use oauth::{
    Exchange, NewOAuthGrant, NewOAuthToken, OAuthClient, OAuthGrant, OAuthToken, OAuthTokenKind,
};
pub use open::{OpenOptions, redact_url};
pub use stored_enum::{StoredEnum, UnknownValue};

/// Handle on the gateway's database. Cheap to clone: clones share one connection pool.
#[derive(Clone)]
pub struct Store {
    backend: Backend,
}

impl Store {
    /// Which database this store talks to.
    pub fn kind(&self) -> BackendKind {
        self.backend.kind()
    }

    /// Close the pool, waiting for connections in use to be returned.
    pub async fn close(&self) {
        on_backend!(self, |pool| pool.close().await)
    }
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store").field("kind", &self.kind()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_spawnable<F: std::future::Future + Send + 'static>(_: F) {}

    /// Compile-time guard: the gateway spawns store calls, so every future must be `Send`.
    /// (`Migrator::run` on a `&mut Connection` is not, which is why migrations run on the pool.)
    #[allow(dead_code)]
    fn store_futures_are_send(store: Store) {
        assert_spawnable(async { Store::open("sqlite://x").await.ok() });
        let s = store.clone();
        assert_spawnable(async move { s.delete_server("x").await.ok() });
        let s = store.clone();
        assert_spawnable(async move {
            s.rotate(|_| Ok::<_, std::io::Error>((String::new(), Vec::new())))
                .await
                .ok()
        });
        let s = store.clone();
        assert_spawnable(async move { s.record_or_compare_fingerprint("a", "b", "c").await.ok() });
        let s = store.clone();
        assert_spawnable(async move {
            let query = AuditQuery {
                actor: Some("a"),
                target_prefix: Some("b"),
                limit: 1,
                ..AuditQuery::default()
            };
            s.list_audit(&query).await.ok()
        });
        let s = store;
        assert_spawnable(async move {
            let detail = serde_json::Value::Null;
            let entry = AuditEntry {
                actor: "a",
                action: "b",
                target: "c",
                result: "d",
                detail: &detail,
            };
            s.append_audit(&entry).await.ok()
        });
    }
}
