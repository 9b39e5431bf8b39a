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
//! enum — writing each query for two drivers — is paid once by the internal `on_backend!` macro:
//! a method body is written once and compiled against each pool type, so both backends share the
//! same SQL (sqlx accepts `$N` placeholders on SQLite too) and only the few statements that must
//! differ (conflict targets, table locks) pick a dialect. Tests swap the backend, not a mock:
//! SQLite in a temporary directory is real and fast.
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

macro_rules! on_backend {
    ($store:expr, |$pool:ident| $body:expr) => {
        match &$store.backend {
            $crate::Backend::Sqlite($pool) => $body,
            $crate::Backend::Postgres($pool) => $body,
        }
    };
    ($store:expr, |$pool:ident, $kind:ident| $body:expr) => {
        match &$store.backend {
            $crate::Backend::Sqlite($pool) => {
                let $kind = $crate::BackendKind::Sqlite;
                $body
            }
            $crate::Backend::Postgres($pool) => {
                let $kind = $crate::BackendKind::Postgres;
                $body
            }
        }
    };
}

mod audit;
mod codec;
mod credentials;
mod error;
mod fingerprints;
mod index_state;
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

use sqlx::{PgPool, SqlitePool};

pub use error::{Result, RotateError, StoreError};
pub use index_state::AcceptedIndexState;
pub use model::{
    ApiToken, AuditEntry, AuditQuery, AuditRecord, BackendKind, CredentialMeta, CredentialRow,
    CredentialScope, FingerprintCheck, LoginSession, NewApiToken, NewProfileToken, NewServer,
    NewSession, NewUser, Profile, ProfileToken, SealedCredential, ServerRecord, ServerState,
    ToolFingerprint, User, VaultMeta,
};
pub use oauth::{
    Exchange, NewOAuthGrant, NewOAuthToken, OAuthClient, OAuthGrant, OAuthToken, OAuthTokenKind,
};
pub use open::{OpenOptions, redact_url};

/// Handle on the gateway's database. Cheap to clone: clones share one connection pool.
#[derive(Clone)]
pub struct Store {
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl Store {
    /// Which database this store talks to.
    pub fn kind(&self) -> BackendKind {
        match self.backend {
            Backend::Sqlite(_) => BackendKind::Sqlite,
            Backend::Postgres(_) => BackendKind::Postgres,
        }
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

impl BackendKind {
    /// The statement that opens a write transaction. SQLite's default `BEGIN` is deferred and
    /// fails with SQLITE_BUSY when a reader later needs the write lock; IMMEDIATE waits instead.
    fn begin_write(self) -> &'static str {
        match self {
            Self::Sqlite => "BEGIN IMMEDIATE",
            Self::Postgres => "BEGIN",
        }
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
