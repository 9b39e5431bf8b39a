//! Tool-definition fingerprints: changes are detected and approvals move definitions on.

use std::sync::Arc;

use gig_store::{FingerprintCheck, StoreError};

use crate::harness::TestDb;

pub async fn fingerprints_detect_changes(db: Arc<TestDb>) {
    let s = &db.store;
    // What a start that sees `gh`'s tool `search` with fingerprint `sha` records.
    let search = async |sha: &str| {
        s.record_or_compare_fingerprint("gh", "search", sha)
            .await
            .unwrap()
    };
    assert_eq!(search("aaa").await, FingerprintCheck::New);
    assert_eq!(search("aaa").await, FingerprintCheck::Unchanged);
    let first = s.get_fingerprint("gh", "search").await.unwrap().unwrap();
    assert_eq!(
        (
            first.sha256.as_str(),
            first.approved_at,
            first.pending_fingerprint.as_deref()
        ),
        ("aaa", None, None)
    );

    let changed = FingerprintCheck::Changed {
        trusted: "aaa".into(),
        pending: "bbb".into(),
    };
    assert_eq!(search("bbb").await, changed);
    assert_eq!(search("bbb").await, changed, "stays changed until approved");
    assert_eq!(
        s.get_fingerprint("gh", "search")
            .await
            .unwrap()
            .unwrap()
            .pending_fingerprint
            .as_deref(),
        Some("bbb")
    );
    assert_eq!(
        search("ccc").await,
        FingerprintCheck::Changed {
            trusted: "aaa".into(),
            pending: "ccc".into()
        }
    );

    // An approval names exactly the fingerprint that was reviewed.
    assert!(matches!(
        s.approve_fingerprint("gh", "search", "bbb").await,
        Err(StoreError::NotFound { .. })
    ));
    s.approve_fingerprint("gh", "search", "ccc").await.unwrap();
    let approved = s.get_fingerprint("gh", "search").await.unwrap().unwrap();
    assert_eq!(
        (approved.sha256.as_str(), approved.pending_fingerprint),
        ("ccc", None)
    );
    assert!(approved.approved_at.is_some());
    assert_eq!(approved.first_seen, first.first_seen);
    assert_eq!(search("ccc").await, FingerprintCheck::Unchanged);
    assert!(matches!(
        s.approve_fingerprint("gh", "search", "ccc").await,
        Err(StoreError::NotFound { .. })
    ));

    // A change that reverts before review clears the pending fingerprint.
    search("ddd").await;
    assert_eq!(search("ccc").await, FingerprintCheck::Unchanged);
    assert_eq!(
        s.get_fingerprint("gh", "search")
            .await
            .unwrap()
            .unwrap()
            .pending_fingerprint,
        None
    );

    s.record_or_compare_fingerprint("gh", "list", "eee")
        .await
        .unwrap();
    s.record_or_compare_fingerprint("other", "list", "eee")
        .await
        .unwrap();
    let tools: Vec<_> = s
        .list_fingerprints("gh")
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.tool)
        .collect();
    assert_eq!(tools, ["list", "search"]);
}

pub async fn fingerprint_definitions_follow_approval(db: Arc<TestDb>) {
    let s = &db.store;
    s.record_or_compare_fingerprint("gh", "search", "aaa")
        .await
        .unwrap();
    s.record_fingerprint_definition("gh", "search", "aaa", r#"{"d":"old"}"#)
        .await
        .unwrap();
    assert!(s.list_pending_fingerprints().await.unwrap().is_empty());
    s.record_or_compare_fingerprint("gh", "search", "bbb")
        .await
        .unwrap();
    s.record_fingerprint_definition("gh", "search", "bbb", r#"{"d":"new"}"#)
        .await
        .unwrap();
    // A definition matching neither fingerprint is not kept anywhere.
    s.record_fingerprint_definition("gh", "search", "zzz", r#"{"d":"other"}"#)
        .await
        .unwrap();
    let pending = s.list_pending_fingerprints().await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].definition.as_deref(), Some(r#"{"d":"old"}"#));
    assert_eq!(
        pending[0].pending_definition.as_deref(),
        Some(r#"{"d":"new"}"#)
    );
    s.approve_fingerprint("gh", "search", "bbb").await.unwrap();
    let approved = s.get_fingerprint("gh", "search").await.unwrap().unwrap();
    assert_eq!(approved.definition.as_deref(), Some(r#"{"d":"new"}"#));
    assert_eq!(approved.pending_definition, None);
    assert!(s.list_pending_fingerprints().await.unwrap().is_empty());
}
