//! The operator CLI as an operator runs it: the real `gigmcp` binary, a real SQLite file.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const VALUE: &str = "sk-test-CLI-PLAINTEXT-9f8e7d6c5b4a";
const KEY_A: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const KEY_B: &str = "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f";

fn gigmcp(data: &Path, key: &str, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gigmcp"))
        .args(args)
        .env_clear()
        .env("GIG_DATA_DIR", data)
        .env("GIG_MASTER_KEY", key)
        .env("GIG_LOG", "trace")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gigmcp runs");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn disk_bytes(dir: &Path) -> Vec<u8> {
    std::fs::read_dir(dir)
        .unwrap()
        .flat_map(|e| std::fs::read(e.unwrap().path()).unwrap_or_default())
        .collect()
}

#[test]
fn secrets_are_set_listed_and_deleted_without_the_value_ever_showing() {
    let data = tempfile::tempdir().unwrap();
    let set = gigmcp(
        data.path(),
        KEY_A,
        &["secret", "set", "github", "TOKEN"],
        Some(&format!("{VALUE}\n")),
    );
    assert!(set.status.success(), "{}", text(&set.stderr));
    // No server of that name exists here: stored, but the operator is told.
    assert!(
        text(&set.stderr).contains("no server named \"github\" is installed or declared"),
        "{}",
        text(&set.stderr)
    );

    let list = gigmcp(data.path(), KEY_A, &["secret", "list"], None);
    assert!(list.status.success(), "{}", text(&list.stderr));
    assert!(text(&list.stdout).contains("github\tTOKEN"));

    for output in [&set, &list] {
        assert!(!text(&output.stdout).contains(VALUE));
        assert!(!text(&output.stderr).contains(VALUE), "value in trace logs");
    }
    let disk = disk_bytes(data.path());
    assert!(
        !disk.windows(VALUE.len()).any(|w| w == VALUE.as_bytes()),
        "plaintext on disk"
    );

    let delete = gigmcp(
        data.path(),
        KEY_A,
        &["secret", "delete", "github", "TOKEN"],
        None,
    );
    assert!(delete.status.success());
    let again = gigmcp(
        data.path(),
        KEY_A,
        &["secret", "delete", "github", "TOKEN"],
        None,
    );
    assert!(!again.status.success());
    assert!(text(&again.stderr).contains("no secret TOKEN"));
}

#[test]
fn a_wrong_or_malformed_master_key_is_refused() {
    let data = tempfile::tempdir().unwrap();
    assert!(
        gigmcp(data.path(), KEY_A, &["secret", "set", "s", "K"], Some("v"))
            .status
            .success()
    );

    let wrong = gigmcp(data.path(), KEY_B, &["secret", "list"], None);
    assert!(!wrong.status.success());
    assert!(
        text(&wrong.stderr).contains("does not match"),
        "{}",
        text(&wrong.stderr)
    );

    for bad in ["", "abc", &"zz".repeat(32)] {
        let out = gigmcp(data.path(), bad, &["secret", "list"], None);
        assert!(!out.status.success());
        let stderr = text(&out.stderr);
        assert!(stderr.contains("GIG_MASTER_KEY"), "{stderr}");
        assert!(bad.is_empty() || !stderr.contains(bad));
    }

    // The server refuses to start too, before listening.
    let serve = Command::new(env!("CARGO_BIN_EXE_gigmcp"))
        .env_clear()
        .env("GIG_DATA_DIR", data.path())
        .env("GIG_MASTER_KEY", KEY_B)
        .env("GIG_BEARER_TOKEN", "a-long-enough-test-token")
        .env("GIG_LISTEN", "127.0.0.1:0")
        .output()
        .unwrap();
    assert!(!serve.status.success());
    assert!(text(&serve.stderr).contains("refusing to start"));
}

#[test]
fn rotation_moves_every_secret_to_the_new_key() {
    let data = tempfile::tempdir().unwrap();
    for name in ["A", "B", "C"] {
        assert!(
            gigmcp(
                data.path(),
                KEY_A,
                &["secret", "set", "svc", name],
                Some(VALUE)
            )
            .status
            .success()
        );
    }
    let key_file = data.path().join("new-key");
    std::fs::write(&key_file, format!("{KEY_B}\n")).unwrap();
    // A key file others could read is refused before anything is re-wrapped.
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let refused = gigmcp(
        data.path(),
        KEY_A,
        &[
            "vault",
            "rotate",
            "--new-key-file",
            key_file.to_str().unwrap(),
        ],
        None,
    );
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("chmod 600"),
        "{}",
        text(&refused.stderr)
    );
    assert!(!text(&refused.stderr).contains(KEY_B), "the key was echoed");
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let rotate = gigmcp(
        data.path(),
        KEY_A,
        &[
            "vault",
            "rotate",
            "--new-key-file",
            key_file.to_str().unwrap(),
        ],
        None,
    );
    assert!(rotate.status.success(), "{}", text(&rotate.stderr));
    assert!(text(&rotate.stdout).contains("re-wrapped 3 secrets"));

    assert!(
        !gigmcp(data.path(), KEY_A, &["secret", "list"], None)
            .status
            .success()
    );
    let list = gigmcp(data.path(), KEY_B, &["secret", "list"], None);
    assert!(list.status.success());
    assert_eq!(text(&list.stdout).lines().count(), 3);
}
