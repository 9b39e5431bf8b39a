//! Two pools writing to one database at once, like two replicas: nothing is lost or doubled.

use std::sync::Arc;

use gig_store::{AuditEntry, FingerprintCheck, Role};
use serde_json::json;

use crate::fixtures::{global, sealed, user};
use crate::harness::TestDb;

pub async fn concurrent_writers_lose_nothing(db: Arc<TestDb>) {
    const TASKS: usize = 50;
    // Two independent pools on one database, like two gateway replicas.
    let stores = [db.store.clone(), db.reopen().await.unwrap()];
    let owner = stores[0].create_user(&user("owner")).await.unwrap();

    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..TASKS {
        let s = stores[i % 2].clone();
        tasks.spawn(async move {
            let name = format!("task-{i}");
            s.append_audit(&AuditEntry {
                actor: &name,
                action: "tool.call",
                target: "t",
                result: "ok",
                detail: &json!({"i": i}),
            })
            .await
            .unwrap();
            s.put_credential(&sealed(global("srv"), &name, "k1", name.as_bytes()))
                .await
                .unwrap();
            // Everyone writes the same key: the upsert must never produce a second row.
            s.put_credential(&sealed(global("srv"), "SHARED", "k1", name.as_bytes()))
                .await
                .unwrap();
            // Concurrent grants of one role neither fail nor duplicate it.
            s.grant_role(owner.id, Role::ALL[i % Role::ALL.len()])
                .await
                .unwrap();
            if i % 5 == 0 {
                // Read-then-write transactions must queue behind the other writers, not
                // fail on a stale snapshot.
                s.rotate(|row| {
                    Ok::<_, std::convert::Infallible>((
                        row.meta.key_id.clone(),
                        row.wrapped_dek.clone(),
                    ))
                })
                .await
                .unwrap();
            }
            s.record_or_compare_fingerprint("srv", "tool", "same")
                .await
                .unwrap()
        });
    }
    let mut new = 0;
    while let Some(check) = tasks.join_next().await {
        if check.unwrap() == FingerprintCheck::New {
            new += 1;
        }
    }
    assert_eq!(new, 1, "exactly one task saw the tool first");

    let audit = stores[1].list_recent_audit(1000).await.unwrap();
    assert_eq!(audit.len(), TASKS);
    let mut actors: Vec<_> = audit.iter().map(|r| r.actor.clone()).collect();
    actors.sort();
    actors.dedup();
    assert_eq!(actors.len(), TASKS);
    let mut ids: Vec<_> = audit.iter().map(|r| r.id).collect();
    ids.dedup();
    assert_eq!(ids.len(), TASKS, "ids are unique");
    assert_eq!(db.count("credentials").await, TASKS as i64 + 1);
    assert_eq!(
        stores[0].list_roles(owner.id).await.unwrap(),
        [Role::Admin, Role::Member, Role::Operator, Role::Viewer]
    );
    stores[1].close().await;
}
