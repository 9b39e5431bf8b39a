//! Installed servers and the accepted registry index.

use std::sync::Arc;

use gig_store::{NewServer, ServerState, StoreError};
use serde_json::json;

use crate::fixtures::{global, sealed};
use crate::harness::TestDb;

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
