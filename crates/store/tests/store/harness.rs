//! Opening a freshly migrated store on either backend (a SQLite file in a temporary directory,
//! or a fresh schema in the PostgreSQL database named by `GIG_TEST_DATABASE_URL`), a raw
//! connection beside it for what the store's API must not allow, and running one case with
//! its schema dropped afterwards even when it panics.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use gig_store::{BackendKind, OpenOptions, Store, StoreError};
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::SqlitePoolOptions;
use sqlx::{PgPool, Postgres, Sqlite, SqlitePool};
use tempfile::TempDir;

/// The test environment, read in this one place.
pub struct TestEnv {
    /// `GIG_TEST_DATABASE_URL`: a PostgreSQL database the tests may create schemas in.
    pub postgres_url: Option<String>,
    /// `GIG_REQUIRE_POSTGRES=1`: a missing URL fails the PostgreSQL tests.
    pub require_postgres: bool,
}

pub fn env() -> TestEnv {
    TestEnv {
        postgres_url: std::env::var("GIG_TEST_DATABASE_URL")
            .ok()
            .filter(|url| !url.is_empty()),
        require_postgres: std::env::var("GIG_REQUIRE_POSTGRES").is_ok_and(|v| v == "1"),
    }
}

/// Short retries so failure tests stay quick.
pub fn options() -> OpenOptions {
    OpenOptions {
        max_connections: Some(5),
        connect_attempts: 3,
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(200),
        connect_timeout: Duration::from_secs(5),
        busy_timeout: Duration::from_secs(10),
    }
}

enum Raw {
    Sqlite(SqlitePool),
    Postgres {
        pool: PgPool,
        admin: PgPool,
        schema: String,
    },
}

/// A freshly migrated store plus a raw connection for what the API must not allow.
pub struct TestDb {
    pub store: Store,
    pub url: String,
    raw: Raw,
    _dir: Option<TempDir>,
}

static SCHEMA_SEQ: AtomicU32 = AtomicU32::new(0);

/// A fresh schema in the `GIG_TEST_DATABASE_URL` database: the URL that selects it, and the
/// admin pool that created it (and drops it). `None`: PostgreSQL is not configured and not
/// required.
async fn fresh_postgres_schema(case: &str) -> Option<(String, PgPool, String)> {
    let env = env();
    let Some(base) = env.postgres_url else {
        assert!(
            !env.require_postgres,
            "GIG_REQUIRE_POSTGRES=1 but GIG_TEST_DATABASE_URL is not set"
        );
        eprintln!("skipped: GIG_TEST_DATABASE_URL is not set");
        return None;
    };
    let schema = format!(
        "gig_t_{}_{}_{}",
        &case[..case.len().min(32)],
        std::process::id(),
        SCHEMA_SEQ.fetch_add(1, Ordering::Relaxed)
    );
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect(&base)
        .await
        .expect("connect to GIG_TEST_DATABASE_URL");
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&admin)
        .await
        .expect("create test schema");
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}options=-c%20search_path%3D{schema}");
    Some((url, admin, schema))
}

impl TestDb {
    /// A migrated store on a new SQLite file or PostgreSQL schema, then a raw pool on the same
    /// database. `None`: PostgreSQL is not configured and not required (the test is skipped).
    pub async fn create(kind: BackendKind, case: &str) -> Option<TestDb> {
        let (url, dir, postgres) = match kind {
            BackendKind::Sqlite => {
                let dir = tempfile::tempdir().expect("tempdir");
                let url = format!("sqlite://{}", dir.path().join("store.db").display());
                (url, Some(dir), None)
            }
            BackendKind::Postgres => {
                let (url, admin, schema) = fresh_postgres_schema(case).await?;
                (url, None, Some((admin, schema)))
            }
        };
        let store = Store::open_with(&url, &options())
            .await
            .unwrap_or_else(|e| panic!("open {kind:?} store: {e}"));
        let raw = match postgres {
            None => Raw::Sqlite(
                SqlitePoolOptions::new()
                    .max_connections(1)
                    .connect(&url)
                    .await
                    .expect("raw sqlite"),
            ),
            Some((admin, schema)) => Raw::Postgres {
                pool: PgPoolOptions::new()
                    .max_connections(2)
                    .connect(&url)
                    .await
                    .expect("raw postgres"),
                admin,
                schema,
            },
        };
        Some(TestDb {
            store,
            url,
            raw,
            _dir: dir,
        })
    }

    pub fn kind(&self) -> BackendKind {
        self.store.kind()
    }

    /// A second, independent store (its own pool) on the same database.
    pub async fn reopen(&self) -> Result<Store, StoreError> {
        Store::open_with(&self.url, &options()).await
    }

