//! Profiles and their tokens: names, renames, expiry.

use std::sync::Arc;

use gig_store::{BackendKind, NewProfileToken, StoreError};
use serde_json::json;
use time::{Duration, OffsetDateTime};

use crate::fixtures::{gig_store_normalized, profile_token, user};
use crate::harness::TestDb;

pub async fn profiles_and_tokens(db: Arc<TestDb>) {
    let s = &db.store;
    let dave = s.create_user(&user("dave")).await.unwrap();
    let erin = s.create_user(&user("erin")).await.unwrap();
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
