//! What only PostgreSQL has: the two dialects' schemas agree, and connection failures are
//! bounded and never show the password.

use gig_store::{BackendKind, Store, StoreError};

use crate::harness::{self, TestDb};

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

/// Two stores on one database (two replicas): while one holds a lock, the other's attempt for
/// the same key waits, and gets it once the first is dropped; another key is not held up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_held_by_one_replica_holds_up_the_other() {
    let Some(db) = TestDb::create(BackendKind::Postgres, "replica_lock").await else {
        return;
    };
    let other = db
        .reopen()
        .await
        .expect("a second pool on the same database");
    let held = db
        .store
        .lock_across_replicas("refresh:acct:7")
        .await
        .unwrap();
    // Another key is free at once.
    drop(other.lock_across_replicas("refresh:acct:8").await.unwrap());
    let acquired = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let waiter = tokio::spawn({
        let acquired = acquired.clone();
        async move {
            let lock = other.lock_across_replicas("refresh:acct:7").await.unwrap();
            acquired.store(true, std::sync::atomic::Ordering::SeqCst);
            drop(lock);
            other.close().await;
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        !acquired.load(std::sync::atomic::Ordering::SeqCst),
        "the same key was held twice at once"
    );
    drop(held);
    waiter.await.unwrap();
    assert!(acquired.load(std::sync::atomic::Ordering::SeqCst));
    db.cleanup().await;
}
