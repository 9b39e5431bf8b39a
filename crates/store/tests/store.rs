//! One suite, both backends. Every case in `cases` runs twice, as `sqlite::CASE` (a file in a
//! temporary directory, always) and `postgres::CASE` (a fresh schema in the database named by
//! `GIG_TEST_DATABASE_URL`; skipped when unset, but FAILING when `GIG_REQUIRE_POSTGRES=1`).
//! `sqlite_only` and `postgres_only` hold what only one backend has (file corruption,
//! connection retries).

// Tests read their own switches (CI, GIG_REQUIRE_SANDBOX) and hand the environment to children.
#![allow(clippy::disallowed_methods)]

use std::sync::Arc;

use gig_store::{
    AuditEntry, AuditQuery, AuditRecord, BackendKind, CredentialScope, FingerprintCheck,
    NewApiToken, NewProfileToken, NewServer, NewSession, NewUser, Role, RotateError,
    SealedCredential, ServerState, Store, StoreError,
};
use serde_json::json;
use time::{Duration, OffsetDateTime};

use harness::TestDb;

#[path = "store_cases/oauth.rs"]
mod oauth_cases;
#[path = "store_cases/stored_enums.rs"]
mod stored_enum_cases;

mod harness {
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

    impl TestDb {
        /// `None`: PostgreSQL is not configured and not required (the test is skipped).
        pub async fn create(kind: BackendKind, case: &str) -> Option<TestDb> {
            match kind {
                BackendKind::Sqlite => {
                    let dir = tempfile::tempdir().expect("tempdir");
                    let path = dir.path().join("store.db");
                    let url = format!("sqlite://{}", path.display());
                    let store = Store::open_with(&url, &options())
                        .await
                        .expect("open sqlite");
                    let raw = SqlitePoolOptions::new()
                        .max_connections(1)
                        .connect(&url)
                        .await
                        .expect("raw sqlite");
                    Some(TestDb {
                        store,
                        url,
                        raw: Raw::Sqlite(raw),
                        _dir: Some(dir),
                    })
                }
                BackendKind::Postgres => {
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
                    let store = Store::open_with(&url, &options())
                        .await
                        .expect("open postgres");
                    let pool = PgPoolOptions::new()
                        .max_connections(2)
                        .connect(&url)
                        .await
                        .expect("raw postgres");
                    Some(TestDb {
                        store,
                        url,
                        raw: Raw::Postgres {
                            pool,
                            admin,
                            schema,
                        },
                        _dir: None,
                    })
                }
            }
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
        pub async fn echo<T>(&self, value: T) -> Result<T, sqlx::Error>
        where
            T: Echo,
        {
            match &self.raw {
                Raw::Sqlite(pool) => {
                    sqlx::query_scalar("SELECT $1")
                        .bind(value)
                        .fetch_one(pool)
                        .await
                }
                Raw::Postgres { pool, .. } => {
                    sqlx::query_scalar("SELECT $1")
                        .bind(value)
                        .fetch_one(pool)
                        .await
                }
            }
        }

        /// The text `text` read as a `T` (`SELECT $1` with text bound), bypassing the store.
        pub async fn decode_text<T: Echo>(&self, text: &str) -> Result<T, sqlx::Error> {
            match &self.raw {
                Raw::Sqlite(pool) => {
                    sqlx::query_scalar("SELECT $1")
                        .bind(text)
                        .fetch_one(pool)
                        .await
                }
                Raw::Postgres { pool, .. } => {
                    sqlx::query_scalar("SELECT $1")
                        .bind(text)
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
}

/// Generate `sqlite::CASE` and `postgres::CASE` for every case.
macro_rules! both_backends {
    ($($case:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    crate::harness::run(gig_store::BackendKind::Sqlite, stringify!($case), crate::cases::$case).await;
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    crate::harness::run(gig_store::BackendKind::Postgres, stringify!($case), crate::cases::$case).await;
                }
            )+
        }
    };
}

both_backends!(
    servers_round_trip,
    credentials_round_trip,
    credential_scope_nulls_collide,
    vault_meta_rotation_lifecycle,
    rotate_is_all_or_nothing,
    users_roles_sessions,
    profiles_and_tokens,
    profiles_rename_and_list_all,
    profile_tokens_have_names_and_expire,
    api_tokens_lifecycle,
    session_impersonation,
    fingerprints_detect_changes,
    fingerprint_definitions_follow_approval,
    index_state_only_moves_forward,
    audit_is_append_only,
    audit_filters_and_paging,
    newer_schema_is_refused,
    concurrent_writers_lose_nothing,
    oauth_grants_codes_and_tokens,
    stored_enums_round_trip,
    stored_enums_refuse_unknown_text,
);

fn user(subject: &str) -> NewUser<'_> {
    NewUser {
        subject,
        email: None,
        display_name: None,
    }
}

/// An unnamed profile token that never expires (what tokens were before schema 3).
fn profile_token(token_hash: &str, profile_id: i64) -> NewProfileToken<'_> {
    NewProfileToken {
        token_hash,
        profile_id,
        name: "",
        expires_at: None,
    }
}

fn global<'a>(server: &'a str) -> CredentialScope<'a> {
    CredentialScope {
        server,
        user_id: None,
        profile_id: None,
    }
}

fn sealed<'a>(
    scope: CredentialScope<'a>,
    name: &'a str,
    key_id: &'a str,
    bytes: &'a [u8],
) -> SealedCredential<'a> {
    SealedCredential {
        scope,
        name,
        key_id,
        wrapped_dek: bytes,
        ciphertext: bytes,
    }
}

mod cases {
    use super::*;

    pub use crate::oauth_cases::oauth_grants_codes_and_tokens;
    pub use crate::stored_enum_cases::{stored_enums_refuse_unknown_text, stored_enums_round_trip};

    pub async fn servers_round_trip(db: Arc<TestDb>) {
        let s = &db.store;
        let manifest = json!({"tools": ["fetch"], "env": {"API_KEY": {"secret": true}}});
        let installing = s
            .upsert_server(&NewServer {
                name: "fetch",
                image_ref: "registry.example/fetch:1.0",
                version: "1.0.0",
                image_digest: "sha256:aaaa",
                extracted_path: None,
                manifest: &manifest,
                state: ServerState::Installing,
                index_version: 5,
            })
            .await
            .unwrap();
        assert_eq!(
            s.get_server("fetch").await.unwrap().as_ref(),
            Some(&installing)
        );
        assert_eq!(installing.manifest, manifest);

        let installed = s
            .upsert_server(&NewServer {
                name: "fetch",
                image_ref: "registry.example/fetch:1.1",
                version: "1.1.0",
                image_digest: "sha256:bbbb",
                extracted_path: Some("/var/lib/gig/blobs/bbbb"),
                manifest: &json!({}),
                state: ServerState::Installed,
                index_version: 5,
            })
            .await
            .unwrap();
        assert_eq!(
            installed.installed_at, installing.installed_at,
            "upsert keeps installed_at"
        );
        assert!(installed.updated_at >= installing.updated_at);
        assert_eq!(installed.version, "1.1.0");
        assert_eq!(
            installed.extracted_path.as_deref(),
            Some("/var/lib/gig/blobs/bbbb")
        );
        assert_eq!(db.count("servers").await, 1);

        // An install verified against an older index never overwrites one from a newer index
        // (compare-and-set): refused, nothing written.
        let stale = s
            .upsert_server(&NewServer {
                name: "fetch",
                image_ref: "registry.example/fetch:0.9",
                version: "0.9.0",
                image_digest: "sha256:9999",
                extracted_path: None,
                manifest: &json!({}),
                state: ServerState::Installed,
                index_version: 4,
            })
            .await;
        assert!(
            matches!(stale, Err(StoreError::Outdated { ref name }) if name == "fetch"),
            "{stale:?}"
        );
        assert_eq!(
            s.get_server("fetch").await.unwrap().unwrap().version,
            "1.1.0"
        );

        s.upsert_server(&NewServer {
            name: "echo",
            state: ServerState::Failed,
            ..NewServer {
                name: "",
                image_ref: "r",
                version: "v",
                image_digest: "d",
                extracted_path: None,
                manifest: &json!(null),
                state: ServerState::Installing,
                index_version: 0,
            }
        })
        .await
        .unwrap();
        let names: Vec<_> = s
            .list_servers()
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.name)
            .collect();
        assert_eq!(names, ["echo", "fetch"]);

