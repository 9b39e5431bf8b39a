//! The one error type of the store. Messages name what failed and where (path, host, version)
//! and never carry a database password: URLs are redacted before they reach an error.

use std::path::PathBuf;

use crate::stored_enum::UnknownValue;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The URL is neither `sqlite://PATH` nor `postgres://...` (shown redacted).
    #[error("unsupported database URL {url}: expected sqlite://PATH or postgres://USER@HOST/DB")]
    UnsupportedUrl {
        /// The URL with any password replaced by `***`.
        url: String,
    },

    /// The URL has the right scheme but could not be parsed (shown redacted).
    #[error("invalid database URL {url}: {reason}")]
    InvalidUrl {
        /// The URL with any password replaced by `***`.
        url: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The file exists but does not start with the SQLite header; it was not modified.
    #[error(
        "{path} is not a SQLite database (wrong header, or the file is corrupt); refusing to open it, the file was left untouched"
    )]
    NotSqlite {
        /// The database file.
        path: PathBuf,
    },

    /// The file could not be inspected before opening.
    #[error("cannot read database file {path}")]
    InspectFile {
        /// The database file.
        path: PathBuf,
        /// The I/O failure.
        #[source]
        source: std::io::Error,
    },

    /// SQLite refused the file while opening it (corrupt, locked, unwritable directory, ...).
    #[error("cannot open SQLite database {path}: {source}")]
    SqliteOpen {
        /// The database file.
        path: PathBuf,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },

    /// PostgreSQL could not be reached or refused the login, after the bounded retries.
    #[error(
        "could not connect to PostgreSQL at {host}:{port} (database {database}, user {user}) after {attempts} attempt(s): {source}"
    )]
    PostgresConnect {
        /// Host from the URL.
        host: String,
        /// Port from the URL.
        port: u16,
        /// Database name from the URL.
        database: String,
        /// User name from the URL.
        user: String,
        /// How many attempts were made.
        attempts: u32,
        /// The last attempt's error (never contains the password).
        #[source]
        source: sqlx::Error,
    },

    /// The database was migrated by a newer binary; opening it could corrupt it. Nothing changed.
    #[error(
        "database schema is newer than this binary: it has migration {found} applied, the newest this binary knows is {supported}; upgrade gig-store (nothing was changed)"
    )]
    SchemaTooNew {
        /// The unknown applied migration version.
        found: i64,
        /// The newest migration embedded in this binary.
        supported: i64,
    },

    /// An applied migration is unknown to this binary but older than its newest one.
    #[error(
        "database has migration {version} applied that this binary does not know (nothing was changed)"
    )]
    UnknownMigration {
        /// The unknown applied migration version.
        version: i64,
    },

    /// An applied migration's checksum differs from the embedded one.
    #[error("migration {version} was applied from different SQL than this binary embeds")]
    MigrationModified {
        /// The migration version.
        version: i64,
    },

    /// A previous migration failed midway and left the schema dirty.
    #[error("migration {version} was left partially applied; repair the database by hand")]
    MigrationDirty {
        /// The migration version.
        version: i64,
    },

    /// Applying the embedded migrations failed.
    #[error("applying schema migrations failed: {source}")]
    Migrate {
        /// The migrator's error.
        #[source]
        source: sqlx::migrate::MigrateError,
    },

    /// A row addressed by key does not exist.
    #[error("{what} {key} not found")]
    NotFound {
        /// The kind of row.
        what: &'static str,
        /// Its key.
        key: String,
    },

    /// An install from an older index than the one the record came from (a racing install).
    #[error("server {name}: a newer index's install is already recorded; nothing was written")]
    Outdated { name: String },
    /// A unique constraint refused the write.
    #[error("{op}: a row with the same unique key already exists")]
    Conflict {
        /// The store operation.
        op: &'static str,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },

    /// A foreign key refused the write (the referenced user or profile does not exist).
    #[error("{op}: a referenced row does not exist")]
    MissingReference {
        /// The store operation.
        op: &'static str,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },

    /// A newer signed index (or another document under the same version) is already recorded.
    #[error("index version {version} refused: {reason}")]
    IndexNotNewer {
        /// The version offered.
        version: u64,
        /// Why.
        reason: String,
    },

    /// The vault metadata is not in the state the operation requires.
    #[error("vault rotation: {reason}")]
    RotationState {
        /// What was expected.
        reason: String,
    },

    /// A stored enum column holds text this binary does not know (written by a newer binary, or
    /// by hand).
    #[error("{op}: column {column}: {source}")]
    InvalidValue {
        /// The store operation.
        op: &'static str,
        /// The column, as the driver names it.
        column: String,
        /// The text found and the spellings known.
        #[source]
        source: UnknownValue,
    },

    /// The database could not be reached: the connection was refused or lost, the pool timed
    /// out, or the server is shutting down. Retrying later may succeed. (If the connection was
    /// lost during a commit, whether it committed is unknown; every write here is keyed, so a
    /// retry cannot duplicate it.)
    #[error("{op}: the database is unavailable: {source}")]
    Unavailable {
        /// The store operation.
        op: &'static str,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },

    /// The database's disk is full (SQLITE_FULL, PostgreSQL `disk_full`); nothing was written.
    #[error("{op}: the database's disk is full; nothing was written")]
    Full {
        /// The store operation.
        op: &'static str,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },

    /// Any other database failure, named by the store operation that hit it.
    #[error("{op}: database error: {source}")]
    Query {
        /// The store operation.
        op: &'static str,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
}

/// Failure of [`crate::Store::rotate`]: either the store or the caller's re-wrap closure.
/// In both cases the transaction was rolled back and no credential changed.
#[derive(Debug, thiserror::Error)]
pub enum RotateError<E> {
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The closure failed for credential `id`.
    #[error("re-wrapping credential {id} failed; nothing was changed")]
    Rewrap {
        /// The credential being re-wrapped.
        id: i64,
        /// The closure's error.
        #[source]
        source: E,
    },
}

impl StoreError {
    /// Whether the database was unreachable or full: the caller may retry later, and should
    /// say "unavailable" rather than "failed" (a signed-in user is not signed out by an outage).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable { .. } | Self::Full { .. })
    }
}

/// Classify a driver error from operation `op`: the one place that tells a unique or foreign
/// key violation, an unknown stored enum value, an unreachable database or a full disk from
/// any other failure.
pub(crate) fn db_err(op: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| match source {
        sqlx::Error::Database(e) if e.is_unique_violation() => StoreError::Conflict {
            op,
            source: sqlx::Error::Database(e),
        },
        sqlx::Error::Database(e) if e.is_foreign_key_violation() => StoreError::MissingReference {
            op,
            source: sqlx::Error::Database(e),
        },
        sqlx::Error::ColumnDecode { index, source } => match source.downcast::<UnknownValue>() {
            Ok(unknown) => StoreError::InvalidValue {
                op,
                column: index,
                source: *unknown,
            },
            Err(source) => StoreError::Query {
                op,
                source: sqlx::Error::ColumnDecode { index, source },
            },
        },
        sqlx::Error::Database(e) if is_disk_full(e.as_ref()) => StoreError::Full {
            op,
            source: sqlx::Error::Database(e),
        },
        sqlx::Error::Database(e)
            if e.try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                .is_some()
                && is_connection_lost(e.code().as_deref()) =>
        {
            StoreError::Unavailable {
                op,
                source: sqlx::Error::Database(e),
            }
        }
        source @ (sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed) => StoreError::Unavailable { op, source },
        source => StoreError::Query { op, source },
    }
}

/// How a `write_tx!` block fails: a driver error (classified by the transaction's operation,
/// once, when the block ends) or the method's own refusal, passed through as it is. Driver
/// errors convert with `?`; a refusal with `.into()` from a [`StoreError`].
#[derive(Debug)]
pub(crate) enum TxError<E> {
    Driver(sqlx::Error),
    Refused(E),
}

impl<E: From<StoreError>> TxError<E> {
    /// The method's error for this failure of operation `op`.
    pub(crate) fn into_error(self, op: &'static str) -> E {
        match self {
            TxError::Driver(source) => E::from(db_err(op)(source)),
            TxError::Refused(error) => error,
        }
    }
}

impl<E> From<sqlx::Error> for TxError<E> {
    fn from(source: sqlx::Error) -> Self {
        TxError::Driver(source)
    }
}

impl<E: From<StoreError>> From<StoreError> for TxError<E> {
    fn from(error: StoreError) -> Self {
        TxError::Refused(E::from(error))
    }
}

/// SQLITE_FULL (13; extended codes keep it in the low byte) or PostgreSQL's `disk_full`.
fn is_disk_full(e: &dyn sqlx::error::DatabaseError) -> bool {
    let code = e.code();
    if e.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
        code.and_then(|c| c.parse::<u32>().ok())
            .is_some_and(|c| c & 0xff == 13)
    } else {
        code.as_deref() == Some("53100")
    }
}

/// PostgreSQL's connection-exception class (08xxx) and the shutdown codes a restarting server
/// answers with (57P01 admin_shutdown, 57P02 crash_shutdown, 57P03 cannot_connect_now).
fn is_connection_lost(code: Option<&str>) -> bool {
    code.is_some_and(|c| c.starts_with("08") || matches!(c, "57P01" | "57P02" | "57P03"))
}

/// `NotFound` for the `what` keyed by `key`.
pub(crate) fn not_found(what: &'static str, key: impl ToString) -> StoreError {
    StoreError::NotFound {
        what,
        key: key.to_string(),
    }
}

/// Result alias of the store.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
