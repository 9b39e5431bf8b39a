//! Stored enums (server states, roles, OAuth token kinds): every variant survives the trip
//! through each backend, both as a bare parameter and through the columns that hold it, and
//! text the binary does not know is a clear error naming it, never a panic.

use std::sync::Arc;

use gig_store::{
    Exchange, NewApiToken, NewOAuthGrant, NewOAuthToken, NewServer, OAuthGrant, OAuthToken,
    OAuthTokenKind, Role, ServerState, StoreError, StoredEnum, UnknownValue,
};
use serde_json::json;
use time::{Duration, OffsetDateTime};

use crate::fixtures::user;
use crate::harness::{Echo, TestDb};

/// Every variant of `T`, bound and read back through the raw pool.
async fn echo_all<T: StoredEnum + Echo>(db: &TestDb) {
    for &variant in T::ALL {
        let back = db
            .echo(variant)
            .await
            .unwrap_or_else(|e| panic!("{variant:?}: {e}"));
        assert_eq!(back, variant);
        let from_text: T = db
            .decode_text(variant.as_str())
            .await
            .unwrap_or_else(|e| panic!("{variant:?} from its text: {e}"));
        assert_eq!(from_text, variant);
    }
}

/// `text` read as a `T` must fail with an [`UnknownValue`] naming it.
async fn refused<T: StoredEnum + Echo>(db: &TestDb, text: &str) {
    match db.decode_text::<T>(text).await {
        Ok(v) => panic!("{text:?} decoded as {v:?}"),
        Err(sqlx::Error::ColumnDecode { source, .. }) => {
            let unknown = source
                .downcast_ref::<UnknownValue>()
                .unwrap_or_else(|| panic!("not an UnknownValue: {source}"));
            assert_eq!((unknown.what, unknown.value.as_str()), (T::WHAT, text));
            assert_eq!(unknown.expected, T::TEXTS);
        }
        Err(other) => panic!("{text:?}: unexpected error {other:?}"),
    }
}

pub async fn stored_enums_round_trip(db: Arc<TestDb>) {
    echo_all::<ServerState>(&db).await;
    echo_all::<Role>(&db).await;
    echo_all::<OAuthTokenKind>(&db).await;

    let s = &db.store;
    // Through servers.state.
    let manifest = json!({});
    for &state in ServerState::ALL {
        let record = s
            .upsert_server(&NewServer {
                name: "srv",
                image_ref: "ghcr.io/x/srv:1",
                version: "1",
                image_digest: "sha256:00",
                extracted_path: None,
                manifest: &manifest,
                state,
                index_version: 0,
            })
            .await
            .unwrap();
        assert_eq!(record.state, state);
        assert_eq!(s.get_server("srv").await.unwrap().unwrap().state, state);
    }
    for &state in ServerState::ALL {
        s.set_server_state("srv", state).await.unwrap();
        assert_eq!(s.list_servers().await.unwrap()[0].state, state);
    }

    // Through roles.role and api_tokens.role.
    let user = s.create_user(&user("enum-user")).await.unwrap();
    let expires_at = OffsetDateTime::now_utc() + Duration::days(1);
    for &role in Role::ALL {
        s.set_only_role(user.id, role).await.unwrap();
        assert_eq!(s.list_roles(user.id).await.unwrap(), [role]);
        let hash = format!("enum-token-{role}");
        let token = s
            .create_api_token(&NewApiToken {
                token_hash: &hash,
                user_id: user.id,
                name: "enum",
                role,
                expires_at,
            })
            .await
            .unwrap();
        assert_eq!(token.role, role);
        assert_eq!(s.get_api_token(&hash).await.unwrap().unwrap().role, role);
    }

    // Through oauth_tokens.kind: a code, then the access and refresh tokens it is exchanged for.
    let profile = s.create_profile(user.id, "p", &json!({})).await.unwrap();
    s.create_oauth_client("enum-client", None, &json!({}))
        .await
        .unwrap();
    let new_token = |token_hash| NewOAuthToken {
        token_hash,
        expires_at,
    };
    s.create_oauth_grant(
        &NewOAuthGrant {
            user_id: user.id,
            profile_id: profile.id,
            client_id: "enum-client",
            client_name: "enum",
            resource: "http://gw/mcp",
            scope: "mcp",
        },
        &new_token("enum-code"),
        "challenge",
        "http://cb",
    )
    .await
    .unwrap();
    let issued = s
        .exchange_oauth_token(
            "enum-code",
            OAuthTokenKind::Code,
            |_: &OAuthToken, _: &OAuthGrant| Ok::<(), ()>(()),
            &new_token("enum-access"),
            &new_token("enum-refresh"),
        )
        .await
        .unwrap();
    assert!(matches!(issued, Exchange::Issued(_)), "{issued:?}");
    for (hash, kind) in [
        ("enum-code", OAuthTokenKind::Code),
        ("enum-access", OAuthTokenKind::Access),
        ("enum-refresh", OAuthTokenKind::Refresh),
    ] {
        let (token, _) = s.find_oauth_token(hash).await.unwrap().unwrap();
        assert_eq!(token.kind, kind, "{hash}");
    }
}

pub async fn stored_enums_refuse_unknown_text(db: Arc<TestDb>) {
    for text in ["paused", "Installed", "installed ", ""] {
        refused::<ServerState>(&db, text).await;
    }
    for text in ["superuser", "Admin", "user", ""] {
        refused::<Role>(&db, text).await;
    }
    for text in ["id_token", "Code", ""] {
        refused::<OAuthTokenKind>(&db, text).await;
    }

    // A role written behind the store's back (the roles table has no CHECK): the store names
    // the operation, the column and the text, and the caller can match on it.
    let s = &db.store;
    let user = s.create_user(&user("hand-edited")).await.unwrap();
    db.exec(&format!(
        "INSERT INTO roles (user_id, role) VALUES ({}, 'superuser')",
        user.id
    ))
    .await
    .unwrap();
    let err = s.list_roles(user.id).await.unwrap_err();
    match &err {
        StoreError::InvalidValue { op, source, .. } => {
            assert_eq!(*op, "list_roles");
            assert_eq!((source.what, source.value.as_str()), ("role", "superuser"));
        }
        other => panic!("expected InvalidValue, got {other:?}"),
    }
    let shown = err.to_string();
    assert!(
        shown.contains("list_roles") && shown.contains("\"superuser\""),
        "{shown}"
    );
    // Nothing else about the user is affected: removed by hand, the roles read again.
    db.exec(&format!("DELETE FROM roles WHERE user_id = {}", user.id))
        .await
        .unwrap();
    assert!(s.list_roles(user.id).await.unwrap().is_empty());
}