        s.set_server_state("fetch", ServerState::Removing)
            .await
            .unwrap();
        assert_eq!(
            s.get_server("fetch").await.unwrap().unwrap().state,
            ServerState::Removing
        );
        assert!(matches!(
            s.set_server_state("nope", ServerState::Failed).await,
            Err(StoreError::NotFound { what: "server", .. })
        ));

        // Removing a server forgets its fingerprints but keeps its credentials.
        s.record_or_compare_fingerprint("fetch", "get", "h1")
            .await
            .unwrap();
        s.put_credential(&sealed(global("fetch"), "API_KEY", "k1", b"x"))
            .await
            .unwrap();
        assert!(s.delete_server("fetch").await.unwrap());
        assert!(!s.delete_server("fetch").await.unwrap());
        assert_eq!(s.get_server("fetch").await.unwrap(), None);
        assert_eq!(s.get_fingerprint("fetch", "get").await.unwrap(), None);
        assert_eq!(s.list_credentials(Some("fetch")).await.unwrap().len(), 1);

        // The state column refuses values outside the lifecycle.
        assert!(db.exec("UPDATE servers SET state = 'bogus'").await.is_err());
    }

    pub async fn credentials_round_trip(db: Arc<TestDb>) {
        let s = &db.store;
        let user = s
            .create_user(&NewUser {
                subject: "alice",
                email: None,
                display_name: None,
            })
            .await
            .unwrap();
        let profile = s
            .create_profile(user.id, "work", &json!({"allow": ["*"]}))
            .await
            .unwrap();
        let user_scope = CredentialScope {
            server: "github",
            user_id: Some(user.id),
            profile_id: None,
        };
        let profile_scope = CredentialScope {
            profile_id: Some(profile.id),
            ..user_scope
        };

        // Declared before any server named "github" is installed.
        let g = s
            .put_credential(&sealed(global("github"), "TOKEN", "k1", b"global"))
            .await
            .unwrap();
        let u = s
            .put_credential(&sealed(user_scope, "TOKEN", "k1", b"user"))
            .await
            .unwrap();
        let p = s
            .put_credential(&sealed(profile_scope, "TOKEN", "k1", b"profile"))
            .await
            .unwrap();
        let other = s
            .put_credential(&sealed(global("slack"), "TOKEN", "k1", b"slack"))
            .await
            .unwrap();
        assert_eq!(
            [g, u, p, other]
                .iter()
                .collect::<std::collections::HashSet<_>>()
                .len(),
            4
        );

        let row = s
            .get_credential(&user_scope, "TOKEN")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (row.meta.id, row.ciphertext.as_slice()),
            (u, b"user".as_slice())
        );
        assert_eq!(row.meta.user_id, Some(user.id));
        assert_eq!(row.meta.profile_id, None);
        assert_eq!(
            s.get_credential(&profile_scope, "TOKEN")
                .await
                .unwrap()
                .unwrap()
                .ciphertext,
            b"profile"
        );
        assert_eq!(
            s.get_credential(&global("github"), "TOKEN")
                .await
                .unwrap()
                .unwrap()
                .ciphertext,
            b"global"
        );
        assert_eq!(
            s.get_credential(&global("github"), "OTHER").await.unwrap(),
            None
        );
        assert!(
            !format!("{row:?}").contains("user\""),
            "Debug hides sealed bytes"
        );

        // Put replaces the sealed value in place: same id, same created_at.
        let again = s
            .put_credential(&SealedCredential {
                wrapped_dek: b"dek2",
                ciphertext: b"user2",
                ..sealed(user_scope, "TOKEN", "k2", b"")
            })
            .await
            .unwrap();
        assert_eq!(again, u);
        let updated = s
            .get_credential(&user_scope, "TOKEN")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (
                updated.meta.key_id.as_str(),
                updated.wrapped_dek.as_slice(),
                updated.ciphertext.as_slice()
            ),
            ("k2", b"dek2".as_slice(), b"user2".as_slice())
        );
        assert_eq!(updated.meta.created_at, row.meta.created_at);
        assert!(updated.meta.updated_at >= row.meta.updated_at);

        let github = s.list_credentials(Some("github")).await.unwrap();
        assert_eq!(github.len(), 3);
        assert!(
            github
                .iter()
                .all(|m| m.server == "github" && m.name == "TOKEN")
        );
        assert_eq!(s.list_credentials(None).await.unwrap().len(), 4);

        let all = s.list_all_sealed().await.unwrap();
        assert_eq!(all.iter().map(|r| r.meta.id).collect::<Vec<_>>(), {
            let mut ids = vec![g, u, p, other];
            ids.sort();
            ids
        });

        s.update_wrap(g, "k9", b"rewrapped").await.unwrap();
        let rewrapped = s
            .get_credential(&global("github"), "TOKEN")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (
                rewrapped.meta.key_id.as_str(),
                rewrapped.wrapped_dek.as_slice(),
                rewrapped.ciphertext.as_slice()
            ),
            ("k9", b"rewrapped".as_slice(), b"global".as_slice())
        );
        assert!(matches!(
            s.update_wrap(999_999, "k9", b"x").await,
            Err(StoreError::NotFound { .. })
        ));

        assert!(s.delete_credential(other).await.unwrap());
        assert!(!s.delete_credential(other).await.unwrap());
        assert_eq!(s.list_credentials(Some("slack")).await.unwrap(), vec![]);

        // A scope naming a user that does not exist is refused by the foreign key.
        let ghost = CredentialScope {
            server: "github",
            user_id: Some(424_242),
            profile_id: None,
        };
        assert!(matches!(
            s.put_credential(&sealed(ghost, "TOKEN", "k1", b"x")).await,
            Err(StoreError::MissingReference {
                op: "put_credential",
                ..
            })
        ));
    }

    pub async fn credential_scope_nulls_collide(db: Arc<TestDb>) {
        let s = &db.store;
        let user = s
            .create_user(&NewUser {
                subject: "bob",
                email: None,
                display_name: None,
            })
            .await
            .unwrap();
        s.put_credential(&sealed(global("srv"), "KEY", "k1", b"a"))
            .await
            .unwrap();
        s.put_credential(&sealed(global("srv"), "KEY", "k1", b"b"))
            .await
            .unwrap();
        assert_eq!(
            db.count("credentials").await,
            1,
            "put on a NULL scope upserts"
        );

        // The schema itself refuses a second row with the same NULL scope (raw insert,
        // bypassing the upsert).
        let (now, blob) = match db.kind() {
            BackendKind::Sqlite => ("0", "X'00'"),
            BackendKind::Postgres => ("now()", "'\\x00'::bytea"),
        };
        let insert = |user: &str, profile: &str| {
            format!(
                "INSERT INTO credentials (server, user_id, profile_id, name, key_id, wrapped_dek, ciphertext, created_at, updated_at)
                 VALUES ('srv', {user}, {profile}, 'KEY', 'k1', {blob}, {blob}, {now}, {now})"
            )
        };
        let err = db.exec(&insert("NULL", "NULL")).await.unwrap_err();
        assert!(
            err.as_database_error()
                .is_some_and(|e| e.is_unique_violation()),
            "{err}"
        );

        let uid = user.id.to_string();
        db.exec(&insert(&uid, "NULL"))
            .await
            .expect("a user-scoped row is a different key");
        let err = db.exec(&insert(&uid, "NULL")).await.unwrap_err();
        assert!(
            err.as_database_error()
                .is_some_and(|e| e.is_unique_violation()),
            "{err}"
        );
        assert_eq!(db.count("credentials").await, 2);
    }

    pub async fn vault_meta_rotation_lifecycle(db: Arc<TestDb>) {
        let s = &db.store;
        assert_eq!(s.get_vault_meta().await.unwrap(), None);
        assert!(matches!(
            s.set_rotation_target("k2").await,
            Err(StoreError::RotationState { .. })
        ));

        let meta = s.init_vault_meta("k1", b"check-1").await.unwrap();
        assert_eq!(
            (
                meta.key_id.as_str(),
                meta.check_value.as_slice(),
                meta.rotating_to_key_id.as_deref()
            ),
            ("k1", b"check-1".as_slice(), None)
        );
        let again = s.init_vault_meta("other", b"other").await.unwrap();
        assert_eq!(again, meta, "init never overwrites");
        assert_eq!(s.get_vault_meta().await.unwrap(), Some(meta.clone()));
        assert_eq!(db.count("vault_meta").await, 1);

        let id = s
            .put_credential(&sealed(global("srv"), "KEY", "k1", b"v"))
            .await
            .unwrap();
        assert!(matches!(
            s.set_rotation_target("k1").await,
            Err(StoreError::RotationState { .. })
        ));
        let rotating = s.set_rotation_target("k2").await.unwrap();
        assert_eq!(rotating.rotating_to_key_id.as_deref(), Some("k2"));
        assert_eq!(
            s.set_rotation_target("k2")
                .await
                .unwrap()
                .rotating_to_key_id
                .as_deref(),
            Some("k2"),
            "resumable"
        );
        assert!(matches!(
            s.set_rotation_target("k3").await,
            Err(StoreError::RotationState { .. })
        ));
        assert!(matches!(
            s.finish_rotation("k3", b"c").await,
            Err(StoreError::RotationState { .. })
        ));
        let err = s.finish_rotation("k2", b"check-2").await.unwrap_err();
        assert!(err.to_string().contains("not yet wrapped"), "{err}");

        s.update_wrap(id, "k2", b"dek-k2").await.unwrap();
        let done = s.finish_rotation("k2", b"check-2").await.unwrap();
        assert_eq!(
            (
                done.key_id.as_str(),
                done.check_value.as_slice(),
                done.rotating_to_key_id
            ),
            ("k2", b"check-2".as_slice(), None)
        );
        assert_eq!(done.created_at, meta.created_at);

        // The singleton cannot grow a second row.
        assert!(db.exec("INSERT INTO vault_meta (id, key_id, check_value, created_at, updated_at) SELECT 2, key_id, check_value, created_at, updated_at FROM vault_meta").await.is_err());
    }

    pub async fn rotate_is_all_or_nothing(db: Arc<TestDb>) {
        let s = &db.store;
        let names = ["A", "B", "C", "D", "E"];
        for name in names {
            s.put_credential(&sealed(global("srv"), name, "old", name.as_bytes()))
                .await
                .unwrap();
        }
        let before = s.list_all_sealed().await.unwrap();
        let third = before[2].meta.id;

        let calls = std::sync::atomic::AtomicUsize::new(0);
        let err = s
            .rotate(|row| {
                calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if row.meta.id == third {
                    Err("HSM unavailable")
                } else {
                    Ok(("new".to_owned(), b"wrapped-by-new".to_vec()))
                }
            })
            .await
            .unwrap_err();
        assert!(
            matches!(err, RotateError::Rewrap { id, source: "HSM unavailable" } if id == third),
            "{err:?}"
        );
        assert_eq!(calls.into_inner(), 3, "stopped at the failing row");
        assert_eq!(
            s.list_all_sealed().await.unwrap(),
            before,
            "nothing changed"
        );

        let n = s
            .rotate(|row| {
                Ok::<_, std::convert::Infallible>((
                    "new".to_owned(),
                    [b"new:".as_slice(), &row.wrapped_dek].concat(),
                ))
            })
            .await
            .unwrap();
        assert_eq!(n, names.len());
        let after = s.list_all_sealed().await.unwrap();
        for (old, new) in before.iter().zip(&after) {
            assert_eq!(new.meta.key_id.as_str(), "new");
            assert_eq!(
                new.wrapped_dek,
                [b"new:".as_slice(), &old.wrapped_dek].concat()
            );
            assert_eq!(
                new.ciphertext, old.ciphertext,
                "ciphertext is untouched by a re-wrap"
            );
        }
    }

    pub async fn users_roles_sessions(db: Arc<TestDb>) {
        let s = &db.store;
        let admin = s
            .create_user(&NewUser {
                subject: "oidc|admin",
                email: Some("admin@example.com"),
                display_name: Some("Admin"),
            })
            .await
            .unwrap();
        let carol = s
            .create_user(&NewUser {
                subject: "carol",
                email: None,
                display_name: None,
            })
            .await
            .unwrap();
        assert_eq!(s.get_user(admin.id).await.unwrap().as_ref(), Some(&admin));
        assert_eq!(
            s.get_user_by_subject("carol").await.unwrap().as_ref(),
            Some(&carol)
        );
        assert_eq!(admin.email.as_deref(), Some("admin@example.com"));
        // Sign-in refreshes the identity provider's email and name, keeping the row.
        let refreshed = s
            .upsert_user(&NewUser {
                subject: "carol",
                email: Some("carol@example.com"),
                display_name: Some("Carol"),
            })
            .await
            .unwrap();
        assert_eq!(refreshed.id, carol.id);
        assert_eq!(refreshed.email.as_deref(), Some("carol@example.com"));
        let carol = refreshed;
        s.grant_role(carol.id, Role::Viewer).await.unwrap();
        s.grant_role(carol.id, Role::Operator).await.unwrap();
        s.set_only_role(carol.id, Role::Member).await.unwrap();
        assert_eq!(s.list_roles(carol.id).await.unwrap(), [Role::Member]);
        s.set_only_role(carol.id, Role::Member).await.unwrap();
        assert_eq!(s.list_roles(carol.id).await.unwrap(), [Role::Member]);
        assert_eq!(
            s.list_users().await.unwrap(),
            vec![admin.clone(), carol.clone()]
        );
        assert!(matches!(
            s.create_user(&NewUser {
                subject: "carol",
                email: None,
                display_name: None
            })
            .await,
            Err(StoreError::Conflict {
                op: "create_user",
                ..
            })
        ));

        s.grant_role(admin.id, Role::Admin).await.unwrap();
        s.grant_role(admin.id, Role::Admin).await.unwrap();
        s.grant_role(admin.id, Role::Viewer).await.unwrap();
        s.grant_role(admin.id, Role::Operator).await.unwrap();
        // In the order of the stored text, not of authority.
        assert_eq!(
            s.list_roles(admin.id).await.unwrap(),
            [Role::Admin, Role::Operator, Role::Viewer]
        );
        assert!(s.revoke_role(admin.id, Role::Viewer).await.unwrap());
        assert!(!s.revoke_role(admin.id, Role::Viewer).await.unwrap());
        assert!(s.revoke_role(admin.id, Role::Operator).await.unwrap());
        assert!(matches!(
            s.grant_role(777_777, Role::Admin).await,
            Err(StoreError::MissingReference { .. })
        ));

        let expires = OffsetDateTime::now_utc() + Duration::hours(8);
        let session = s
            .create_session(&NewSession {
                id_hash: "h-admin",
                user_id: admin.id,
                impersonating_user_id: Some(carol.id),
                expires_at: expires,
            })
            .await
            .unwrap();
        assert_eq!(
            s.get_session("h-admin").await.unwrap().as_ref(),
            Some(&session)
        );
        assert_eq!(session.impersonating_user_id, Some(carol.id));
        assert_eq!(session.expires_at, gig_store_normalized(expires));
        assert!(matches!(
            s.create_session(&NewSession {
                id_hash: "h-admin",
                user_id: carol.id,
                impersonating_user_id: None,
                expires_at: expires
            })
            .await,
            Err(StoreError::Conflict { .. })
        ));
        let past = OffsetDateTime::now_utc() - Duration::minutes(1);
        s.create_session(&NewSession {
            id_hash: "h-old",
            user_id: carol.id,
            impersonating_user_id: None,
            expires_at: past,
        })
        .await
        .unwrap();
        assert_eq!(
            s.delete_expired_sessions(OffsetDateTime::now_utc())
                .await
                .unwrap(),
            1
        );
        assert_eq!(s.get_session("h-old").await.unwrap(), None);
        assert!(s.revoke_session("h-admin").await.unwrap());
        assert!(!s.revoke_session("h-admin").await.unwrap());

        // Deleting a user takes their roles, sessions (also as impersonation target), profiles,
        // tokens and own credentials with them.
        s.create_session(&NewSession {
            id_hash: "h-imp",
            user_id: admin.id,
            impersonating_user_id: Some(carol.id),
            expires_at: expires,
        })
        .await
        .unwrap();
        s.grant_role(carol.id, Role::Viewer).await.unwrap();
        let profile = s.create_profile(carol.id, "p", &json!({})).await.unwrap();
        s.create_profile_token(&profile_token("t-carol", profile.id))
            .await
            .unwrap();
        s.put_credential(&sealed(
            CredentialScope {
                server: "srv",
                user_id: Some(carol.id),
                profile_id: None,
            },
            "K",
            "k1",
            b"v",
        ))
        .await
        .unwrap();
        assert!(s.delete_user(carol.id).await.unwrap());
        assert!(!s.delete_user(carol.id).await.unwrap());
        assert_eq!(s.get_session("h-imp").await.unwrap(), None);
        assert_eq!(s.list_roles(carol.id).await.unwrap(), Vec::<Role>::new());
        assert_eq!(s.get_profile(profile.id).await.unwrap(), None);
        assert_eq!(s.get_profile_token("t-carol").await.unwrap(), None);
        assert_eq!(db.count("credentials").await, 0);
    }

    pub async fn profiles_and_tokens(db: Arc<TestDb>) {
        let s = &db.store;
        let dave = s
            .create_user(&NewUser {
                subject: "dave",
                email: None,
                display_name: None,
            })
            .await
            .unwrap();
        let erin = s
            .create_user(&NewUser {
                subject: "erin",
                email: None,
                display_name: None,
            })
            .await
            .unwrap();
        let filter = json!({"allow": ["github_*"], "deny": ["github_delete_repo"]});
        let work = s.create_profile(dave.id, "work", &filter).await.unwrap();
        assert_eq!(work.tool_filter, filter);
        assert_eq!(s.get_profile(work.id).await.unwrap().as_ref(), Some(&work));
        assert!(matches!(
            s.create_profile(dave.id, "work", &json!({})).await,
            Err(StoreError::Conflict { .. })
        ));
        s.create_profile(erin.id, "work", &json!({}))
            .await
            .expect("names are per user");
        let home = s.create_profile(dave.id, "home", &json!([])).await.unwrap();
        assert_eq!(
            s.list_profiles(dave.id)
                .await
                .unwrap()
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>(),
            ["home", "work"]
        );
        s.set_profile_tool_filter(home.id, &json!({"allow": []}))
            .await
            .unwrap();
        assert_eq!(
            s.get_profile(home.id).await.unwrap().unwrap().tool_filter,
            json!({"allow": []})
        );
        assert!(matches!(
            s.set_profile_tool_filter(999_999, &json!({})).await,
            Err(StoreError::NotFound { .. })
        ));

        let token = s
            .create_profile_token(&profile_token("sha256:t1", work.id))
            .await
            .unwrap();
        assert!(token.is_active(OffsetDateTime::now_utc()));
        assert_eq!(token.last_used_at, None);
        assert_eq!((token.name.as_str(), token.expires_at), ("", None));
        assert!(matches!(
            s.create_profile_token(&profile_token("sha256:t1", home.id))
                .await,
            Err(StoreError::Conflict { .. })
        ));
        assert!(matches!(
            s.create_profile_token(&profile_token("sha256:t9", 999_999))
                .await,
            Err(StoreError::MissingReference { .. })
        ));
        let used = s
            .touch_profile_token("sha256:t1")
            .await
            .unwrap()
            .expect("active token");
        assert!(used.last_used_at.is_some());
        assert_eq!(
            s.get_profile_token("sha256:t1").await.unwrap(),
            Some(used.clone())
        );
        assert_eq!(s.touch_profile_token("sha256:unknown").await.unwrap(), None);

        assert!(s.revoke_profile_token("sha256:t1").await.unwrap());
        assert!(
            !s.revoke_profile_token("sha256:t1").await.unwrap(),
            "revoking twice is a no-op"
        );
        let revoked = s.get_profile_token("sha256:t1").await.unwrap().unwrap();
        assert!(!revoked.is_active(OffsetDateTime::now_utc()));
        assert_eq!(
            s.touch_profile_token("sha256:t1").await.unwrap(),
            None,
            "a revoked token never authenticates"
        );
        assert_eq!(
            s.get_profile_token("sha256:t1")
                .await
                .unwrap()
                .unwrap()
                .last_used_at,
            used.last_used_at
        );

        s.create_profile_token(&profile_token("sha256:t2", work.id))
            .await
            .unwrap();
        assert_eq!(s.list_profile_tokens(work.id).await.unwrap().len(), 2);
        assert!(s.delete_profile(work.id).await.unwrap());
        assert!(!s.delete_profile(work.id).await.unwrap());
        assert_eq!(s.get_profile_token("sha256:t2").await.unwrap(), None);
    }

    pub async fn profiles_rename_and_list_all(db: Arc<TestDb>) {
        let s = &db.store;
        let ann = s.create_user(&user("ann")).await.unwrap();
        let ben = s.create_user(&user("ben")).await.unwrap();
        let work = s.create_profile(ann.id, "work", &json!({})).await.unwrap();
        let home = s.create_profile(ann.id, "home", &json!({})).await.unwrap();
        let bens = s.create_profile(ben.id, "work", &json!({})).await.unwrap();

        assert!(s.rename_profile(work.id, "office").await.unwrap());
        let renamed = s.get_profile(work.id).await.unwrap().unwrap();
        assert_eq!(renamed.name, "office");
        assert_eq!(renamed.created_at, work.created_at);
        assert!(renamed.updated_at >= work.updated_at);
        assert!(
            s.rename_profile(work.id, "office").await.unwrap(),
            "renaming to its own name is no conflict"
        );
        assert!(matches!(
            s.rename_profile(home.id, "office").await,
            Err(StoreError::Conflict {
                op: "rename_profile",
                ..
            })
        ));
        assert_eq!(s.get_profile(home.id).await.unwrap().unwrap().name, "home");
        assert!(
            s.rename_profile(bens.id, "office").await.unwrap(),
            "names are per user"
        );
        assert!(!s.rename_profile(999_999, "x").await.unwrap());

        let all: Vec<_> = s
            .list_all_profiles()
            .await
            .unwrap()
            .into_iter()
            .map(|p| (p.user_id, p.name))
            .collect();
        assert_eq!(
            all,
            [
                (ann.id, "home".to_owned()),
                (ann.id, "office".to_owned()),
                (ben.id, "office".to_owned())
            ]
        );
    }

    pub async fn profile_tokens_have_names_and_expire(db: Arc<TestDb>) {
        let s = &db.store;
        let owner = s.create_user(&user("owner")).await.unwrap();
        let profile = s.create_profile(owner.id, "p", &json!({})).await.unwrap();
        let now = OffsetDateTime::now_utc();
        let expiry = now + Duration::hours(1);

        let token = s
            .create_profile_token(&NewProfileToken {
                token_hash: "pt-laptop",
                profile_id: profile.id,
                name: "laptop",
                expires_at: Some(expiry),
            })
            .await
            .unwrap();
        assert_eq!(token.name, "laptop");
        assert_eq!(token.expires_at, Some(gig_store_normalized(expiry)));
        assert_eq!(
            s.get_profile_token("pt-laptop").await.unwrap(),
            Some(token.clone())
        );
        assert!(token.is_active(now));
        assert!(
            !token.is_active(gig_store_normalized(expiry)),
            "expires at expires_at"
        );
        assert!(!token.is_active(expiry + Duration::seconds(1)));

        let used = s
            .touch_profile_token("pt-laptop")
            .await
            .unwrap()
            .expect("active before expiry");
        let last_used = used.last_used_at.expect("use recorded");
        assert!(last_used >= token.created_at && last_used < expiry);

        // Expired a moment ago: refused, and the refused touch records nothing.
        s.create_profile_token(&NewProfileToken {
            token_hash: "pt-expired",
            profile_id: profile.id,
            name: "old laptop",
            expires_at: Some(OffsetDateTime::now_utc() - Duration::milliseconds(1)),
        })
        .await
        .unwrap();
        assert_eq!(
            s.touch_profile_token("pt-expired").await.unwrap(),
            None,
            "an expired token never authenticates"
        );
        let expired = s.get_profile_token("pt-expired").await.unwrap().unwrap();
        assert_eq!(expired.last_used_at, None);
        assert!(!expired.is_active(OffsetDateTime::now_utc()));

        // No expiry: active for good, until revoked.
        let forever = s
            .create_profile_token(&NewProfileToken {
                token_hash: "pt-forever",
                profile_id: profile.id,
                name: "ci",
                expires_at: None,
            })
            .await
            .unwrap();
        let far = now + Duration::days(3650);
        assert!(forever.is_active(far));
        assert!(s.touch_profile_token("pt-forever").await.unwrap().is_some());
        // An expired token can still be revoked (and then stays revoked).
        assert!(s.revoke_profile_token("pt-expired").await.unwrap());

        // Rows from before schema 3 read back unnamed and without expiry.
        let created_at = match db.kind() {
            BackendKind::Sqlite => "0",
            BackendKind::Postgres => "now()",
        };
        db.exec(&format!(
            "INSERT INTO profile_tokens (token_hash, profile_id, created_at)
             VALUES ('pt-old', {}, {created_at})",
            profile.id
        ))
        .await
        .unwrap();
        let old = s.get_profile_token("pt-old").await.unwrap().unwrap();
        assert_eq!((old.name.as_str(), old.expires_at), ("", None));

        let mut names: Vec<_> = s
            .list_profile_tokens(profile.id)
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.name)
            .collect();
        names.sort();
        assert_eq!(names, ["", "ci", "laptop", "old laptop"]);
    }

    pub async fn api_tokens_lifecycle(db: Arc<TestDb>) {
        let s = &db.store;
        let frank = s.create_user(&user("frank")).await.unwrap();
        let grace = s.create_user(&user("grace")).await.unwrap();
        let now = OffsetDateTime::now_utc();
        let expiry = now + Duration::days(30);
        let new = |token_hash, user_id, role| NewApiToken {
            token_hash,
            user_id,
            name: "ci",
            role,
            expires_at: expiry,
        };

        let token = s
            .create_api_token(&new("at-1", frank.id, Role::Operator))
            .await
            .unwrap();
        assert_eq!(
            (
                token.token_hash.as_str(),
                token.user_id,
                token.name.as_str(),
                token.role
            ),
            ("at-1", frank.id, "ci", Role::Operator)
        );
        assert_eq!(token.expires_at, gig_store_normalized(expiry));
        assert_eq!((token.last_used_at, token.revoked_at), (None, None));
        assert!(token.is_active(now));
        assert_eq!(s.get_api_token("at-1").await.unwrap(), Some(token.clone()));
        assert_eq!(s.get_api_token("at-none").await.unwrap(), None);

        assert!(matches!(
            s.create_api_token(&new("at-1", grace.id, Role::Viewer))
                .await,
            Err(StoreError::Conflict {
                op: "create_api_token",
                ..
            })
        ));
        assert!(matches!(
            s.create_api_token(&new("at-9", 999_999, Role::Viewer))
                .await,
            Err(StoreError::MissingReference {
                op: "create_api_token",
                ..
            })
        ));
        // The type admits no other role, and neither does the database.
        for role in ["superuser", "user", "Admin", ""] {
            assert!(
                db.exec(&format!(
                    "UPDATE api_tokens SET role = '{role}' WHERE token_hash = 'at-1'"
                ))
                .await
                .is_err(),
                "role {role:?} must be refused"
            );
        }
        for role in [Role::Admin, Role::Member, Role::Viewer] {
            let hash = format!("at-{role}");
            s.create_api_token(&NewApiToken {
                token_hash: &hash,
                ..new("", frank.id, role)
            })
            .await
            .unwrap();
        }
        s.create_api_token(&new("at-grace", grace.id, Role::Admin))
            .await
            .unwrap();
        let mut franks: Vec<_> = s
            .list_api_tokens(frank.id)
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.token_hash)
            .collect();
        franks.sort();
        assert_eq!(franks, ["at-1", "at-admin", "at-member", "at-viewer"]);
        assert_eq!(s.list_api_tokens(grace.id).await.unwrap().len(), 1);
        assert!(s.list_api_tokens(999_999).await.unwrap().is_empty());

        let used = s
            .touch_api_token("at-1", now)
            .await
            .unwrap()
            .expect("active token");
        assert_eq!(used.last_used_at, Some(gig_store_normalized(now)));
        assert_eq!(s.get_api_token("at-1").await.unwrap(), Some(used.clone()));
        assert_eq!(s.touch_api_token("at-none", now).await.unwrap(), None);
        for late in [gig_store_normalized(expiry), expiry + Duration::seconds(1)] {
            assert_eq!(
                s.touch_api_token("at-1", late).await.unwrap(),
                None,
                "an expired token never authenticates"
            );
        }
        assert!(!used.is_active(gig_store_normalized(expiry)));

        assert!(
            !s.revoke_api_token(grace.id, "at-1").await.unwrap(),
            "only the owner revokes"
        );
        assert!(
            s.touch_api_token("at-1", now).await.unwrap().is_some(),
            "still active"
        );
        assert!(s.revoke_api_token(frank.id, "at-1").await.unwrap());
        assert!(!s.revoke_api_token(frank.id, "at-1").await.unwrap());
        assert_eq!(s.touch_api_token("at-1", now).await.unwrap(), None);
        let revoked = s.get_api_token("at-1").await.unwrap().unwrap();
        assert!(revoked.revoked_at.is_some());
        assert!(!revoked.is_active(now));

        // Deleting the owner takes their tokens with them.
        assert!(s.delete_user(frank.id).await.unwrap());
        assert_eq!(s.get_api_token("at-admin").await.unwrap(), None);
        assert_eq!(db.count("api_tokens").await, 1);
    }

    pub async fn session_impersonation(db: Arc<TestDb>) {
        let s = &db.store;
        let admin = s.create_user(&user("admin")).await.unwrap();
        let bob = s.create_user(&user("bob")).await.unwrap();
        s.create_session(&NewSession {
            id_hash: "h-1",
            user_id: admin.id,
            impersonating_user_id: None,
            expires_at: OffsetDateTime::now_utc() + Duration::hours(1),
        })
        .await
        .unwrap();
        let impersonating = |id| async move {
            s.get_session(id)
                .await
                .unwrap()
                .expect("session")
                .impersonating_user_id
        };

        assert!(
            s.set_session_impersonation("h-1", Some(bob.id))
                .await
                .unwrap()
        );
        assert_eq!(impersonating("h-1").await, Some(bob.id));
        assert!(s.set_session_impersonation("h-1", None).await.unwrap());
        assert_eq!(impersonating("h-1").await, None);
        assert!(
            !s.set_session_impersonation("h-none", Some(bob.id))
                .await
                .unwrap()
        );
        assert!(matches!(
            s.set_session_impersonation("h-1", Some(999_999)).await,
            Err(StoreError::MissingReference {
                op: "set_session_impersonation",
                ..
            })
        ));
        assert_eq!(impersonating("h-1").await, None, "unchanged");

        // Deleting the impersonated user ends the session.
        assert!(
            s.set_session_impersonation("h-1", Some(bob.id))
                .await
                .unwrap()
        );
        assert!(s.delete_user(bob.id).await.unwrap());
        assert_eq!(s.get_session("h-1").await.unwrap(), None);
    }

    pub async fn index_state_only_moves_forward(db: Arc<TestDb>) {
        use gig_store::AcceptedIndexState;
        let s = &db.store;
        assert_eq!(s.accepted_index().await.unwrap(), None);
        let v5 = AcceptedIndexState {
            version: 5,
            content_sha256: "aa".into(),
        };
        s.accept_index(&v5).await.unwrap();
        s.accept_index(&v5).await.unwrap(); // the same document again is fine
        for refused in [
            AcceptedIndexState {
                version: 4,
                content_sha256: "bb".into(),
            },
            AcceptedIndexState {
                version: 5,
                content_sha256: "cc".into(),
            },
        ] {
            let err = s.accept_index(&refused).await.unwrap_err();
            assert!(matches!(err, StoreError::IndexNotNewer { .. }), "{err:?}");
            assert_eq!(s.accepted_index().await.unwrap(), Some(v5.clone()));
        }
        let v6 = AcceptedIndexState {
            version: 6,
            content_sha256: "dd".into(),
        };
        s.accept_index(&v6).await.unwrap();
        assert_eq!(s.accepted_index().await.unwrap(), Some(v6));
    }

    pub async fn fingerprint_definitions_follow_approval(db: Arc<TestDb>) {
        let s = &db.store;
        s.record_or_compare_fingerprint("gh", "search", "aaa")
            .await
            .unwrap();
        s.record_fingerprint_definition("gh", "search", "aaa", r#"{"d":"old"}"#)
            .await
            .unwrap();
        assert!(s.list_pending_fingerprints().await.unwrap().is_empty());
        s.record_or_compare_fingerprint("gh", "search", "bbb")
            .await
            .unwrap();
        s.record_fingerprint_definition("gh", "search", "bbb", r#"{"d":"new"}"#)
            .await
            .unwrap();
        // A definition matching neither fingerprint is not kept anywhere.
        s.record_fingerprint_definition("gh", "search", "zzz", r#"{"d":"other"}"#)
            .await
            .unwrap();
        let pending = s.list_pending_fingerprints().await.unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].definition.as_deref(), Some(r#"{"d":"old"}"#));
        assert_eq!(
            pending[0].pending_definition.as_deref(),
            Some(r#"{"d":"new"}"#)
        );
        s.approve_fingerprint("gh", "search", "bbb").await.unwrap();
        let approved = s.get_fingerprint("gh", "search").await.unwrap().unwrap();
        assert_eq!(approved.definition.as_deref(), Some(r#"{"d":"new"}"#));
        assert_eq!(approved.pending_definition, None);
        assert!(s.list_pending_fingerprints().await.unwrap().is_empty());
    }

    pub async fn fingerprints_detect_changes(db: Arc<TestDb>) {
        let s = &db.store;
        assert_eq!(
            s.record_or_compare_fingerprint("gh", "search", "aaa")
                .await
                .unwrap(),
            FingerprintCheck::New
        );
        assert_eq!(
            s.record_or_compare_fingerprint("gh", "search", "aaa")
                .await
                .unwrap(),
            FingerprintCheck::Unchanged
        );
        let first = s.get_fingerprint("gh", "search").await.unwrap().unwrap();
        assert_eq!(
            (
                first.sha256.as_str(),
                first.approved_at,
                first.pending_fingerprint.as_deref()
            ),
            ("aaa", None, None)
        );

        let changed = FingerprintCheck::Changed {
            trusted: "aaa".into(),
            pending: "bbb".into(),
        };
        assert_eq!(
            s.record_or_compare_fingerprint("gh", "search", "bbb")
                .await
                .unwrap(),
            changed
        );
        assert_eq!(
            s.record_or_compare_fingerprint("gh", "search", "bbb")
                .await
                .unwrap(),
            changed,
            "stays changed until approved"
        );
        assert_eq!(
            s.get_fingerprint("gh", "search")
                .await
                .unwrap()
                .unwrap()
                .pending_fingerprint
                .as_deref(),
            Some("bbb")
        );
        assert_eq!(
            s.record_or_compare_fingerprint("gh", "search", "ccc")
                .await
                .unwrap(),
            FingerprintCheck::Changed {
                trusted: "aaa".into(),
                pending: "ccc".into()
            }
        );

        // An approval names exactly the fingerprint that was reviewed.
        assert!(matches!(
            s.approve_fingerprint("gh", "search", "bbb").await,
            Err(StoreError::NotFound { .. })
        ));
        s.approve_fingerprint("gh", "search", "ccc").await.unwrap();
        let approved = s.get_fingerprint("gh", "search").await.unwrap().unwrap();
        assert_eq!(
            (approved.sha256.as_str(), approved.pending_fingerprint),
            ("ccc", None)
        );
        assert!(approved.approved_at.is_some());
        assert_eq!(approved.first_seen, first.first_seen);
        assert_eq!(
            s.record_or_compare_fingerprint("gh", "search", "ccc")
                .await
                .unwrap(),
            FingerprintCheck::Unchanged
        );
        assert!(matches!(
            s.approve_fingerprint("gh", "search", "ccc").await,
            Err(StoreError::NotFound { .. })
        ));

        // A change that reverts before review clears the pending fingerprint.
        s.record_or_compare_fingerprint("gh", "search", "ddd")
            .await
            .unwrap();
        assert_eq!(
            s.record_or_compare_fingerprint("gh", "search", "ccc")
                .await
                .unwrap(),
            FingerprintCheck::Unchanged
        );
        assert_eq!(
            s.get_fingerprint("gh", "search")
                .await
                .unwrap()
                .unwrap()
                .pending_fingerprint,
            None
        );

        s.record_or_compare_fingerprint("gh", "list", "eee")
            .await
            .unwrap();
        s.record_or_compare_fingerprint("other", "list", "eee")
            .await
            .unwrap();
        let tools: Vec<_> = s
            .list_fingerprints("gh")
            .await
            .unwrap()
            .into_iter()
            .map(|f| f.tool)
            .collect();
        assert_eq!(tools, ["list", "search"]);
    }

    pub async fn audit_is_append_only(db: Arc<TestDb>) {
        let s = &db.store;
        let detail = json!({"tool": "github_search", "ms": 12, "args_bytes": 48});
        let a = s
            .append_audit(&AuditEntry {
                actor: "alice",
                action: "tool.call",
                target: "github/search",
                result: "ok",
                detail: &detail,
            })
            .await
            .unwrap();
        let b = s
            .append_audit(&AuditEntry {
                actor: "server:fetch",
                action: "egress.request",
                target: "CONNECT api.github.com:443",
                result: "allowed",
                detail: &json!({"resolved": "192.0.2.10"}),
            })
            .await
            .unwrap();
        let c = s
            .append_audit(&AuditEntry {
                actor: "server:fetch",
                action: "egress.request",
                target: "CONNECT 169.254.169.254:80",
                result: "denied",
                detail: &json!({"reason": "link-local"}),
            })
            .await
            .unwrap();
        assert!(a < b && b < c);
        let recent = s.list_recent_audit(2).await.unwrap();
        assert_eq!(recent.iter().map(|r| r.id).collect::<Vec<_>>(), [c, b]);
        assert_eq!(recent[0].result, "denied");
        let all = s.list_recent_audit(100).await.unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(
            (
                all[2].actor.as_str(),
                all[2].action.as_str(),
                &all[2].detail
            ),
            ("alice", "tool.call", &detail)
        );
        assert!(all[0].at >= all[2].at);

        for sql in [
            "UPDATE audit_log SET result = 'ok'",
            "DELETE FROM audit_log",
            "DELETE FROM audit_log WHERE id = 1",
        ] {
            let err = db.exec(sql).await.expect_err(sql);
            assert!(err.to_string().contains("append-only"), "{sql}: {err}");
        }
        if db.kind() == BackendKind::Postgres {
            let err = db.exec("TRUNCATE audit_log").await.expect_err("truncate");
            assert!(err.to_string().contains("append-only"), "{err}");
        }
        assert_eq!(
            s.list_recent_audit(100).await.unwrap(),
            all,
            "nothing changed"
        );
    }

    pub async fn audit_filters_and_paging(db: Arc<TestDb>) {
        let s = &db.store;
        for (actor, action, target) in [
            ("alice", "tool.call", "github/search"),
            ("bob", "tool.call", "github/issues"),
            ("alice", "egress.request", "CONNECT api.github.com:443"),
            ("alice", "tool.call", "a_b/x"),
            ("alice", "tool.call", "axb/y"),
            ("svc", "Tool.Call", "github/x"),
            ("alice", "tool.list", "a%c"),
            ("alice", "tool.call", "abc"),
            ("alice", "tool.call", "c\\d"),
            ("alicex", "tool.callx", "GitHub/search"),
        ] {
            s.append_audit(&AuditEntry {
                actor,
                action,
                target,
                result: "ok",
                detail: &json!({}),
            })
            .await
            .unwrap();
        }
        let all = s.list_recent_audit(100).await.unwrap();
        assert_eq!(all.len(), 10);
        let everything = AuditQuery {
            limit: 100,
            ..AuditQuery::default()
        };
        assert_eq!(s.list_audit(&everything).await.unwrap(), all);

        // Each query against the same filter applied here, to the full newest-first list.
        let check = async |query: AuditQuery<'_>, keep: &(dyn Fn(&AuditRecord) -> bool + Sync)| {
            let got: Vec<_> = s
                .list_audit(&query)
                .await
                .unwrap()
                .into_iter()
                .map(|r| r.id)
                .collect();
            let want: Vec<_> = all.iter().filter(|r| keep(r)).map(|r| r.id).collect();
            assert_eq!(got, want, "{query:?}");
            got.len()
        };
        let q = |f: fn(&mut AuditQuery<'static>)| {
            let mut query = everything;
            f(&mut query);
            query
        };

        assert_eq!(
            check(q(|q| q.actor = Some("alice")), &|r| r.actor == "alice").await,
            7
        );
        assert_eq!(
            check(q(|q| q.action_prefix = Some("tool.call")), &|r| {
                r.action.starts_with("tool.call")
            })
            .await,
            7,
            "case-sensitive: Tool.Call is not tool.call"
        );
        assert_eq!(
            check(q(|q| q.action_prefix = Some("tool.")), &|r| {
                r.action.starts_with("tool.")
            })
            .await,
            8
        );
        // `_` and `%` in a prefix are literal, not LIKE wildcards.
        assert_eq!(
            check(q(|q| q.target_prefix = Some("a_b")), &|r| r.target
                == "a_b/x")
            .await,
            1,
            "a_b must not match axb"
        );
        assert_eq!(
            check(q(|q| q.target_prefix = Some("a%")), &|r| r.target == "a%c").await,
            1,
            "a% must not match abc"
        );
        assert_eq!(
            check(q(|q| q.target_prefix = Some("c\\")), &|r| r.target
                == "c\\d")
            .await,
            1
        );
        assert_eq!(
            check(q(|q| q.target_prefix = Some("github/")), &|r| {
                r.target.starts_with("github/")
            })
            .await,
            3,
            "case-sensitive: GitHub/ is not github/"
        );
        assert_eq!(
            check(
                q(|q| {
                    q.actor = Some("alice");
                    q.target_prefix = Some("github/");
                    q.action_prefix = Some("tool.");
                }),
                &|r| r.actor == "alice" && r.target.starts_with("github/"),
            )
            .await,
            1
        );
        assert_eq!(
            check(q(|q| q.target_prefix = Some("")), &|_| true).await,
            10
        );
        assert_eq!(check(q(|q| q.actor = Some("nobody")), &|_| false).await, 0);
        assert!(
            s.list_audit(&AuditQuery {
                limit: 0,
                ..everything
            })
            .await
            .unwrap()
            .is_empty()
        );

        // Time window: since is inclusive, until exclusive.
        let (since, until) = (all[7].at, all[2].at);
        let window = AuditQuery {
            since: Some(since),
            until: Some(until),
            ..everything
        };
        let n = check(window, &|r| r.at >= since && r.at < until).await;
        assert!(n >= 1, "at least all[7]");
        check(
            AuditQuery {
                since: Some(since),
                ..everything
            },
            &|r| r.at >= since,
        )
        .await;
        check(
            AuditQuery {
                until: Some(until),
                ..everything
            },
            &|r| r.at < until,
        )
        .await;

        // Cursor paging: pages of 4 of alice's records, each before the last id seen.
        let mut pages = Vec::new();
        let mut cursor = None;
        loop {
            let page = s
                .list_audit(&AuditQuery {
                    actor: Some("alice"),
                    before_id: cursor,
                    limit: 4,
                    ..AuditQuery::default()
                })
                .await
                .unwrap();
            let Some(last) = page.last() else { break };
            cursor = Some(last.id);
            pages.push(page.iter().map(|r| r.id).collect::<Vec<_>>());
        }
        assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [4, 3]);
        let alices: Vec<_> = all
            .iter()
            .filter(|r| r.actor == "alice")
            .map(|r| r.id)
            .collect();
        assert_eq!(pages.concat(), alices);
        let before = all[4].id;
        check(
            AuditQuery {
                before_id: Some(before),
                action_prefix: Some("tool.call"),
                ..everything
            },
            &|r| r.id < before && r.action.starts_with("tool.call"),
        )
        .await;
    }

    pub async fn newer_schema_is_refused(db: Arc<TestDb>) {
        let s = &db.store;
        s.create_user(&NewUser {
            subject: "keep-me",
            email: None,
            display_name: None,
        })
        .await
        .unwrap();
        s.append_audit(&AuditEntry {
            actor: "a",
            action: "b",
            target: "c",
            result: "ok",
            detail: &json!({}),
        })
        .await
        .unwrap();
        let checksum = match db.kind() {
            BackendKind::Sqlite => "X'00'",
            BackendKind::Postgres => "'\\x00'::bytea",
        };
        db.exec(&format!(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
             VALUES (99990101000000, 'from a newer gateway', TRUE, {checksum}, 0)"
        ))
        .await
        .unwrap();
        let migrations = db.count("_sqlx_migrations").await;

        let err = db.reopen().await.expect_err("newer schema must be refused");
        assert!(
            matches!(
                err,
                StoreError::SchemaTooNew {
                    found: 99990101000000,
                    supported: 6
                }
            ),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(
            message.contains("newer than this binary") && message.contains("99990101000000"),
            "{message}"
        );

        assert_eq!(db.count("_sqlx_migrations").await, migrations);
        assert_eq!(db.count("users").await, 1);
        assert_eq!(db.count("audit_log").await, 1);
        assert!(s.get_user_by_subject("keep-me").await.unwrap().is_some());
    }

    pub async fn concurrent_writers_lose_nothing(db: Arc<TestDb>) {
        const TASKS: usize = 50;
        // Two independent pools on one database, like two gateway replicas.
        let stores = [db.store.clone(), db.reopen().await.unwrap()];
        let owner = stores[0]
            .create_user(&NewUser {
                subject: "owner",
                email: None,
                display_name: None,
            })
            .await
            .unwrap();

        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..TASKS {
            let s = stores[i % 2].clone();
            tasks.spawn(async move {
                let name = format!("task-{i}");
                s.append_audit(&AuditEntry {
                    actor: &name,
                    action: "tool.call",
                    target: "t",
                    result: "ok",
                    detail: &json!({"i": i}),
                })
                .await
                .unwrap();
                s.put_credential(&sealed(global("srv"), &name, "k1", name.as_bytes()))
                    .await
                    .unwrap();
                // Everyone writes the same key: the upsert must never produce a second row.
                s.put_credential(&sealed(global("srv"), "SHARED", "k1", name.as_bytes()))
                    .await
                    .unwrap();
                // Concurrent grants of one role neither fail nor duplicate it.
                s.grant_role(owner.id, Role::ALL[i % Role::ALL.len()])
                    .await
                    .unwrap();
                if i % 5 == 0 {
                    // Read-then-write transactions must queue behind the other writers, not
                    // fail on a stale snapshot.
                    s.rotate(|row| {
                        Ok::<_, std::convert::Infallible>((
                            row.meta.key_id.clone(),
                            row.wrapped_dek.clone(),
                        ))
                    })
                    .await
                    .unwrap();
                }
                s.record_or_compare_fingerprint("srv", "tool", "same")
                    .await
                    .unwrap()
            });
        }
        let mut new = 0;
        while let Some(check) = tasks.join_next().await {
            if check.unwrap() == FingerprintCheck::New {
                new += 1;
            }
        }
        assert_eq!(new, 1, "exactly one task saw the tool first");

        let audit = stores[1].list_recent_audit(1000).await.unwrap();
        assert_eq!(audit.len(), TASKS);
        let mut actors: Vec<_> = audit.iter().map(|r| r.actor.clone()).collect();
        actors.sort();
        actors.dedup();
        assert_eq!(actors.len(), TASKS);
        let mut ids: Vec<_> = audit.iter().map(|r| r.id).collect();
        ids.dedup();
        assert_eq!(ids.len(), TASKS, "ids are unique");
        assert_eq!(db.count("credentials").await, TASKS as i64 + 1);
        assert_eq!(
            stores[0].list_roles(owner.id).await.unwrap(),
            [Role::Admin, Role::Member, Role::Operator, Role::Viewer]
        );
        stores[1].close().await;
    }
}

/// What the store does to an instant: UTC, whole microseconds.
fn gig_store_normalized(t: OffsetDateTime) -> OffsetDateTime {
    let t = t.to_offset(time::UtcOffset::UTC);
    t.replace_nanosecond(t.nanosecond() / 1_000 * 1_000)
        .unwrap()
}

mod sqlite_only {
    use super::*;

    fn garbage() -> Vec<u8> {
        (0..8192u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect()
    }

    #[tokio::test]
    async fn garbage_file_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        std::fs::write(&path, garbage()).unwrap();
        let err = Store::open_with(&format!("sqlite://{}", path.display()), &harness::options())
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::NotSqlite { path: p } if *p == path),
            "{err:?}"
        );
        assert!(err.to_string().contains("not a SQLite database"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), garbage(), "file untouched");
        let mut entries: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        entries.sort();
        assert_eq!(entries, ["store.db"], "no -wal/-shm created beside it");
    }

    #[tokio::test]
    async fn corrupt_body_behind_valid_header_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        let mut bytes = b"SQLite format 3\0".to_vec();
        bytes.extend(garbage());
        std::fs::write(&path, &bytes).unwrap();
        let err = Store::open_with(&format!("sqlite://{}", path.display()), &harness::options())
            .await
            .unwrap_err();
        assert!(matches!(&err, StoreError::SqliteOpen { .. }), "{err:?}");
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "file untouched");
        let entries: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(entries, ["store.db"], "no -wal/-shm created beside it");
        assert!(err.to_string().contains("not a database"), "{err}");
    }

    #[tokio::test]
    async fn creates_file_in_wal_mode_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new.db");
        let url = format!("sqlite://{}", path.display());
        let store = Store::open(&url).await.unwrap();
        assert_eq!(store.kind(), BackendKind::Sqlite);
        store
            .create_user(&NewUser {
                subject: "persisted",
                email: None,
                display_name: None,
            })
            .await
            .unwrap();
        store.close().await;

        let raw = sqlx::SqlitePool::connect(&url).await.unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "database file is private");
        }
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&raw)
            .await
            .unwrap();
        assert_eq!(mode, "wal");
        raw.close().await;

        let store = Store::open(&url)
            .await
            .expect("reopening an up-to-date database");
        assert!(
            store
                .get_user_by_subject("persisted")
                .await
                .unwrap()
                .is_some()
        );
        store.close().await;
    }

    #[tokio::test]
    async fn missing_directory_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("no/such/dir/store.db");
        let err = Store::open(&format!("sqlite://{}", path.display()))
            .await
            .unwrap_err();
        assert!(matches!(&err, StoreError::SqliteOpen { .. }), "{err:?}");
        assert!(err.to_string().contains("no/such/dir"), "{err}");
    }
}

