//! Opening a store: URL parsing, the SQLite header guard, PostgreSQL connection retries, and
//! applying the embedded migrations (refusing schemas newer than this binary).

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::Connection;
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::error::{Result, StoreError};
use crate::{Backend, Store};

static SQLITE_MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";

/// How [`Store::open_with`] connects. [`Default`] suits a gateway; tests shorten the retries.
#[derive(Clone, Debug)]
pub struct OpenOptions {
    /// Pool size; `None` picks 8 for SQLite and 10 for PostgreSQL.
    pub max_connections: Option<u32>,
    /// PostgreSQL: connection attempts before giving up (at least 1).
    pub connect_attempts: u32,
    /// PostgreSQL: pause after the first failed attempt; doubles after each further one.
    pub initial_backoff: Duration,
    /// PostgreSQL: the longest pause between attempts.
    pub max_backoff: Duration,
    /// Time allowed for one connection attempt, and for acquiring a pooled connection.
    pub connect_timeout: Duration,
    /// SQLite: how long a writer waits for the write lock before failing.
    pub busy_timeout: Duration,
}

impl Default for OpenOptions {
    fn default() -> Self {
        Self {
            max_connections: None,
            connect_attempts: 6,
            initial_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(4),
            connect_timeout: Duration::from_secs(10),
            busy_timeout: Duration::from_secs(5),
        }
    }
}

impl Store {
    /// Open (creating or migrating as needed) the database at `url` with default options:
    /// `sqlite://PATH` or `postgres://USER:PASSWORD@HOST:PORT/DB`.
    pub async fn open(url: &str) -> Result<Store> {
        Self::open_with(url, &OpenOptions::default()).await
    }

    /// [`Store::open`] with explicit connection options.
    pub async fn open_with(url: &str, options: &OpenOptions) -> Result<Store> {
        match parse_url(url)? {
            Target::Sqlite(path) => open_sqlite(path, options).await,
            Target::Postgres(connect) => open_postgres(*connect, options).await,
        }
    }
}

enum Target {
    Sqlite(PathBuf),
    Postgres(Box<PgConnectOptions>),
}

fn parse_url(url: &str) -> Result<Target> {
    let invalid = |reason: &str| StoreError::InvalidUrl {
        url: redact_url(url),
        reason: reason.to_owned(),
    };
    if let Some(rest) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        if rest.is_empty() {
            return Err(invalid("no file path"));
        }
        if rest.contains('?') {
            return Err(invalid("query parameters are not supported for SQLite"));
        }
        if rest.starts_with(":memory:") {
            return Err(invalid(
                "in-memory databases are not supported (each pooled connection would see its own)",
            ));
        }
        Ok(Target::Sqlite(PathBuf::from(rest)))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        // sqlx's parse errors describe the URL's defect without echoing it.
        let connect = PgConnectOptions::from_str(url).map_err(|e| invalid(&e.to_string()))?;
        Ok(Target::Postgres(Box::new(connect)))
    } else {
        Err(StoreError::UnsupportedUrl {
            url: redact_url(url),
        })
    }
}

/// `url` with any password (in the authority or a `password=` query parameter) replaced by
/// `***`, fit for logs and error messages.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        // Not an authority-style URL: only `sqlite:PATH` is legitimate, and it has no password.
        return if url.contains('@') {
            "<unparsable URL>".to_owned()
        } else {
            url.to_owned()
        };
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

// ---------------------------------------------------------------------------------------------
// SQLite

async fn open_sqlite(path: PathBuf, options: &OpenOptions) -> Result<Store> {
    check_sqlite_header(&path)?;
    create_private(&path);
    let connect = SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(options.busy_timeout);
    let sqlite_open = |source| StoreError::SqliteOpen {
        path: path.clone(),
        source,
    };

    let pool = SqlitePoolOptions::new()
        .max_connections(options.max_connections.unwrap_or(8))
        .acquire_timeout(options.connect_timeout)
        .connect_with(connect)
        .await
        .map_err(sqlite_open)?;
    if let Err(e) = SQLITE_MIGRATOR.run(&pool).await {
        pool.close().await;
        return Err(map_migrate_error(e, newest_version(&SQLITE_MIGRATOR)));
    }
    Ok(Store {
        backend: Backend::Sqlite(pool),
    })
}

/// Refuse a non-empty file that is not SQLite before SQLite opens it: SQLite would otherwise
/// create `-wal`/`-shm` files beside it and report a less helpful error.
fn check_sqlite_header(path: &Path) -> Result<()> {
    let inspect = |source| StoreError::InspectFile {
        path: path.to_owned(),
        source,
    };
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(inspect(e)),
    };
    let mut header = Vec::with_capacity(SQLITE_HEADER.len());
    (&mut file)
        .take(SQLITE_HEADER.len() as u64)
        .read_to_end(&mut header)
        .map_err(inspect)?;
    if header.is_empty() || header == SQLITE_HEADER {
        Ok(())
    } else {
        Err(StoreError::NotSqlite {
            path: path.to_owned(),
        })
    }
}

/// Create a missing database file readable by its owner only: it holds vault ciphertext and
/// token hashes. SQLite gives its `-wal` and `-shm` files the same permissions.
fn create_private(path: &Path) {
    let mut create = std::fs::OpenOptions::new();
    create.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut create, 0o600);
    // Failures are left to SQLite: the file may already exist (then it keeps its mode), or the
    // directory may be missing, which SQLite reports with the path.
    let _ = create.open(path);
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL

