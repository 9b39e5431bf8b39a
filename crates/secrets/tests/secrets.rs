//! Credentials at rest, end to end on a real SQLite file: sealing, the wrong-key refusal,
//! row binding, corruption, rotation and its resumption — and that no plaintext reaches the
//! database file or an error.

use std::sync::Arc;

use gig_secrets::{Secrets, SecretsError, rotate};
use gig_store::{CredentialScope, Store};
use gig_vault::MasterKey;

const PLAINTEXT: &str = "sk-live-PLAINTEXT-MARKER-0123456789abcdef";

/// A fixed test key per `seed` (not a constant byte: those are refused as weak).
fn key(seed: u8) -> MasterKey {
    let hex: String = (0u8..32)
        .map(|i| format!("{:02x}", seed.wrapping_mul(31).wrapping_add(i)))
        .collect();
    MasterKey::from_hex(&hex).unwrap()
}

fn scope(server: &str) -> CredentialScope<'_> {
    CredentialScope {
        server,
        user_id: None,
        profile_id: None,
    }
}

struct Db {
    dir: tempfile::TempDir,
}

impl Db {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("gig.db")
    }
    fn url(&self) -> String {
        format!("sqlite://{}", self.path().display())
    }
    async fn store(&self) -> Store {
        Store::open(&self.url()).await.unwrap()
    }
    async fn secrets(&self, master: &MasterKey) -> Result<Secrets, SecretsError> {
        Secrets::open(self.store().await, master).await
    }
    /// Every byte the database keeps on disk, WAL included.
    fn disk_bytes(&self) -> Vec<u8> {
        let mut all = Vec::new();
        for entry in std::fs::read_dir(self.dir.path()).unwrap() {
            all.extend(std::fs::read(entry.unwrap().path()).unwrap());
        }
        all
    }
    async fn raw(&self) -> sqlx::SqlitePool {
        sqlx::SqlitePool::connect(&self.url()).await.unwrap()
    }
    /// A database holding one credential, `s`/`K` = `v`, sealed under `key(1)` (the handle
    /// that wrote it is dropped).
    async fn with_one_credential() -> Self {
        let db = Self::new();
        let secrets = db.secrets(&key(1)).await.unwrap();
        secrets.set(&scope("s"), "K", b"v").await.unwrap();
        db
    }
}

