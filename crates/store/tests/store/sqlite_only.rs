//! What only SQLite has: a file that is not a database, or is a corrupt one, is refused and
//! left untouched; a new file is private and in WAL mode.

use gig_store::{BackendKind, Store, StoreError};

use crate::fixtures::user;
use crate::harness;

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
    store.create_user(&user("persisted")).await.unwrap();
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
