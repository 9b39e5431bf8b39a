use crate::fetch::RegistryOptions;
use crate::{Cache, Digest, ImageRef, ImageSource, OciError, RegistryAuth};

const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

#[test]
fn image_ref_requires_digest_and_explicit_registry() {
    let r = ImageRef::parse(&format!("127.0.0.1:5000/team/echo@sha256:{HEX}")).unwrap();
    assert_eq!(r.registry(), "127.0.0.1:5000");
    assert_eq!(r.repository(), "team/echo");
    assert_eq!(r.digest().hex(), HEX);
    let tagged = ImageRef::parse(&format!("ghcr.io/x/echo:1.0@sha256:{HEX}")).unwrap();
    assert_eq!(tagged.repository(), "x/echo");
    for bad in [
        "127.0.0.1:5000/echo:latest".to_string(),
        format!("echo@sha256:{HEX}"),
        format!("library/echo@sha256:{HEX}"),
        format!("127.0.0.1:5000/Echo@sha256:{HEX}"),
        format!("127.0.0.1:5000/../echo@sha256:{HEX}"),
        "127.0.0.1:5000/echo@sha256:abc".to_string(),
        format!("127.0.0.1:5000/echo@sha512:{HEX}"),
    ] {
        assert!(
            matches!(
                ImageRef::parse(&bad),
                Err(OciError::InvalidReference { .. } | OciError::InvalidDigest(_))
            ),
            "{bad} should be refused"
        );
    }
}

#[test]
fn digest_parse_is_strict() {
    assert!(Digest::parse(&format!("sha256:{HEX}")).is_ok());
    assert!(Digest::parse(&format!("sha256:{}", HEX.to_uppercase())).is_err());
    assert!(Digest::parse(&format!("sha256:{HEX}0")).is_err());
    assert_eq!(
        Digest::of(b"").to_string(),
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
}

#[test]
fn auth_debug_redacts_password() {
    let auth = RegistryAuth::basic("alice", "hunter2");
    let shown = format!("{auth:?}");
    assert!(
        shown.contains("alice") && !shown.contains("hunter2"),
        "{shown}"
    );
}

#[tokio::test]
async fn plain_http_is_refused_for_non_loopback_registries() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    let source = ImageSource::Registry {
        image: ImageRef::parse(&format!("registry.example.com/echo@sha256:{HEX}")).unwrap(),
        options: RegistryOptions {
            plain_http: true,
            ..Default::default()
        },
    };
    let err = cache
        .pull(&source, &RegistryAuth::Anonymous, &|_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, OciError::PlainHttpNotLoopback(_)), "{err}");
}

#[test]
fn stale_temp_dirs_are_removed_on_open_but_live_ones_kept() {
    let dir = tempfile::tempdir().unwrap();
    let live = Cache::open(dir.path()).unwrap();
    // A dead process's temp dir: its lock file exists but nobody holds it.
    let dead = dir.path().join("tmp/999999-dead");
    std::fs::create_dir_all(&dead).unwrap();
    std::fs::write(dead.join(".lock"), b"").unwrap();
    std::fs::write(dead.join("half.part"), b"partial").unwrap();
    let _second = Cache::open(dir.path()).unwrap();
    assert!(!dead.exists(), "stale temp dir should be removed");
    let live_tmps: Vec<_> = std::fs::read_dir(dir.path().join("tmp")).unwrap().collect();
    assert_eq!(live_tmps.len(), 2, "both live caches keep their temp dirs");
    drop(live);
}

#[test]
fn a_temp_dir_without_its_lock_is_removed_only_once_its_owner_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    // A process killed between making its temp dir and its lock file: the pid is not running
    // (pid_max is at most 2^22, so this one never is).
    let killed = dir.path().join("tmp/4999999-killed");
    std::fs::create_dir_all(&killed).unwrap();
    // One just starting: its pid (ours) runs, the lock file is not there yet.
    let starting = dir
        .path()
        .join(format!("tmp/{}-starting", std::process::id()));
    std::fs::create_dir_all(&starting).unwrap();
    let _cache = Cache::open(dir.path()).unwrap();
    assert!(
        !killed.exists(),
        "a lock-less temp dir of a dead process is left behind"
    );
    assert!(
        starting.exists(),
        "a starting process's temp dir was removed under it"
    );
}

#[test]
fn hostile_names_are_shown_escaped_and_short() {
    use crate::error::shown_name;
    assert_eq!(shown_name(b"bin/echo"), "bin/echo");
    let shown = shown_name(&vec![0u8; 8 << 20]);
    assert!(shown.len() < 200, "{shown}");
    assert!(
        shown.starts_with("\\0\\0") && shown.ends_with("(8388608 bytes)"),
        "{shown}"
    );
    let shown = shown_name("\u{1b}[2J\u{7}é".repeat(100).as_bytes());
    assert!(
        !shown.contains('\u{1b}') && !shown.contains('\u{7}'),
        "{shown}"
    );
    assert!(shown.chars().count() < 100, "{shown}");
}