/// The value stored for `server`/`name`, which must be there and open.
async fn opened(secrets: &Secrets, server: &str, name: &str) -> Vec<u8> {
    let value = secrets.get(&scope(server), name).await.unwrap().unwrap();
    value.expose().to_vec()
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn values_round_trip_and_never_reach_the_disk_in_clear() {
    let db = Db::new();
    let secrets = db.secrets(&key(1)).await.unwrap();
    secrets
        .set(&scope("github"), "TOKEN", PLAINTEXT.as_bytes())
        .await
        .unwrap();
    let opened = secrets
        .get(&scope("github"), "TOKEN")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(opened.expose(), PLAINTEXT.as_bytes());
    assert!(!format!("{opened:?}").contains(PLAINTEXT));

    let listed = secrets.list(None).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(!format!("{listed:?}").contains(PLAINTEXT));
    drop(secrets);
    assert!(
        !contains(&db.disk_bytes(), PLAINTEXT),
        "plaintext found in the database files"
    );
}

#[tokio::test]
async fn a_wrong_master_key_is_refused_and_changes_nothing() {
    let db = Db::with_one_credential().await;
    let before = db.store().await.get_vault_meta().await.unwrap();

    let err = db.secrets(&key(2)).await.unwrap_err();
    assert!(matches!(err, SecretsError::WrongMasterKey { .. }), "{err}");
    assert!(err.to_string().contains("refusing to start"));
    let after = db.store().await.get_vault_meta().await.unwrap();
    assert_eq!(
        before.map(|m| (m.key_id, m.check_value)),
        after.map(|m| (m.key_id, m.check_value))
    );
    // The right key still works.
    let secrets = db.secrets(&key(1)).await.unwrap();
    assert_eq!(opened(&secrets, "s", "K").await, b"v");
}

#[tokio::test]
async fn a_ciphertext_moved_to_another_row_fails_to_open() {
    let db = Db::new();
    let secrets = db.secrets(&key(1)).await.unwrap();
    secrets.set(&scope("a"), "K", b"value-a").await.unwrap();
    secrets.set(&scope("b"), "K", b"value-b").await.unwrap();
    let raw = db.raw().await;
    sqlx::query(
        "UPDATE credentials SET ciphertext = (SELECT ciphertext FROM credentials WHERE server = 'a'), \
         wrapped_dek = (SELECT wrapped_dek FROM credentials WHERE server = 'a') WHERE server = 'b'",
    )
    .execute(&raw)
    .await
    .unwrap();
    let err = secrets.get(&scope("b"), "K").await.unwrap_err();
    assert!(matches!(err, SecretsError::Open { .. }), "{err}");
    assert!(!err.to_string().contains("value-a"));
    assert_eq!(opened(&secrets, "a", "K").await, b"value-a");
}

#[tokio::test]
async fn truncated_or_corrupt_ciphertext_is_a_clear_error() {
    let db = Db::new();
    let secrets = db.secrets(&key(1)).await.unwrap();
    secrets
        .set(&scope("a"), "K", PLAINTEXT.as_bytes())
        .await
        .unwrap();
    let raw = db.raw().await;
    for sql in [
        "UPDATE credentials SET ciphertext = substr(ciphertext, 1, 10)",
        "UPDATE credentials SET ciphertext = substr(ciphertext, 1, 50)",
        "UPDATE credentials SET wrapped_dek = substr(wrapped_dek, 1, 71)",
        "UPDATE credentials SET key_id = 'zz'",
    ] {
        let mut tx = raw.begin().await.unwrap();
        sqlx::query(sql).execute(&mut *tx).await.unwrap();
        tx.commit().await.unwrap();
        let err = secrets.get(&scope("a"), "K").await.unwrap_err();
        assert!(matches!(err, SecretsError::Open { .. }), "{sql}: {err}");
        assert!(!err.to_string().contains(PLAINTEXT));
        // Restore a good value for the next case.
        secrets
            .set(&scope("a"), "K", PLAINTEXT.as_bytes())
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn rotation_rewraps_every_credential_and_retires_the_old_key() {
    let db = Db::new();
    let secrets = db.secrets(&key(1)).await.unwrap();
    for i in 0..5 {
        secrets
            .set(
                &scope(&format!("s{i}")),
                "K",
                format!("value-{i}").as_bytes(),
            )
            .await
            .unwrap();
    }
    drop(secrets);
    assert!(matches!(
        rotate(&db.store().await, &key(9), &key(2)).await,
        Err(SecretsError::OldKeyMismatch { .. })
    ));
    assert_eq!(
        rotate(&db.store().await, &key(1), &key(2)).await.unwrap(),
        5
    );

    assert!(matches!(
        db.secrets(&key(1)).await,
        Err(SecretsError::WrongMasterKey { .. })
    ));
    let secrets = db.secrets(&key(2)).await.unwrap();
    for i in 0..5 {
        let value = opened(&secrets, &format!("s{i}"), "K").await;
        assert_eq!(value, format!("value-{i}").as_bytes());
    }
}

#[tokio::test]
async fn an_interrupted_rotation_blocks_start_until_it_is_finished() {
    let db = Db::with_one_credential().await;
    // Simulate a crash right after the target was recorded.
    let new_id = gig_vault::Vault::new(&key(2)).key_id().to_string();
    db.store().await.set_rotation_target(&new_id).await.unwrap();

    let err = db.secrets(&key(1)).await.unwrap_err();
    assert!(
        matches!(err, SecretsError::RotationInProgress { .. }),
        "{err}"
    );
    assert_eq!(
        rotate(&db.store().await, &key(1), &key(2)).await.unwrap(),
        1
    );
    let secrets = db.secrets(&key(2)).await.unwrap();
    assert_eq!(opened(&secrets, "s", "K").await, b"v");
}

#[tokio::test]
async fn replicas_starting_together_with_different_keys_never_both_start() {
    // Both see an empty store, both initialise; the loser must check the row that won, not
    // the one it tried to write. Repeated, so the two really do overlap now and then.
    for round in 0..16 {
        let db = Db::new();
        let (a, b) = (db.store().await, db.store().await);
        let barrier = Arc::new(tokio::sync::Barrier::new(2));
        let start = |store: Store, seed: u8| {
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                Secrets::open(store, &key(seed)).await
            })
        };
        let (first, second) = (start(a, 1), start(b, 2));
        let results = [first.await.unwrap(), second.await.unwrap()];
        let started: Vec<_> = results.iter().filter(|r| r.is_ok()).collect();
        assert_eq!(started.len(), 1, "round {round}: both or neither started");
        let refused = results.iter().find_map(|r| r.as_ref().err()).unwrap();
        assert!(
            matches!(refused, SecretsError::WrongMasterKey { .. }),
            "round {round}: {refused}"
        );
    }
}

#[tokio::test]
async fn a_missing_key_record_with_credentials_present_accepts_no_key() {
    let db = Db::with_one_credential().await;
    let raw = db.raw().await;
    sqlx::query("DELETE FROM vault_meta")
        .execute(&raw)
        .await
        .unwrap();
    for seed in [2, 1] {
        let err = db.secrets(&key(seed)).await.unwrap_err();
        assert!(
            matches!(err, SecretsError::KeyRecordMissing { credentials: 1 }),
            "{err}"
        );
    }
    assert_eq!(
        db.store().await.get_vault_meta().await.unwrap(),
        None,
        "a refused start wrote a key record"
    );
}

#[tokio::test]
async fn a_write_through_a_handle_opened_before_rotation_is_refused() {
    let db = Db::new();
    let stale = db.secrets(&key(1)).await.unwrap();
    stale.set(&scope("s"), "K", b"before").await.unwrap();

    // A rotation under way: the stale handle may not write.
    let target = gig_vault::Vault::new(&key(2)).key_id().to_string();
    db.store().await.set_rotation_target(&target).await.unwrap();
    let err = stale.set(&scope("s"), "K", b"during").await.unwrap_err();
    assert!(
        matches!(err, SecretsError::RotationInProgress { .. }),
        "{err}"
    );
    // Finished: still refused, nothing written under the retired key.
    rotate(&db.store().await, &key(1), &key(2)).await.unwrap();
    let err = stale.set(&scope("s"), "K", b"after").await.unwrap_err();
    assert!(matches!(err, SecretsError::KeyChanged { .. }), "{err}");
    let err = stale.set(&scope("new"), "K", b"after").await.unwrap_err();
    assert!(matches!(err, SecretsError::KeyChanged { .. }), "{err}");

    let current = db.secrets(&key(2)).await.unwrap();
    assert_eq!(opened(&current, "s", "K").await, b"before");
    assert!(current.get(&scope("new"), "K").await.unwrap().is_none());
    // Nothing is stuck: the next rotation goes through.
    drop(current);
    assert_eq!(
        rotate(&db.store().await, &key(2), &key(3)).await.unwrap(),
        1
    );
}

mod key_file {
    use std::os::unix::fs::PermissionsExt;

    use gig_secrets::{KeyFileError, read_master_key_file};
    use gig_vault::Vault;

    const HEX: &str = "5f0e1d2c3b4a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";

    fn write(dir: &std::path::Path, name: &str, text: &str, mode: u32) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn an_owner_only_key_file_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "new.key", &format!("{HEX}\n"), 0o600);
        let key = read_master_key_file(&path).unwrap();
        let expected = gig_vault::MasterKey::from_hex(HEX).unwrap();
        assert_eq!(Vault::new(&key).key_id(), Vault::new(&expected).key_id());
        let path = write(dir.path(), "ro.key", HEX, 0o400);
        assert!(read_master_key_file(&path).is_ok());
    }

    #[test]
    fn a_shared_linked_odd_or_weak_key_file_is_refused_without_echoing_it() {
        let dir = tempfile::tempdir().unwrap();
        let good = write(dir.path(), "good.key", HEX, 0o600);
        let link = dir.path().join("link.key");
        std::os::unix::fs::symlink(&good, &link).unwrap();
        type Expect = fn(&KeyFileError) -> bool;
        let cases: Vec<(std::path::PathBuf, Expect)> = vec![
            (write(dir.path(), "g.key", HEX, 0o640), |e| {
                matches!(e, KeyFileError::Permissions { mode: 0o640, .. })
            }),
            (write(dir.path(), "o.key", HEX, 0o604), |e| {
                matches!(e, KeyFileError::Permissions { .. })
            }),
            (link, |e| matches!(e, KeyFileError::Symlink { .. })),
            (dir.path().to_path_buf(), |e| {
                matches!(
                    e,
                    KeyFileError::NotRegular { .. } | KeyFileError::Permissions { .. }
                )
            }),
            (write(dir.path(), "big.key", &HEX.repeat(100), 0o600), |e| {
                matches!(e, KeyFileError::TooLarge { .. })
            }),
            (
                write(dir.path(), "zero.key", &"00".repeat(32), 0o600),
                |e| matches!(e, KeyFileError::Key { .. }),
            ),
            (write(dir.path(), "short.key", &HEX[..40], 0o600), |e| {
                matches!(e, KeyFileError::Key { .. })
            }),
            (dir.path().join("missing.key"), |e| {
                matches!(e, KeyFileError::Read { .. })
            }),
        ];
        for (path, expected) in cases {
            let err = read_master_key_file(&path).unwrap_err();
            assert!(expected(&err), "{}: {err}", path.display());
            assert!(!format!("{err} {err:?}").contains(&HEX[..16]), "{err}");
        }
    }
}
