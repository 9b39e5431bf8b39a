//! The vault's key record and rotation: a rotation either rewraps everything or nothing.

use std::sync::Arc;

use gig_store::{RotateError, StoreError};

use crate::fixtures::{global, sealed};
use crate::harness::TestDb;

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