async fn open_postgres(connect: PgConnectOptions, options: &OpenOptions) -> Result<Store> {
    let connect = connect.application_name("gigmcp");
    // Probe with our own bounded retries (the pool's own retry loop would hide the cause
    // behind a timeout), then hand the verified options to the pool.
    let probe = connect_with_retries(&connect, options).await?;
    let _ = probe.close().await;
    let pool = PgPoolOptions::new()
        .max_connections(options.max_connections.unwrap_or(10))
        .acquire_timeout(options.connect_timeout)
        .connect_lazy_with(connect);
    if let Err(e) = POSTGRES_MIGRATOR.run(&pool).await {
        pool.close().await;
        return Err(map_migrate_error(e, newest_version(&POSTGRES_MIGRATOR)));
    }
    Ok(Store {
        backend: Backend::Postgres(pool),
    })
}

async fn connect_with_retries(
    connect: &PgConnectOptions,
    options: &OpenOptions,
) -> Result<PgConnection> {
    let attempts = options.connect_attempts.max(1);
    let mut backoff = options.initial_backoff;
    let mut attempt = 1;
    loop {
        let result = match tokio::time::timeout(
            options.connect_timeout,
            PgConnection::connect_with(connect),
        )
        .await
        {
            Ok(result) => result,
            Err(_elapsed) => Err(sqlx::Error::Io(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "connection attempt timed out after {:?}",
                    options.connect_timeout
                ),
            ))),
        };
        match result {
            Ok(conn) => return Ok(conn),
            Err(source) if attempt < attempts && is_transient(&source) => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(options.max_backoff);
                attempt += 1;
            }
            Err(source) => {
                return Err(StoreError::PostgresConnect {
                    host: connect.get_host().to_owned(),
                    port: connect.get_port(),
                    database: connect.get_database().unwrap_or("(default)").to_owned(),
                    user: connect.get_username().to_owned(),
                    attempts: attempt,
                    source,
                });
            }
        }
    }
}

/// Worth retrying: the server is unreachable, starting up, or out of connection slots. A
/// refused login or a missing database is not going to fix itself.
fn is_transient(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut => true,
        sqlx::Error::Database(e) => matches!(e.code().as_deref(), Some("57P03" | "53300")),
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------------
// Migrations

/// The newest migration version `migrator` embeds.
fn newest_version(migrator: &Migrator) -> i64 {
    migrator.iter().map(|m| m.version).max().unwrap_or(0)
}

fn map_migrate_error(error: MigrateError, newest: i64) -> StoreError {
    match error {
        MigrateError::VersionMissing(found) if found > newest => StoreError::SchemaTooNew {
            found,
            supported: newest,
        },
        MigrateError::VersionMissing(version) => StoreError::UnknownMigration { version },
        MigrateError::VersionMismatch(version) => StoreError::MigrationModified { version },
        MigrateError::Dirty(version) => StoreError::MigrationDirty { version },
        source => StoreError::Migrate { source },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_password_in_authority_and_query() {
        assert_eq!(
            redact_url("postgres://gig:s3cret@db:5432/gig"),
            "postgres://gig:***@db:5432/gig"
        );
        assert_eq!(
            redact_url("postgres://gig:p@ss@db/gig?sslmode=require&password=x"),
            "postgres://gig:***@db/gig?sslmode=require&password=***"
        );
        assert_eq!(redact_url("postgres://db/gig"), "postgres://db/gig");
        assert_eq!(
            redact_url("sqlite:///var/lib/gig.db"),
            "sqlite:///var/lib/gig.db"
        );
        assert_eq!(redact_url("gig:pw@db"), "<unparsable URL>");
    }

    #[test]
    fn parses_sqlite_paths() {
        let Ok(Target::Sqlite(path)) = parse_url("sqlite:///var/lib/gig/store.db") else {
            panic!("absolute path");
        };
        assert_eq!(path, PathBuf::from("/var/lib/gig/store.db"));
        let Ok(Target::Sqlite(path)) = parse_url("sqlite://store.db") else {
            panic!("relative path");
        };
        assert_eq!(path, PathBuf::from("store.db"));
    }

    #[test]
    fn rejects_other_urls_without_leaking_password() {
        for url in [
            "mysql://root:hunter2@db/gig",
            "sqlite://",
            "sqlite::memory:",
            "sqlite://x.db?mode=ro",
            "postgres://gig:hunter2@db:notaport/gig",
        ] {
            let Err(err) = parse_url(url) else {
                panic!("{url} accepted");
            };
            let text = format!("{err} {err:?}");
            assert!(!text.contains("hunter2"), "{text}");
        }
    }

    #[test]
    fn schema_newer_than_binary_is_named() {
        let err = map_migrate_error(MigrateError::VersionMissing(7), 3);
        assert!(matches!(
            err,
            StoreError::SchemaTooNew {
                found: 7,
                supported: 3
            }
        ));
        let err = map_migrate_error(MigrateError::VersionMissing(2), 3);
        assert!(matches!(err, StoreError::UnknownMigration { version: 2 }));
    }
}
