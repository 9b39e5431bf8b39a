//! The audit log: append-only, filtered and paged.

use std::sync::Arc;

use gig_store::{AuditEntry, AuditQuery, AuditRecord, BackendKind};
use serde_json::json;

use crate::harness::TestDb;

pub async fn audit_is_append_only(db: Arc<TestDb>) {
    let s = &db.store;
    let detail = json!({"tool": "github_search", "ms": 12, "args_bytes": 48});
    let a = s
        .append_audit(&AuditEntry {
            actor: "alice",
            action: "tool.call",
            target: "github/search",
            result: "ok",
            detail: &detail,
        })
        .await
        .unwrap();
    let b = s
        .append_audit(&AuditEntry {
            actor: "server:fetch",
            action: "egress.request",
            target: "CONNECT api.github.com:443",
            result: "allowed",
            detail: &json!({"resolved": "192.0.2.10"}),
        })
        .await
        .unwrap();
    let c = s
        .append_audit(&AuditEntry {
            actor: "server:fetch",
            action: "egress.request",
            target: "CONNECT 169.254.169.254:80",
            result: "denied",
            detail: &json!({"reason": "link-local"}),
        })
        .await
        .unwrap();
    assert!(a < b && b < c);
    let recent = s.list_recent_audit(2).await.unwrap();
    assert_eq!(recent.iter().map(|r| r.id).collect::<Vec<_>>(), [c, b]);
    assert_eq!(recent[0].result, "denied");
    let all = s.list_recent_audit(100).await.unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(
        (
            all[2].actor.as_str(),
            all[2].action.as_str(),
            &all[2].detail
        ),
        ("alice", "tool.call", &detail)
    );
    assert!(all[0].at >= all[2].at);

    for sql in [
        "UPDATE audit_log SET result = 'ok'",
        "DELETE FROM audit_log",
        "DELETE FROM audit_log WHERE id = 1",
    ] {
        let err = db.exec(sql).await.expect_err(sql);
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    if db.kind() == BackendKind::Postgres {
        let err = db.exec("TRUNCATE audit_log").await.expect_err("truncate");
        assert!(err.to_string().contains("append-only"), "{err}");
    }
    assert_eq!(
        s.list_recent_audit(100).await.unwrap(),
        all,
        "nothing changed"
    );
}

pub async fn audit_filters_and_paging(db: Arc<TestDb>) {
    let s = &db.store;
    for (actor, action, target) in [
        ("alice", "tool.call", "github/search"),
        ("bob", "tool.call", "github/issues"),
        ("alice", "egress.request", "CONNECT api.github.com:443"),
        ("alice", "tool.call", "a_b/x"),
        ("alice", "tool.call", "axb/y"),
        ("svc", "Tool.Call", "github/x"),
        ("alice", "tool.list", "a%c"),
        ("alice", "tool.call", "abc"),
        ("alice", "tool.call", "c\\d"),
        ("alicex", "tool.callx", "GitHub/search"),
    ] {
        s.append_audit(&AuditEntry {
            actor,
            action,
            target,
            result: "ok",
            detail: &json!({}),
        })
        .await
        .unwrap();
    }
    let all = s.list_recent_audit(100).await.unwrap();
    assert_eq!(all.len(), 10);
    let everything = AuditQuery {
        limit: 100,
        ..AuditQuery::default()
    };
    assert_eq!(s.list_audit(&everything).await.unwrap(), all);

    // Each query against the same filter applied here, to the full newest-first list.
    let check = async |query: AuditQuery<'_>, keep: &(dyn Fn(&AuditRecord) -> bool + Sync)| {
        let got: Vec<_> = s
            .list_audit(&query)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        let want: Vec<_> = all.iter().filter(|r| keep(r)).map(|r| r.id).collect();
        assert_eq!(got, want, "{query:?}");
        got.len()
    };
    let q = |f: fn(&mut AuditQuery<'static>)| {
        let mut query = everything;
        f(&mut query);
        query
    };

    assert_eq!(
        check(q(|q| q.actor = Some("alice")), &|r| r.actor == "alice").await,
        7
    );
    assert_eq!(
        check(q(|q| q.action_prefix = Some("tool.call")), &|r| {
            r.action.starts_with("tool.call")
        })
        .await,
        7,
        "case-sensitive: Tool.Call is not tool.call"
    );
    assert_eq!(
        check(q(|q| q.action_prefix = Some("tool.")), &|r| {
            r.action.starts_with("tool.")
        })
        .await,
        8
    );
    // `_` and `%` in a prefix are literal, not LIKE wildcards.
    assert_eq!(
        check(q(|q| q.target_prefix = Some("a_b")), &|r| r.target
            == "a_b/x")
        .await,
        1,
        "a_b must not match axb"
    );
    assert_eq!(
        check(q(|q| q.target_prefix = Some("a%")), &|r| r.target == "a%c").await,
        1,
        "a% must not match abc"
    );
    assert_eq!(
        check(q(|q| q.target_prefix = Some("c\\")), &|r| r.target
            == "c\\d")
        .await,
        1
    );
    assert_eq!(
        check(q(|q| q.target_prefix = Some("github/")), &|r| {
            r.target.starts_with("github/")
        })
        .await,
        3,
        "case-sensitive: GitHub/ is not github/"
    );
    assert_eq!(
        check(
            q(|q| {
                q.actor = Some("alice");
                q.target_prefix = Some("github/");
                q.action_prefix = Some("tool.");
            }),
            &|r| r.actor == "alice" && r.target.starts_with("github/"),
        )
        .await,
        1
    );
    assert_eq!(
        check(q(|q| q.target_prefix = Some("")), &|_| true).await,
        10
    );
    assert_eq!(check(q(|q| q.actor = Some("nobody")), &|_| false).await, 0);
    assert!(
        s.list_audit(&AuditQuery {
            limit: 0,
            ..everything
        })
        .await
        .unwrap()
        .is_empty()
    );

    // Time window: since is inclusive, until exclusive.
    let (since, until) = (all[7].at, all[2].at);
    let window = AuditQuery {
        since: Some(since),
        until: Some(until),
        ..everything
    };
    let n = check(window, &|r| r.at >= since && r.at < until).await;
    assert!(n >= 1, "at least all[7]");
    check(
        AuditQuery {
            since: Some(since),
            ..everything
        },
        &|r| r.at >= since,
    )
    .await;
    check(
        AuditQuery {
            until: Some(until),
            ..everything
        },
        &|r| r.at < until,
    )
    .await;

    // Cursor paging: pages of 4 of alice's records, each before the last id seen.
    let mut pages = Vec::new();
    let mut cursor = None;
    loop {
        let page = s
            .list_audit(&AuditQuery {
                actor: Some("alice"),
                before_id: cursor,
                limit: 4,
                ..AuditQuery::default()
            })
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        cursor = Some(last.id);
        pages.push(page.iter().map(|r| r.id).collect::<Vec<_>>());
    }
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [4, 3]);
    let alices: Vec<_> = all
        .iter()
        .filter(|r| r.actor == "alice")
        .map(|r| r.id)
        .collect();
    assert_eq!(pages.concat(), alices);
    let before = all[4].id;
    check(
        AuditQuery {
            before_id: Some(before),
            action_prefix: Some("tool.call"),
            ..everything
        },
        &|r| r.id < before && r.action.starts_with("tool.call"),
    )
    .await;
}
