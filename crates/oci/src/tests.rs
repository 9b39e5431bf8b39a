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
    // A dead process's temp dir: its lock file exists but nobody holds it, and its pid does
    // not run (pid_max is at most 2^22).
    let owner = crate::cache::temp_dir_owner();
    let namespace = owner.split_once('.').expect("this host has /proc").1;
    let dead = dir.path().join(format!("tmp/4999999.{namespace}-dead"));
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
fn a_temp_dir_is_removed_only_once_its_owner_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let ours = crate::cache::temp_dir_owner();
    let namespace = ours.split_once('.').expect("this host has /proc").1;
    let made = |name: &str, lock: bool| {
        let path = dir.path().join("tmp").join(name);
        std::fs::create_dir_all(&path).unwrap();
        if lock {
            std::fs::write(path.join(".lock"), b"").unwrap();
        }
        path
    };
    // Killed between making its dir and its lock file, or between creating the lock file and
    // locking it: the pid does not run (pid_max is at most 2^22, so this one never does).
    let killed = made(&format!("4999999.{namespace}-killed"), false);
    let killed_unlocked = made(&format!("4999999.{namespace}-unlocked"), true);
    // Just starting, at either step: its pid (ours) runs.
    let starting = made(&format!("{ours}-starting"), false);
    let starting_unlocked = made(&format!("{ours}-unlocked"), true);
    // A process in another pid namespace (a container sharing the cache): no telling.
    let elsewhere = made("4999999.1-elsewhere", false);
    let _cache = Cache::open(dir.path()).unwrap();
    for gone in [&killed, &killed_unlocked] {
        assert!(!gone.exists(), "{} is left behind", gone.display());
    }
    for live in [&starting, &starting_unlocked, &elsewhere] {
        assert!(
            live.exists(),
            "{} was removed under its owner",
            live.display()
        );
    }
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
