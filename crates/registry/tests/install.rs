//! The install flow against a real registry (Debian's `docker-registry` on loopback) and a
//! signed index on disk: what installs, and every hostile input refused with nothing changed.

use std::collections::BTreeMap;
use std::path::Path;

use gig_oci::RegistryOptions;
use gig_oci::testing::{ImageBuilder, TestEntry, TestLayer, TestRegistry};
use gig_registry::{InstallError, Installer};
use gig_registry_schema::{
    ExtractMode, Index, IndexSigningKey, ServerEntry, Transport, TrustedKeys, VersionEntry,
    sign_index,
};
use gig_store::Store;
use time::OffsetDateTime;

const PROGRAM: &[u8] = b"#!/bin/sh\necho pretend MCP server\n";

struct Fixture {
    _dir: tempfile::TempDir,
    registry: TestRegistry,
    key: IndexSigningKey,
    index_path: std::path::PathBuf,
    store: Store,
    installer: Installer,
    image: String,
    layer_digest: gig_oci::Digest,
}

async fn fixture() -> Option<Fixture> {
    let registry = TestRegistry::start()?;
    let image = ImageBuilder::new()
        .layer(TestLayer::gzip(vec![
            TestEntry::dir("srv"),
            TestEntry::file("srv/echo-mcp", 0o755, PROGRAM),
        ]))
        .entrypoint(&["/srv/echo-mcp"])
        .build();
    let digest = image
        .push(
            registry.host(),
            "echo",
            Some("1.0.0"),
            &gig_oci::RegistryAuth::Anonymous,
        )
        .await;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite://{}", dir.path().join("gig.db").display()))
        .await
        .unwrap();
    let key = IndexSigningKey::generate().unwrap();
    let index_path = dir.path().join("index.signed.json");
    let installer = Installer::new(
        store.clone(),
        None,
        &dir.path().join("oci"),
        &format!("file://{}", index_path.display()),
        TrustedKeys::new([key.public()]).unwrap(),
        RegistryOptions {
            plain_http: true,
            ..Default::default()
        },
    )
    .unwrap();
    let image_ref = format!("{}/echo@{digest}", registry.host());
    let layer_digest = image.layers[0].0.clone();
    Some(Fixture {
        _dir: dir,
        registry,
        key,
        index_path,
        store,
        installer,
        image: image_ref,
        layer_digest,
    })
}

fn entry(image: &str, entrypoint: &str) -> VersionEntry {
    serde_json::from_value(serde_json::json!({
        "image": image,
        "entrypoint": entrypoint,
        "extract": "entrypoint",
    }))
    .unwrap()
}

fn index(version: u64, expires: OffsetDateTime, entry: VersionEntry) -> Index {
    let mut index = Index::empty();
    index.version = version;
    index.expires = expires;
    index.servers.insert(
        "echo".parse().unwrap(),
        ServerEntry {
            description: "echo".into(),
            latest: "1.0.0".into(),
            versions: BTreeMap::from([("1.0.0".to_string(), entry)]),
        },
    );
    index
}

fn publish(path: &Path, index: &Index, key: &IndexSigningKey) {
    std::fs::write(path, sign_index(index, &[key]).unwrap()).unwrap();
}

fn in_a_day() -> OffsetDateTime {
    OffsetDateTime::now_utc() + time::Duration::days(1)
}