    /// Run raw SQL, bypassing the store's API.
    pub async fn exec(&self, sql: &str) -> Result<u64, sqlx::Error> {
        match &self.raw {
            Raw::Sqlite(pool) => sqlx::query(sql)
                .execute(pool)
                .await
                .map(|r| r.rows_affected()),
            Raw::Postgres { pool, .. } => sqlx::query(sql)
                .execute(pool)
                .await
                .map(|r| r.rows_affected()),
        }
    }

    /// `value` bound as a parameter and read back (`SELECT $1`), bypassing the store.
    pub async fn echo<T: Echo>(&self, value: T) -> Result<T, sqlx::Error> {
        self.select_param(value).await
    }

    /// The text `text` read as a `T` (`SELECT $1` with text bound), bypassing the store.
    pub async fn decode_text<T: Echo>(&self, text: &str) -> Result<T, sqlx::Error> {
        self.select_param(text).await
    }

    /// `SELECT $1` with `param` bound, its column read as a `T`.
    async fn select_param<'p, P, T>(&self, param: P) -> Result<T, sqlx::Error>
    where
        P: sqlx::Encode<'p, Sqlite>
            + sqlx::Encode<'p, Postgres>
            + sqlx::Type<Sqlite>
            + sqlx::Type<Postgres>
            + Send
            + 'p,
        T: Echo,
    {
        match &self.raw {
            Raw::Sqlite(pool) => {
                sqlx::query_scalar("SELECT $1")
                    .bind(param)
                    .fetch_one(pool)
                    .await
            }
            Raw::Postgres { pool, .. } => {
                sqlx::query_scalar("SELECT $1")
                    .bind(param)
                    .fetch_one(pool)
                    .await
            }
        }
    }

    /// `SELECT count(*) FROM table`.
    pub async fn count(&self, table: &str) -> i64 {
        let sql = format!("SELECT count(*) FROM {table}");
        match &self.raw {
            Raw::Sqlite(pool) => sqlx::query_scalar(&sql).fetch_one(pool).await,
            Raw::Postgres { pool, .. } => sqlx::query_scalar(&sql).fetch_one(pool).await,
        }
        .expect("count")
    }

    /// What the catalog says the schema is (see [`SchemaShape`]).
    pub async fn shape(&self) -> Result<SchemaShape, sqlx::Error> {
        type Columns = Vec<(String, String, bool)>; // (table, column, NOT NULL)
        type Indexes = Vec<(String, String)>; // (table, index)
        let (columns, indexes): (Columns, Indexes) = match &self.raw {
            Raw::Sqlite(pool) => {
                // A STRICT table's key columns are NOT NULL even where the pragma says 0
                // (an INTEGER PRIMARY KEY is the rowid).
                let columns = sqlx::query_as(
                    "SELECT m.name, c.name, c.\"notnull\" <> 0 OR c.pk > 0
                         FROM sqlite_master AS m, pragma_table_info(m.name) AS c
                         WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite\\_%' ESCAPE '\\'
                           AND m.name <> '_sqlx_migrations'",
                )
                .fetch_all(pool)
                .await?;
                // origin 'c': CREATE INDEX. Not the autoindexes behind PRIMARY KEY and
                // UNIQUE constraints (origin 'pk' and 'u').
                let indexes = sqlx::query_as(
                    "SELECT m.name, i.name
                         FROM sqlite_master AS m, pragma_index_list(m.name) AS i
                         WHERE m.type = 'table' AND m.name <> '_sqlx_migrations'
                           AND i.origin = 'c'",
                )
                .fetch_all(pool)
                .await?;
                (columns, indexes)
            }
            Raw::Postgres { pool, .. } => {
                let columns = sqlx::query_as(
                    "SELECT c.table_name::text, c.column_name::text, c.is_nullable = 'NO'
                         FROM information_schema.columns AS c
                         JOIN information_schema.tables AS t
                           ON t.table_schema = c.table_schema AND t.table_name = c.table_name
                         WHERE c.table_schema = current_schema()
                           AND t.table_type = 'BASE TABLE'
                           AND c.table_name <> '_sqlx_migrations'",
                )
                .fetch_all(pool)
                .await?;
                // Every index but those PostgreSQL creates, and names, for PRIMARY KEY
                // and UNIQUE constraints (`T_pkey`, `T_COLS_key`): SQLite's autoindexes.
                // A constraint given its own name (credentials_scope_name) counts: SQLite
                // spells it as CREATE UNIQUE INDEX.
                let indexes = sqlx::query_as(
                    "SELECT i.tablename::text, i.indexname::text
                         FROM pg_indexes AS i
                         WHERE i.schemaname = current_schema()
                           AND i.tablename <> '_sqlx_migrations'
                           AND NOT EXISTS (
                               SELECT 1 FROM pg_constraint AS k
                               JOIN pg_namespace AS n ON n.oid = k.connamespace
                               WHERE n.nspname = i.schemaname AND k.conname = i.indexname
                                 AND k.contype IN ('p', 'u')
                                 AND (k.conname LIKE '%\\_pkey' OR k.conname LIKE '%\\_key'))",
                )
                .fetch_all(pool)
                .await?;
                (columns, indexes)
            }
        };
        let mut shape = SchemaShape::default();
        for (table, column, not_null) in columns {
            shape
                .columns
                .entry(table)
                .or_default()
                .insert(column, not_null);
        }
        for (table, index) in indexes {
            shape.indexes.entry(table).or_default().insert(index);
        }
        Ok(shape)
    }

