//! The two pools behind a [`crate::Store`] and the three macros every method is written with.
//!
//! - `query!(store, "op", fetch_one(statement))`: one statement on the pool. Runs
//!   `statement.fetch_one(pool).await` on whichever backend the store has (any sqlx fetch
//!   method: `fetch_one`, `fetch_optional`, `fetch_all`; `execute` yields the rows affected as
//!   `u64`) and classifies a driver error as `op`'s ([`crate::error::db_err`]). A write with
//!   `RETURNING` uses `returning_one`/`returning_optional` instead, which step the statement
//!   to its end so a failed commit is an error (SQLite commits it only there).
//! - `write_tx!(store, "op", |tx| { ... })` (or `|tx, kind|` to pick a dialect): a write
//!   transaction. Begins it with [`BackendKind::begin_write`], runs the block with `tx` (use
//!   `&mut *tx` as the executor and plain `?` on driver errors), commits when the block returns
//!   `Ok`, rolls back when it returns `Err`, and classifies every driver error, from `BEGIN` to
//!   `COMMIT`, as `op`'s. The block's own refusals are `Err(StoreError)` (or the method's error
//!   type) turned `.into()` a [`crate::error::TxError`].
//! - `on_backend!(store, |pool| expr)` (or `|pool, kind|`): the building block of the two
//!   above; `expr` is compiled once per pool type. Methods do not use it directly.

use sqlx::{Database, PgPool, SqlitePool, Transaction};

use crate::BackendKind;
use crate::error::{Result, StoreError, TxError, db_err};

macro_rules! on_backend {
    ($store:expr, |$pool:ident| $body:expr) => {
        match &$store.backend {
            $crate::backend::Backend::Sqlite($pool) => $body,
            $crate::backend::Backend::Postgres($pool) => $body,
        }
    };
    ($store:expr, |$pool:ident, $kind:ident| $body:expr) => {
        match &$store.backend {
            $crate::backend::Backend::Sqlite($pool) => {
                let $kind = $crate::BackendKind::Sqlite;
                $body
            }
            $crate::backend::Backend::Postgres($pool) => {
                let $kind = $crate::BackendKind::Postgres;
                $body
            }
        }
    };
}

macro_rules! query {
    // A write with RETURNING outside a transaction is stepped to its end (fetch_all): SQLite
    // commits such a statement only when it finishes, and sqlx's fetch_one/fetch_optional stop
    // at the first row and drop the commit's error. A disk-full commit was acknowledged and lost.
    ($store:expr, $op:literal, returning_one($statement:expr)) => {
        on_backend!($store, |pool| $statement.fetch_all(pool).await)
            .map_err($crate::error::db_err($op))
            .and_then(|rows| $crate::backend::exactly_one($op, rows))
    };
    ($store:expr, $op:literal, returning_optional($statement:expr)) => {
        on_backend!($store, |pool| $statement.fetch_all(pool).await)
            .map_err($crate::error::db_err($op))
            .map(|rows| rows.into_iter().next())
    };
    ($store:expr, $op:literal, execute($statement:expr)) => {
        on_backend!($store, |pool| {
            $statement
                .execute(pool)
                .await
                .map(|done| done.rows_affected())
        })
        .map_err($crate::error::db_err($op))
    };
    ($store:expr, $op:literal, $fetch:ident($statement:expr)) => {
        on_backend!($store, |pool| $statement.$fetch(pool).await)
            .map_err($crate::error::db_err($op))
    };
}

macro_rules! write_tx {
    ($store:expr, $op:literal, |$tx:ident| $body:block) => {
        write_tx!($store, $op, |$tx, _kind| $body)
    };
    ($store:expr, $op:literal, |$tx:ident, $kind:ident| $body:block) => {
        on_backend!($store, |pool, $kind| {
            match pool.begin_with($kind.begin_write()).await {
                Err(source) => Err($crate::error::TxError::Driver(source).into_error($op)),
                Ok(mut $tx) => {
                    let outcome: ::std::result::Result<_, $crate::error::TxError<_>> =
                        async { $body }.await;
                    $crate::backend::finish($op, $tx, outcome).await
                }
            }
        })
    };
}

/// The pool of one backend. The set is closed, so this is an enum and not a trait object: see
/// the crate documentation.
#[derive(Clone)]
pub(crate) enum Backend {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl Backend {
    pub(crate) fn kind(&self) -> BackendKind {
        match self {
            Backend::Sqlite(_) => BackendKind::Sqlite,
            Backend::Postgres(_) => BackendKind::Postgres,
        }
    }
}

impl BackendKind {
    /// The statement that opens a write transaction. SQLite's default `BEGIN` is deferred and
    /// fails with SQLITE_BUSY when a reader later needs the write lock; IMMEDIATE waits instead.
    pub(crate) fn begin_write(self) -> &'static str {
        match self {
            Self::Sqlite => "BEGIN IMMEDIATE",
            Self::Postgres => "BEGIN",
        }
    }
}

/// The one row a `returning_one` write gave, or the error `fetch_one` gives for none.
pub(crate) fn exactly_one<T>(op: &'static str, rows: Vec<T>) -> Result<T> {
    rows.into_iter()
        .next()
        .ok_or_else(|| db_err(op)(sqlx::Error::RowNotFound))
}

/// The end of a `write_tx!`: commit on `Ok`, roll back on `Err`, each error classified as `op`'s.
pub(crate) async fn finish<DB: Database, T, E: From<StoreError>>(
    op: &'static str,
    tx: Transaction<'_, DB>,
    outcome: Result<T, TxError<E>>,
) -> Result<T, E> {
    match outcome {
        Ok(value) => {
            tx.commit().await.map_err(|e| E::from(db_err(op)(e)))?;
            Ok(value)
        }
        Err(error) => {
            // The error that ended the block is the one to report. Should ROLLBACK fail too,
            // the pool's check on release closes the connection, which ends the transaction.
            let _ = tx.rollback().await;
            Err(error.into_error(op))
        }
    }
}
