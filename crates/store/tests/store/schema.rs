//! A database migrated by a newer binary is refused and left as it is.

use std::sync::Arc;

use gig_store::{AuditEntry, BackendKind, StoreError};
use serde_json::json;

use crate::fixtures::user;
use crate::harness::TestDb;

pub async fn newer_schema_is_refused(db: Arc<TestDb>) {
    let s = &db.store;
    s.create_user(&user("keep-me")).await.unwrap();
    s.append_audit(&AuditEntry {
        actor: "a",
        action: "b",
        target: "c",
        result: "ok",
        detail: &json!({}),
    })
    .await
    .unwrap();
    let checksum = match db.kind() {
        BackendKind::Sqlite => "X'00'",
        BackendKind::Postgres => "'\\x00'::bytea",
    };
    db.exec(&format!(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
         VALUES (99990101000000, 'from a newer gateway', TRUE, {checksum}, 0)"
    ))
    .await
    .unwrap();
    let migrations = db.count("_sqlx_migrations").await;

    let err = db.reopen().await.expect_err("newer schema must be refused");
    assert!(
        matches!(
            err,
            StoreError::SchemaTooNew {
                found: 99990101000000,
                supported: 6
            }
        ),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains("newer than this binary") && message.contains("99990101000000"),
        "{message}"
    );

    assert_eq!(db.count("_sqlx_migrations").await, migrations);
    assert_eq!(db.count("users").await, 1);
    assert_eq!(db.count("audit_log").await, 1);
    assert!(s.get_user_by_subject("keep-me").await.unwrap().is_some());
}
