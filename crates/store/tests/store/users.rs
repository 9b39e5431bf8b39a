//! Users, their roles, sessions and API tokens, and impersonation.

use std::sync::Arc;

use gig_store::{CredentialScope, NewApiToken, NewSession, NewUser, Role, StoreError};
use serde_json::json;
use time::{Duration, OffsetDateTime};

use crate::fixtures::{gig_store_normalized, profile_token, sealed, user};
use crate::harness::TestDb;

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
    let carol = s.create_user(&user("carol")).await.unwrap();
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
