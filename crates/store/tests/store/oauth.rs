//! OAuth clients, grants, codes and tokens: spending is once only, a replay revokes the grant,
//! revocation and cascades leave nothing usable behind.

use std::sync::Arc;

use gig_store::{Exchange, NewOAuthGrant, NewOAuthToken, OAuthGrant, OAuthToken, OAuthTokenKind};
use serde_json::json;
use time::{Duration, OffsetDateTime};

use crate::fixtures::user;
use crate::harness::TestDb;

fn token(token_hash: &str, expires_in: Duration) -> NewOAuthToken<'_> {
    NewOAuthToken {
        token_hash,
        expires_at: OffsetDateTime::now_utc() + expires_in,
    }
}

pub async fn oauth_grants_codes_and_tokens(db: Arc<TestDb>) {
    let s = &db.store;
    let ann = s.create_user(&user("ann")).await.unwrap();
    let bob = s.create_user(&user("bob")).await.unwrap();
    let work = s.create_profile(ann.id, "work", &json!({})).await.unwrap();

    // Clients: registered once, counted, forgotten when old and never granted.
    s.create_oauth_client("c-1", None, &json!({"client_name": "one"}))
        .await
        .unwrap();
    s.create_oauth_client("c-unused", Some("hash"), &json!({}))
        .await
        .unwrap();
    assert!(
        s.create_oauth_client("c-1", None, &json!({}))
            .await
            .is_err()
    );
    let c1 = s.get_oauth_client("c-1").await.unwrap().unwrap();
    assert_eq!(
        (c1.secret_hash, c1.metadata),
        (None, json!({"client_name": "one"}))
    );
    assert_eq!(s.count_oauth_clients().await.unwrap(), 2);

    let grant = |client_id| NewOAuthGrant {
        user_id: ann.id,
        profile_id: work.id,
        client_id,
        client_name: "one",
        resource: "http://gw/mcp",
        scope: "mcp",
    };
    let minute = Duration::minutes(1);

    let ok = |_: &OAuthToken, _: &OAuthGrant| Ok::<(), ()>(());
    let exchange = |hash: &'static str, kind, access: &'static str, refresh: &'static str| {
        let s = s.clone();
        async move {
            s.exchange_oauth_token(
                hash,
                kind,
                ok,
                &token(access, minute),
                &token(refresh, minute),
            )
            .await
            .unwrap()
        }
    };
    // A grant to client c-1 whose authorization code is `code`.
    let code_grant = |code: &'static str| {
        let s = s.clone();
        async move {
            s.create_oauth_grant(&grant("c-1"), &token(code, minute), "chal", "http://cb")
                .await
                .unwrap()
        }
    };

    // A code is spent once; a second presentation revokes the grant and all under it.
    let g1 = code_grant("code-1").await;
    let seen = std::sync::Mutex::new(None);
    let first = s
        .exchange_oauth_token(
            "code-1",
            OAuthTokenKind::Code,
            |t: &OAuthToken, _: &OAuthGrant| {
                *seen.lock().unwrap() = Some((t.code_challenge.clone(), t.redirect_uri.clone()));
                Ok::<(), ()>(())
            },
            &token("acc-1", minute),
            &token("ref-1", minute),
        )
        .await
        .unwrap();
    assert_eq!(first, Exchange::Issued(Box::new(g1.clone())));
    assert_eq!(
        seen.lock().unwrap().clone(),
        Some((Some("chal".into()), Some("http://cb".into())))
    );
    assert_eq!(s.get_oauth_access("acc-1").await.unwrap(), Some(g1.clone()));
    assert_eq!(
        exchange("code-1", OAuthTokenKind::Code, "acc-x", "ref-x").await,
        Exchange::Replayed { grant_id: g1.id }
    );
    assert_eq!(s.get_oauth_access("acc-1").await.unwrap(), None);
    assert_eq!(
        s.get_oauth_access("acc-x").await.unwrap(),
        None,
        "nothing issued on a replay"
    );
    assert_eq!(
        exchange("ref-1", OAuthTokenKind::Refresh, "acc-y", "ref-y").await,
        Exchange::Invalid
    );

    // A refused check spends the code and revokes the grant, issuing nothing.
    let g0 = code_grant("code-0").await;
    let refused = s
        .exchange_oauth_token(
            "code-0",
            OAuthTokenKind::Code,
            |_: &OAuthToken, _: &OAuthGrant| Err("wrong verifier"),
            &token("acc-0", minute),
            &token("ref-0", minute),
        )
        .await
        .unwrap();
    assert_eq!(
        refused,
        Exchange::Refused {
            grant_id: g0.id,
            why: "wrong verifier"
        }
    );
    assert_eq!(s.get_oauth_access("acc-0").await.unwrap(), None);
    assert!(
        s.get_oauth_grant(g0.id)
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_some()
    );

    // Refresh rotation: the old refresh token is spent, and its replay revokes the grant.
    let g2 = code_grant("code-2").await;
    assert!(matches!(
        exchange("code-2", OAuthTokenKind::Code, "acc-2", "ref-2").await,
        Exchange::Issued(_)
    ));
    assert_eq!(
        exchange("acc-2", OAuthTokenKind::Refresh, "acc-z", "ref-z").await,
        Exchange::Invalid,
        "an access token is not a refresh token"
    );
    assert!(matches!(
        exchange("ref-2", OAuthTokenKind::Refresh, "acc-3", "ref-3").await,
        Exchange::Issued(_)
    ));
    assert!(s.get_oauth_access("acc-3").await.unwrap().is_some());
    let (found, client) = s.find_oauth_token("ref-3").await.unwrap().unwrap();
    assert_eq!(
        (found.kind, client.as_str()),
        (OAuthTokenKind::Refresh, "c-1")
    );
    assert_eq!(
        exchange("ref-2", OAuthTokenKind::Refresh, "acc-4", "ref-4x").await,
        Exchange::Replayed { grant_id: g2.id }
    );
    assert_eq!(s.get_oauth_access("acc-3").await.unwrap(), None);
    assert_eq!(s.find_oauth_token("ref-3").await.unwrap(), None);

    // Expired codes and tokens are refused, and purged.
    let stale = s
        .create_oauth_grant(
            &grant("c-1"),
            &token("code-3", -minute),
            "chal",
            "http://cb",
        )
        .await
        .unwrap();
    assert_eq!(
        exchange("code-3", OAuthTokenKind::Code, "acc-5", "ref-5").await,
        Exchange::Invalid
    );
    assert_eq!(
        s.delete_expired_oauth_tokens(OffsetDateTime::now_utc())
            .await
            .unwrap(),
        1
    );
    let g3 = s
        .create_oauth_grant(
            &grant("c-1"),
            &token("code-3b", minute),
            "chal",
            "http://cb",
        )
        .await
        .unwrap();
    assert!(matches!(
        exchange("code-3b", OAuthTokenKind::Code, "acc-6", "ref-4").await,
        Exchange::Issued(_)
    ));

    // Only the owner (or an unrestricted caller) revokes; the grant list shows live ones.
    let live_grants = async || {
        let grants = s.list_oauth_grants(ann.id).await.unwrap();
        grants.iter().map(|g| g.id).collect::<Vec<_>>()
    };
    assert_eq!(live_grants().await, [g3.id, stale.id]);
    assert!(!s.revoke_oauth_grant(g3.id, Some(bob.id)).await.unwrap());
    assert!(s.get_oauth_access("ref-4").await.unwrap().is_none());
    assert!(s.find_oauth_token("ref-4").await.unwrap().is_some());
    assert!(s.revoke_oauth_grant(g3.id, Some(ann.id)).await.unwrap());
    assert!(!s.revoke_oauth_grant(g3.id, None).await.unwrap());
    assert_eq!(s.find_oauth_token("ref-4").await.unwrap(), None);
    assert_eq!(live_grants().await, [stale.id]);

    // Deleting the profile deletes its grants and their tokens.
    let g4 = code_grant("code-4").await;
    let home = s.create_profile(ann.id, "home", &json!({})).await.unwrap();
    let kept = NewOAuthGrant {
        profile_id: home.id,
        ..grant("c-1")
    };
    s.create_oauth_grant(&kept, &token("code-5", minute), "chal", "http://cb")
        .await
        .unwrap();
    s.delete_profile(work.id).await.unwrap();
    assert_eq!(s.get_oauth_grant(g4.id).await.unwrap(), None);
    assert_eq!(s.find_oauth_token("code-4").await.unwrap(), None);

    // The granted client is kept; the unused one goes.
    assert_eq!(
        s.delete_unused_oauth_clients(OffsetDateTime::now_utc() + minute)
            .await
            .unwrap(),
        1
    );
    assert!(s.get_oauth_client("c-unused").await.unwrap().is_none());
}