async fn nothing_installed(f: &Fixture) {
    assert!(f.store.list_servers().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_signed_ref_installs_and_a_second_install_is_cached() {
    let Some(f) = fixture().await else { return };
    publish(
        &f.index_path,
        &index(1, in_a_day(), entry(&f.image, "/srv/echo-mcp")),
        &f.key,
    );
    let steps = std::sync::Mutex::new(Vec::new());
    let record = f
        .installer
        .install("echo", &|p| steps.lock().unwrap().push(p))
        .await
        .unwrap();
    assert_eq!(
        (record.name.as_str(), record.version.as_str()),
        ("echo", "1.0.0")
    );
    let gig_registry::InstalledServer::Image(installed) =
        gig_registry::InstalledServer::from_record(&record).unwrap()
    else {
        panic!("an image entry read back as remote");
    };
    assert_eq!(std::fs::read(&installed.path).unwrap(), PROGRAM);
    assert_eq!(installed.entry.extract, ExtractMode::Entrypoint);
    assert_eq!(installed.entry.transport, Transport::Stdio);
    assert!(steps.lock().unwrap().len() >= 3, "progress was reported");
    assert_eq!(f.store.accepted_index().await.unwrap().unwrap().version, 1);

    let before = f.registry.requests("/v2/echo/blobs/");
    f.installer.install("echo@1.0.0", &|_| {}).await.unwrap();
    assert_eq!(
        f.registry.requests("/v2/echo/blobs/"),
        before,
        "cached install fetched blobs"
    );

    assert!(f.installer.uninstall("echo").await.unwrap());
    nothing_installed(&f).await;
}

#[tokio::test]
async fn a_remote_entry_installs_without_a_pull_and_reads_back_as_remote() {
    let Some(f) = fixture().await else { return };
    let remote: VersionEntry = serde_json::from_value(serde_json::json!({
        "remote": {"url": "https://mcp.example.com/mcp",
                   "headers": {"Authorization": "Bearer ${credential:token}"}},
        "description": "a remote echo",
    }))
    .unwrap();
    publish(&f.index_path, &index(1, in_a_day(), remote), &f.key);
    let before = f.registry.requests("/v2/");
    let record = f.installer.install("echo", &|_| {}).await.unwrap();
    assert_eq!(f.registry.requests("/v2/"), before, "a remote entry pulled");
    assert_eq!(
        (record.image_ref.as_str(), record.image_digest.as_str()),
        ("", "")
    );
    assert_eq!(record.extracted_path, None);
    match gig_registry::InstalledServer::from_record(&record).unwrap() {
        gig_registry::InstalledServer::Remote { version, spec } => {
            assert_eq!(version, "1.0.0");
            assert_eq!(spec.name.as_str(), "echo");
            assert_eq!(spec.url.as_str(), "https://mcp.example.com/mcp");
            assert_eq!(spec.credentials(), ["token"]);
        }
        other => panic!("read back as {other:?}"),
    }
}

#[tokio::test]
async fn a_tampered_unknown_or_expired_index_installs_nothing() {
    let Some(f) = fixture().await else { return };
    let good = index(1, in_a_day(), entry(&f.image, "/srv/echo-mcp"));

    // One changed byte inside the signed document.
    let mut bytes = sign_index(&good, &[&f.key]).unwrap();
    let at = bytes
        .windows(7)
        .position(|w| w == b"1.0.0\"\x7d")
        .unwrap_or(bytes.len() / 2);
    bytes[at] ^= 1;
    std::fs::write(&f.index_path, &bytes).unwrap();
    let err = f.installer.install("echo", &|_| {}).await.unwrap_err();
    assert!(matches!(err, InstallError::Index(_)), "{err}");

    // Signed by a key the gateway does not trust.
    publish(&f.index_path, &good, &IndexSigningKey::generate().unwrap());
    let err = f.installer.install("echo", &|_| {}).await.unwrap_err();
    assert!(err.to_string().contains("unknown"), "{err}");

    // Expired.
    let expired = index(
        1,
        OffsetDateTime::now_utc() - time::Duration::hours(1),
        entry(&f.image, "/srv/echo-mcp"),
    );
    publish(&f.index_path, &expired, &f.key);
    let err = f.installer.install("echo", &|_| {}).await.unwrap_err();
    assert!(err.to_string().contains("expired"), "{err}");

    nothing_installed(&f).await;
    assert_eq!(
        f.store.accepted_index().await.unwrap(),
        None,
        "a refused index was recorded"
    );
}

#[tokio::test]
async fn a_rolled_back_index_is_refused() {
    let Some(f) = fixture().await else { return };
    publish(
        &f.index_path,
        &index(5, in_a_day(), entry(&f.image, "/srv/echo-mcp")),
        &f.key,
    );
    f.installer.load_index().await.unwrap();
    publish(
        &f.index_path,
        &index(4, in_a_day(), entry(&f.image, "/srv/echo-mcp")),
        &f.key,
    );
    let err = f.installer.install("echo", &|_| {}).await.unwrap_err();
    assert!(
        err.to_string().contains("roll") || err.to_string().contains("older"),
        "{err}"
    );
    nothing_installed(&f).await;
    assert_eq!(f.store.accepted_index().await.unwrap().unwrap().version, 5);
}

#[tokio::test]
async fn a_tampered_layer_or_missing_entrypoint_installs_nothing() {
    let Some(f) = fixture().await else { return };
    publish(
        &f.index_path,
        &index(1, in_a_day(), entry(&f.image, "/srv/not-there")),
        &f.key,
    );
    let err = f.installer.install("echo", &|_| {}).await.unwrap_err();
    assert!(err.to_string().contains("not-there"), "{err}");
    nothing_installed(&f).await;

    publish(
        &f.index_path,
        &index(2, in_a_day(), entry(&f.image, "/srv/echo-mcp")),
        &f.key,
    );
    f.registry.tamper(&f.layer_digest);
    // The first failed install cached the layer already: start from a fresh cache.
    let fresh = Installer::new(
        f.store.clone(),
        None,
        &f._dir.path().join("oci-fresh"),
        &format!("file://{}", f.index_path.display()),
        TrustedKeys::new([f.key.public()]).unwrap(),
        RegistryOptions {
            plain_http: true,
            ..Default::default()
        },
    )
    .unwrap();
    let err = fresh.install("echo", &|_| {}).await.unwrap_err();
    assert!(err.to_string().contains("digest mismatch"), "{err}");
    nothing_installed(&f).await;
}

#[tokio::test]
async fn an_unknown_server_or_version_is_a_clear_error() {
    let Some(f) = fixture().await else { return };
    publish(
        &f.index_path,
        &index(1, in_a_day(), entry(&f.image, "/srv/echo-mcp")),
        &f.key,
    );
    for (reference, needle) in [("nope", "nope"), ("echo@9.9.9", "9.9.9")] {
        let err = f.installer.install(reference, &|_| {}).await.unwrap_err();
        assert!(err.to_string().contains(needle), "{err}");
    }
    nothing_installed(&f).await;
}

/// The whole index state row, `accepted_at` included (the store's API leaves it out).
async fn index_state_row(db: &Path) -> Option<(i64, String, i64)> {
    let url = format!("sqlite://{}", db.display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let row =
        sqlx::query_as("SELECT version, content_sha256, accepted_at FROM index_state WHERE id = 1")
            .fetch_optional(&pool)
            .await
            .unwrap();
    pool.close().await;
    row
}

/// Installs from an OCI layout (no registry needed): every refusal after a good install leaves
/// the store exactly as it was, the accepted index's time included.
#[tokio::test]
async fn a_refused_install_changes_nothing_not_even_the_index_state() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let good = ImageBuilder::new()
        .layer(TestLayer::gzip(vec![TestEntry::file(
            "srv/echo-mcp",
            0o755,
            PROGRAM,
        )]))
        .build()
        .write_layout(&layout, "good");
    let hostile = ImageBuilder::new()
        .layer(TestLayer::gzip(vec![
            TestEntry::file("srv/echo-mcp", 0o755, PROGRAM),
            TestEntry::raw_file(b"../evil", b"pwned"),
        ]))
        .build()
        .write_layout(&layout, "hostile");
    let db = dir.path().join("gig.db");
    let store = Store::open(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let key = IndexSigningKey::generate().unwrap();
    let index_path = dir.path().join("index.signed.json");
    let cache = dir.path().join("oci");
    let installer = Installer::new(
        store.clone(),
        None,
        &cache,
        &format!("file://{}", index_path.display()),
        TrustedKeys::new([key.public()]).unwrap(),
        RegistryOptions::default(),
    )
    .unwrap()
    .with_layout(layout);
    let good_ref = format!("127.0.0.1:5000/echo@{good}");
    let hostile_ref = format!("127.0.0.1:5000/echo@{hostile}");

    let first = index(1, in_a_day(), entry(&good_ref, "/srv/echo-mcp"));
    publish(&index_path, &first, &key);
    installer.install("echo", &|_| {}).await.unwrap();
    let servers = store.list_servers().await.unwrap();
    let state = index_state_row(&db).await.unwrap();
    let entries = std::fs::read_dir(cache.join("entry")).unwrap().count();

    // The same index again, naming a server it does not have.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let err = installer.install("nope", &|_| {}).await.unwrap_err();
    assert!(matches!(err, InstallError::Resolve(_)), "{err}");
    // A newer index whose entrypoint is missing, then one whose image is hostile.
    for (version, entry) in [
        (2, entry(&good_ref, "/srv/not-there")),
        (3, entry(&hostile_ref, "/srv/echo-mcp")),
    ] {
        publish(&index_path, &index(version, in_a_day(), entry), &key);
        let err = installer.install("echo", &|_| {}).await.unwrap_err();
        assert!(matches!(err, InstallError::Image { .. }), "{err}");
    }
    assert_eq!(
        index_state_row(&db).await.unwrap(),
        state,
        "index state changed"
    );
    assert_eq!(
        store.list_servers().await.unwrap(),
        servers,
        "servers changed"
    );
    assert_eq!(
        std::fs::read_dir(cache.join("entry")).unwrap().count(),
        entries,
        "a refused entrypoint left something in the cache"
    );
    assert!(!dir.path().join("evil").exists());

    // Loading the same index again does not touch its state either.
    publish(&index_path, &first, &key);
    installer.load_index().await.unwrap();
    assert_eq!(
        index_state_row(&db).await.unwrap(),
        state,
        "re-accepting rewrote it"
    );
}