mod postgres_only {
    use super::*;

    /// The two dialects' migrations are kept in step by hand; this catches a table, column,
    /// NOT NULL or index that only one of them got.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_and_postgres_schemas_match() {
        let Some(pg) = TestDb::create(BackendKind::Postgres, "schemas_match").await else {
            return;
        };
        let lite = TestDb::create(BackendKind::Sqlite, "schemas_match")
            .await
            .expect("sqlite");
        let (lite_shape, pg_shape) = (lite.shape().await, pg.shape().await);
        lite.cleanup().await;
        pg.cleanup().await;
        let (lite_shape, pg_shape) = (lite_shape.expect("sqlite"), pg_shape.expect("postgres"));

        let diff = harness::shape_diff(("sqlite", &lite_shape), ("postgres", &pg_shape));
        assert!(
            diff.is_empty(),
            "migrations/sqlite and migrations/postgres disagree:\n  {}",
            diff.join("\n  ")
        );
        // The comparison saw the real schema, not two empty catalogs.
        assert!(lite_shape.columns.len() >= 11, "{lite_shape:?}");
        assert_eq!(
            lite_shape.columns["api_tokens"].get("revoked_at"),
            Some(&false)
        );
        assert_eq!(lite_shape.columns["users"].get("id"), Some(&true));
        assert!(lite_shape.indexes["audit_log"].contains("audit_log_actor"));
        assert!(lite_shape.indexes["credentials"].contains("credentials_scope_name"));
        assert!(!lite_shape.columns.contains_key("_sqlx_migrations"));
    }

    /// Needs no server: the port is closed on purpose.
    #[tokio::test]
    async fn unreachable_server_fails_after_bounded_retries_without_password() {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let url = format!("postgres://gig:hunter2-secret@127.0.0.1:{port}/gig");
        let started = std::time::Instant::now();
        let err = Store::open_with(&url, &harness::options())
            .await
            .unwrap_err();
        let elapsed = started.elapsed();
        assert!(
            matches!(&err, StoreError::PostgresConnect { host, port: p, attempts: 3, .. } if host == "127.0.0.1" && *p == port),
            "{err:?}"
        );
        let shown = format!("{err} / {err:?} / {:?}", std::error::Error::source(&err));
        assert!(shown.contains(&format!("127.0.0.1:{port}")), "{shown}");
        assert!(!shown.contains("hunter2"), "password leaked: {shown}");
        // 3 attempts with 50 ms + 100 ms of backoff: well under the per-attempt timeout.
        assert!(
            elapsed >= std::time::Duration::from_millis(150),
            "{elapsed:?}"
        );
        assert!(elapsed < std::time::Duration::from_secs(5), "{elapsed:?}");
    }

    #[tokio::test]
    async fn wrong_password_is_not_retried_and_not_shown() {
        let env = harness::env();
        let Some(url) = env.postgres_url else {
            assert!(
                !env.require_postgres,
                "GIG_REQUIRE_POSTGRES=1 but GIG_TEST_DATABASE_URL is not set"
            );
            eprintln!("skipped: GIG_TEST_DATABASE_URL is not set");
            return;
        };
        let (head, host) = url.rsplit_once('@').expect("URL with credentials");
        let user = head
            .trim_start_matches("postgres://")
            .trim_start_matches("postgresql://");
        let user = user.split(':').next().unwrap();
        let bad = format!("postgres://{user}:wrong-hunter2@{host}");
        let err = Store::open_with(&bad, &harness::options())
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::PostgresConnect { attempts: 1, .. }),
            "{err:?}"
        );
        let shown = format!("{err} / {err:?}");
        assert!(!shown.contains("wrong-hunter2"), "password leaked: {shown}");
    }

    #[tokio::test]
    async fn unsupported_url_is_refused() {
        let err = Store::open("mysql://root:hunter2@db/gig")
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::UnsupportedUrl { .. }));
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
}