    pub async fn cleanup(&self) {
        self.store.close().await;
        match &self.raw {
            Raw::Sqlite(pool) => pool.close().await,
            Raw::Postgres {
                pool,
                admin,
                schema,
            } => {
                pool.close().await;
                sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
                    .execute(admin)
                    .await
                    .expect("drop test schema");
                admin.close().await;
            }
        }
    }
}

/// What [`TestDb::echo`] can bind and read back on either backend.
pub trait Echo:
    for<'q> sqlx::Encode<'q, Sqlite>
    + for<'q> sqlx::Encode<'q, Postgres>
    + for<'r> sqlx::Decode<'r, Sqlite>
    + for<'r> sqlx::Decode<'r, Postgres>
    + sqlx::Type<Sqlite>
    + sqlx::Type<Postgres>
    + Send
    + Unpin
    + 'static
{
}

impl<T> Echo for T where
    T: for<'q> sqlx::Encode<'q, Sqlite>
        + for<'q> sqlx::Encode<'q, Postgres>
        + for<'r> sqlx::Decode<'r, Sqlite>
        + for<'r> sqlx::Decode<'r, Postgres>
        + sqlx::Type<Sqlite>
        + sqlx::Type<Postgres>
        + Send
        + Unpin
        + 'static
{
}

/// A schema as both dialects can state it: per table, each column's name and whether it is
/// NOT NULL (types differ by design: INTEGER microseconds vs TIMESTAMPTZ, TEXT vs JSONB), and
/// the names of the indexes created explicitly. `_sqlx_migrations` is left out.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SchemaShape {
    /// table -> column -> NOT NULL.
    pub columns: BTreeMap<String, BTreeMap<String, bool>>,
    /// table -> index names.
    pub indexes: BTreeMap<String, BTreeSet<String>>,
}

/// Every difference between two shapes, one line each (empty: equivalent).
pub fn shape_diff(
    (a_name, a): (&str, &SchemaShape),
    (b_name, b): (&str, &SchemaShape),
) -> Vec<String> {
    let mut diff = Vec::new();
    let tables: BTreeSet<_> = a.columns.keys().chain(b.columns.keys()).collect();
    for table in tables {
        let (Some(ca), Some(cb)) = (a.columns.get(table), b.columns.get(table)) else {
            let only = if a.columns.contains_key(table) {
                a_name
            } else {
                b_name
            };
            diff.push(format!("table {table}: only in {only}"));
            continue;
        };
        let names: BTreeSet<_> = ca.keys().chain(cb.keys()).collect();
        for column in names {
            let null = |n: Option<&bool>| match n {
                None => "missing",
                Some(true) => "NOT NULL",
                Some(false) => "nullable",
            };
            let (na, nb) = (ca.get(column), cb.get(column));
            if na != nb {
                diff.push(format!(
                    "column {table}.{column}: {a_name} {}, {b_name} {}",
                    null(na),
                    null(nb)
                ));
            }
        }
    }
    let empty = BTreeSet::new();
    let tables: BTreeSet<_> = a.indexes.keys().chain(b.indexes.keys()).collect();
    for table in tables {
        let ia = a.indexes.get(table).unwrap_or(&empty);
        let ib = b.indexes.get(table).unwrap_or(&empty);
        for index in ia.difference(ib) {
            diff.push(format!("index {index} on {table}: only in {a_name}"));
        }
        for index in ib.difference(ia) {
            diff.push(format!("index {index} on {table}: only in {b_name}"));
        }
    }
    diff
}

/// Run one case against one backend, dropping its PostgreSQL schema even if it panics.
pub async fn run<F, Fut>(kind: BackendKind, case_name: &str, case: F)
where
    F: FnOnce(Arc<TestDb>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(db) = TestDb::create(kind, case_name).await else {
        return;
    };
    let db = Arc::new(db);
    let outcome = tokio::spawn(case(db.clone())).await;
    db.cleanup().await;
    if let Err(e) = outcome {
        match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => panic!("test task failed: {e}"),
        }
    }
}
