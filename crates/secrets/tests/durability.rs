//! Kill the writer with SIGKILL in the middle of a batch, reopen: every acknowledged write is
//! there and opens to its value; nothing is half-written. On SQLite always; on PostgreSQL when
//! `GIG_TEST_DATABASE_URL` is set (required when `GIG_REQUIRE_POSTGRES=1`).

// Tests read their own switches (CI, GIG_REQUIRE_SANDBOX) and hand the environment to children.
#![allow(clippy::disallowed_methods)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use gig_secrets::Secrets;
use gig_store::{CredentialScope, Store};
use gig_test_util::workspace_bin;
use gig_vault::MasterKey;

const KEY: &str = "3a3b3c3d3e3f404142434445464748494a4b4c4d4e4f50515253545556575859";

async fn kill_mid_batch_then_verify(url: &str) {
    let mut writer = Command::new(workspace_bin("secret-writer"))
        .args([url, KEY])
        .stdout(Stdio::piped())
        .spawn()
        .expect("secret-writer starts");
    let mut acked = Vec::new();
    let mut lines = BufReader::new(writer.stdout.take().unwrap()).lines();
    while acked.len() < 200 {
        let line = lines.next().expect("writer ended early").unwrap();
        acked.push(line.strip_prefix("ack ").unwrap().parse::<u64>().unwrap());
    }
    // SIGKILL: no destructors, no flush, mid-write of the next secret.
    writer.kill().unwrap();
    writer.wait().unwrap();

    let secrets = Secrets::open(
        Store::open(url).await.unwrap(),
        &MasterKey::from_hex(KEY).unwrap(),
    )
    .await
    .expect("reopens after a crash");
    let scope = CredentialScope {
        server: "durability",
        user_id: None,
        profile_id: None,
    };
    for n in &acked {
        let value = secrets
            .get(&scope, &format!("K{n}"))
            .await
            .expect("acknowledged write opens")
            .unwrap_or_else(|| panic!("acknowledged write K{n} lost"));
        assert_eq!(value.expose(), format!("value-{n}").as_bytes());
    }
    // Anything beyond the acknowledged ones is either absent or whole: every stored row opens.
    for meta in secrets.list(Some("durability")).await.unwrap() {
        let value = secrets.get(&scope, &meta.name).await.unwrap().unwrap();
        assert_eq!(
            value.expose(),
            format!("value-{}", &meta.name[1..]).as_bytes()
        );
    }
}

#[tokio::test]
async fn sqlite_keeps_every_acknowledged_write_across_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    kill_mid_batch_then_verify(&format!("sqlite://{}", dir.path().join("gig.db").display())).await;
}

#[tokio::test]
async fn postgres_keeps_every_acknowledged_write_across_sigkill() {
    let Ok(url) = std::env::var("GIG_TEST_DATABASE_URL") else {
        assert!(
            std::env::var("GIG_REQUIRE_POSTGRES").as_deref() != Ok("1"),
            "GIG_REQUIRE_POSTGRES=1 but GIG_TEST_DATABASE_URL is not set"
        );
        eprintln!("SKIPPED: GIG_TEST_DATABASE_URL not set");
        return;
    };
    // A fresh schema, so earlier runs' rows and vault keys do not interfere.
    let schema = format!("durability_{}", std::process::id());
    let admin = Store::open(&url).await.unwrap();
    drop(admin);
    let separator = if url.contains('?') { '&' } else { '?' };
    let scoped = format!("{url}{separator}options=-c%20search_path%3D{schema}");
    create_schema(&url, &schema).await;
    kill_mid_batch_then_verify(&scoped).await;
}

async fn create_schema(url: &str, schema: &str) {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
        .execute(&mut conn)
        .await
        .unwrap();
}
