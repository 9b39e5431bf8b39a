//! Sealed credentials: their round trip and what makes two scopes the same row.

use std::sync::Arc;

use gig_store::{BackendKind, CredentialScope, SealedCredential, StoreError};
use serde_json::json;

use crate::fixtures::{global, sealed, user};
use crate::harness::TestDb;

pub async fn credentials_round_trip(db: Arc<TestDb>) {
    let s = &db.store;
    let user = s.create_user(&user("alice")).await.unwrap();
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
    let user = s.create_user(&user("bob")).await.unwrap();
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
