//! Drives the real `registryctl` binary; `add` and `import` resolve tags against a real
//! CNCF distribution registry (Debian's `docker-registry`, through gig-oci's `TestRegistry`)
//! started on loopback per test.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use gig_oci::RegistryAuth;
use gig_oci::testing::{BuiltImage, BuiltIndex, ImageBuilder, TestLayer, TestRegistry};
use serde_json::{Value, json};
use tempfile::TempDir;

const DIGEST: &str = "sha256:2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881";

fn run(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_registryctl"))
        .args(args)
        .current_dir(dir)
        .envs(env.iter().copied())
        .output()
        .expect("run registryctl")
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = run(dir, args, &[]);
    assert!(
        out.status.success(),
        "registryctl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs a command that must fail with exit code 1 and exactly one line of error; returns it.
fn fails(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let out = run(dir, args, env);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line expected: {stderr}");
    assert!(stderr.starts_with("registryctl: error: "), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

/// `add` of one server version to ./index.json; a caller appends its own flags.
fn add_args<'a>(name: &'a str, version: &'a str, image: &'a str, entry: &'a str) -> Vec<&'a str> {
    vec![
        "add",
        "--index",
        "index.json",
        "--name",
        name,
        "--version",
        version,
        "--image",
        image,
        "--entrypoint",
        entry,
    ]
}

/// `sign` of ./index.json into ./signed.json with each of `keys`.
fn sign_args<'a>(keys: &[&'a str], expires_in: &'a str) -> Vec<&'a str> {
    let mut args = vec!["sign", "--index", "index.json"];
    for key in keys {
        args.extend(["--key", key]);
    }
    args.extend(["--expires-in", expires_in, "--out", "signed.json"]);
    args
}

/// `verify` of ./signed.json against `pubkey` (one key, or a list as in GIG_INDEX_PUBKEYS).
fn verify_args(pubkey: &str) -> [&str; 5] {
    ["verify", "--signed", "signed.json", "--pubkey", pubkey]
}

/// A fresh working dir with a key, a one-server index and its signed form; returns the dir
/// and the public key.
fn signed_setup(expires_in: &str) -> (TempDir, String) {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path();
    let pubkey = ok(dir, &["keygen", "--out", "key"]).trim().to_owned();
    let image = format!("127.0.0.1:5000/echo:1.0@{DIGEST}");
    let mut add = add_args("echo", "1.0.0", &image, "/echo-mcp");
    add.extend(["--egress", "api.example.com"]);
    ok(dir, &add);
    ok(dir, &sign_args(&["key"], expires_in));
    (tmp, pubkey)
}

#[test]
fn keygen_sign_verify_round_trip() {
    let (tmp, pubkey) = signed_setup("30d");
    let dir = tmp.path();
    assert!(pubkey.starts_with("ed25519:"), "{pubkey}");
    assert_eq!(
        fs::metadata(dir.join("key")).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let out = ok(dir, &verify_args(&pubkey));
    assert!(out.starts_with("OK: index version "), "{out}");
    // GIG_INDEX_PUBKEYS-style list with another key first works too.
    let other = ok(dir, &["keygen", "--out", "other"]).trim().to_owned();
    ok(dir, &verify_args(&format!("{other},{pubkey}")));
    let show = ok(dir, &["show", "--signed", "signed.json"]);
    assert!(
        show.contains("1.0.0 (latest): 127.0.0.1:5000/echo:1.0@sha256:"),
        "{show}"
    );
    assert!(show.contains("egress   api.example.com"), "{show}");
    assert!(show.contains("NOT verified"), "{show}");
    let signed: Value =
        serde_json::from_slice(&fs::read(dir.join("signed.json")).unwrap()).unwrap();
    assert_eq!(
        signed["signed"]["servers"]["echo"]["versions"]["1.0.0"]["entrypoint"],
        "/echo-mcp"
    );
}

#[test]
fn show_to_a_reader_that_stops_early_is_no_failure() {
    let (tmp, _) = signed_setup("30d");
    let mut child = Command::new(env!("CARGO_BIN_EXE_registryctl"))
        .args(["show", "--signed", "signed.json"])
        .current_dir(tmp.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run registryctl");
    // As `| grep -q` does once it has its line: the reader goes away before the output ends.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn several_keys_sign_for_a_threshold() {
    let (tmp, a) = signed_setup("30d");
    let dir = tmp.path();
    let b = ok(dir, &["keygen", "--out", "key-b"]).trim().to_owned();
    let both = format!("{a},{b}");
    let mut verify = verify_args(&both).to_vec();
    verify.extend(["--threshold", "2"]);
    let e = fails(dir, &verify, &[]);
    assert!(
        e.contains("valid signatures from 1 trusted key(s); 2 required"),
        "{e}"
    );
    ok(dir, &sign_args(&["key", "key-b"], "1d"));
    let mut verify = verify_args(&a).to_vec();
    verify.extend(["--pubkey", &b, "--threshold", "2"]);
    let out = ok(dir, &verify);
    let signers = out.trim().rsplit("signed by ").next().unwrap();
    assert_eq!(
        signers.split(", ").count(),
        2,
        "two signers expected: {out}"
    );
}

#[test]
fn a_tampered_byte_fails_verification() {
    let (tmp, pubkey) = signed_setup("30d");
    let dir = tmp.path();
    let text = fs::read_to_string(dir.join("signed.json")).unwrap();
    assert!(text.contains("/echo-mcp"));
    fs::write(
        dir.join("signed.json"),
        text.replacen("/echo-mcp", "/echo-mcq", 1),
    )
    .unwrap();
    let e = fails(dir, &verify_args(&pubkey), &[]);
    assert!(e.contains("bad signature"), "{e}");
}

#[test]
fn a_wrong_key_is_refused() {
    let (tmp, _) = signed_setup("30d");
    let dir = tmp.path();
    let other = ok(dir, &["keygen", "--out", "other"]).trim().to_owned();
    let e = fails(dir, &verify_args(&other), &[]);
    assert!(e.contains("signed only by unknown keys"), "{e}");
    let e = fails(dir, &verify_args("ed25519:AAAA"), &[]);
    assert!(e.contains("32 bytes"), "{e}");
}

#[test]
fn an_expired_index_is_refused() {
    // Expires the second it is signed: already expired when verified.
    let (tmp, pubkey) = signed_setup("0s");
    let dir = tmp.path();
    let e = fails(dir, &verify_args(&pubkey), &[]);
    assert!(e.contains("expired at"), "{e}");
}

#[test]
fn a_key_file_readable_by_others_is_refused_and_keys_are_never_overwritten() {
    let (tmp, _) = signed_setup("30d");
    let dir = tmp.path();
    let before = fs::read(dir.join("key")).unwrap();
    let e = fails(dir, &["keygen", "--out", "key"], &[]);
    assert!(e.contains("never overwritten"), "{e}");
    assert_eq!(fs::read(dir.join("key")).unwrap(), before);

    fs::set_permissions(dir.join("key"), fs::Permissions::from_mode(0o644)).unwrap();
    let signed_before = fs::read(dir.join("signed.json")).unwrap();
    let e = fails(dir, &sign_args(&["key"], "1d"), &[]);
    assert!(e.contains("mode 0644") && e.contains("chmod 600"), "{e}");
    assert_eq!(fs::read(dir.join("signed.json")).unwrap(), signed_before);
}

#[test]
fn writes_never_follow_a_planted_temp_name() {
    let (tmp, _) = signed_setup("30d");
    let dir = tmp.path();
    let victim = dir.join("victim");
    fs::write(&victim, "precious").unwrap();
    // The old temp name was `.<name>.tmp<pid>`: plant it for the pids the next children are
    // likely to get, pointing at the victim.
    let next_pid: u32 = fs::read_to_string("/proc/sys/kernel/ns_last_pid")
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(1);
    for name in ["signed.json", "index.json"] {
        for pid in next_pid..next_pid + 2000 {
            let _ = std::os::unix::fs::symlink(&victim, dir.join(format!(".{name}.tmp{pid}")));
        }
    }
    ok(dir, &sign_args(&["key"], "1d"));
    let image = format!("127.0.0.1:5000/echo:1.0@{DIGEST}");
    ok(dir, &add_args("other", "1.0.0", &image, "/other"));
    assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
    for name in ["signed.json", "index.json"] {
        let meta = fs::symlink_metadata(dir.join(name)).unwrap();
        assert!(meta.file_type().is_file(), "{name} is not a regular file");
        assert_eq!(meta.permissions().mode() & 0o777, 0o644, "{name}");
    }
    assert!(
        fs::read_to_string(dir.join("signed.json"))
            .unwrap()
            .contains("\"signed\"")
    );
    // No temp file of ours is left behind.
    let left: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn expires_in_is_bounded_to_a_year() {
    let (tmp, _) = signed_setup("366d");
    let dir = tmp.path();
    let before = fs::read(dir.join("signed.json")).unwrap();
    for too_long in ["367d", "2years", "100000000years"] {
        let out = run(dir, &sign_args(&["key"], too_long), &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{too_long} was accepted");
        assert!(stderr.contains("366 days"), "{too_long}: {stderr}");
        assert_eq!(fs::read(dir.join("signed.json")).unwrap(), before);
    }
}

#[test]
fn a_threshold_in_the_key_list_is_enforced() {
    let (tmp, a) = signed_setup("30d");
    let dir = tmp.path();
    let b = ok(dir, &["keygen", "--out", "key-b"]).trim().to_owned();
    // As a gateway would read GIG_INDEX_PUBKEYS.
    let list = format!("threshold=2,{a},{b}");
    let e = fails(dir, &verify_args(&list), &[]);
    assert!(e.contains("2 required"), "{e}");
    ok(dir, &sign_args(&["key", "key-b"], "1d"));
    ok(dir, &verify_args(&list));
    let help = String::from_utf8(run(dir, &["sign", "--help"], &[]).stdout).unwrap();
    assert!(help.contains("threshold=N"), "{help}");
}

#[test]
fn bad_entries_are_refused_and_change_nothing() {
    let (tmp, _) = signed_setup("30d");
    let dir = tmp.path();
    let index_before = fs::read(dir.join("index.json")).unwrap();
    let image = format!("127.0.0.1:5000/echo:1.0@{DIGEST}");
    let base = |extra: &[&str]| -> Vec<String> {
        let mut v = add_args("echo", "2.0.0", &image, "/echo-mcp");
        v.extend(extra);
        v.into_iter().map(str::to_owned).collect()
    };
    let cases: Vec<(Vec<String>, &str)> = vec![
        (base(&["--egress", "*.com"]), "invalid host pattern"),
        (base(&["--env", "NO_PROXY=*"]), "set by the gateway"),
        (
            base(&["--credential", "{\"env\":\"K\"}"]),
            "not a credential JSON",
        ),
        (base(&["--entrypoint", "echo"]), "absolute path"),
        (base(&["--name", "my_echo"]), "invalid server name"),
        (base(&["--version", "1.0.0"]), "already in the index"),
    ];
    for (args, why) in cases {
        let args = dedup_overrides(args);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let e = fails(dir, &args, &[]);
        assert!(e.contains(why), "{args:?}: {e}");
        assert_eq!(fs::read(dir.join("index.json")).unwrap(), index_before);
    }
    let e = fails(
        dir,
        &dedup_overrides(base(&["--image", "127.0.0.1:5000/echo@sha256:abc"]))
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        &[],
    );
    assert!(e.contains("sha256:<64 lowercase hex>"), "{e}");
}

/// Keeps the last occurrence of single-valued options (`--name`, `--version`, `--image`,
/// `--entrypoint`) so a case can override the base arguments.
fn dedup_overrides(args: Vec<String>) -> Vec<String> {
    let single = ["--name", "--version", "--image", "--entrypoint"];
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < args.len() {
        if single.contains(&args[i].as_str()) && i + 1 < args.len() {
            let later = args[i + 2..].iter().any(|a| *a == args[i]);
            if !later {
                out.push(args[i].clone());
                out.push(args[i + 1].clone());
            }
            i += 2;
        } else {
            out.push(args[i].clone());
            i += 1;
        }
    }
    out
}

// ---- against a real registry (gig-oci's test registry: Debian's `docker-registry`) ---------

/// Pushes a one-layer image as `repo_tag` on `reg`; returns its name there and its manifest
/// digest.
fn push_tiny(reg: &TestRegistry, repo_tag: &str, auth: &RegistryAuth) -> (String, String) {
    let (repo, tag) = repo_tag.rsplit_once(':').expect("repo:tag");
    let pushed = rt().block_on(tiny_image().push(reg.host(), repo, Some(tag), auth));
    (format!("{}/{repo_tag}", reg.host()), pushed.to_string())
}

/// An image with one empty layer and `/echo-mcp` as its entrypoint.
fn tiny_image() -> BuiltImage {
    ImageBuilder::new()
        .layer(TestLayer::plain(vec![]))
        .entrypoint(&["/echo-mcp"])
        .build()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// `add` of an `/echo-mcp` server whose image is on the plain-HTTP test registry.
fn insecure_add_args<'a>(name: &'a str, version: &'a str, image: &'a str) -> Vec<&'a str> {
    let mut args = add_args(name, version, image, "/echo-mcp");
    args.push("--insecure-registry");
    args
}

fn recorded_image(dir: &Path, name: &str, version: &str) -> String {
    let index: Value = serde_json::from_slice(&fs::read(dir.join("index.json")).unwrap()).unwrap();
    index["servers"][name]["versions"][version]["image"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn add_pins_a_tag_to_the_pushed_manifest_digest() {
    let Some(reg) = TestRegistry::start() else {
        return;
    };
    let (image, pushed) = push_tiny(&reg, "tiny/echo:1.0", &RegistryAuth::Anonymous);
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path();
    let out = ok(dir, &insecure_add_args("echo", "1.0.0", &image));
    assert_eq!(out.trim(), format!("echo@1.0.0 = {image}@{pushed}"));
    assert_eq!(
        recorded_image(dir, "echo", "1.0.0"),
        format!("{image}@{pushed}")
    );

    // A tag that is not there: a clear error and an unchanged index.
    let before = fs::read(dir.join("index.json")).unwrap();
    let missing = format!("{}/tiny/echo:nope", reg.host());
    let e = fails(dir, &insecure_add_args("echo", "2.0.0", &missing), &[]);
    assert!(e.contains("cannot resolve"), "{e}");
    assert_eq!(fs::read(dir.join("index.json")).unwrap(), before);
}

#[test]
fn add_pins_a_manifest_list_by_its_own_digest() {
    let Some(reg) = TestRegistry::start() else {
        return;
    };
    // An OCI index over one linux/amd64 image.
    let single = tiny_image();
    let index = BuiltIndex::new(vec![single.clone()], false);
    let pushed = rt().block_on(index.push(
        reg.host(),
        "tiny/multi",
        Some("1.0"),
        &RegistryAuth::Anonymous,
    ));

    let tmp = TempDir::new().unwrap();
    let dir = tmp.path();
    let image = format!("{}/tiny/multi:1.0", reg.host());
    ok(dir, &insecure_add_args("multi", "1.0.0", &image));
    let recorded = recorded_image(dir, "multi", "1.0.0");
    assert_eq!(recorded, format!("{image}@{pushed}"));
    assert_ne!(pushed, single.manifest_digest);
}

#[test]
fn add_authenticates_with_a_password_from_env_or_file_never_argv() {
    let Some(reg) = TestRegistry::start_with_basic_auth("ci", "s3cret-pw") else {
        return;
    };
    let auth = RegistryAuth::basic("ci", "s3cret-pw");
    let (image, pushed) = push_tiny(&reg, "private/echo:1.0", &auth);
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path();
    let add = |version: &str, extra: &[&str], env: &[(&str, &str)]| {
        let mut args = insecure_add_args("echo", version, &image);
        args.extend_from_slice(extra);
        run(dir, &args, env)
    };
    let anonymous = add("1.0.0", &[], &[]);
    assert_eq!(anonymous.status.code(), Some(1));

    let by_env = add(
        "1.0.0",
        &["--username", "ci", "--password-env", "REG_PW"],
        &[("REG_PW", "s3cret-pw")],
    );
    assert!(
        by_env.status.success(),
        "{}",
        String::from_utf8_lossy(&by_env.stderr)
    );
    assert_eq!(
        recorded_image(dir, "echo", "1.0.0"),
        format!("{image}@{pushed}")
    );

    fs::write(dir.join("pw"), "s3cret-pw\n").unwrap();
    let by_file = add("1.0.1", &["--username", "ci", "--password-file", "pw"], &[]);
    assert!(
        by_file.status.success(),
        "{}",
        String::from_utf8_lossy(&by_file.stderr)
    );

    let wrong = add(
        "1.0.2",
        &["--username", "ci", "--password-env", "REG_PW"],
        &[("REG_PW", "nope")],
    );
    assert_eq!(wrong.status.code(), Some(1));
    let no_pw = add("1.0.2", &["--username", "ci"], &[]);
    let stderr = String::from_utf8_lossy(&no_pw.stderr);
    assert!(
        stderr.contains("--password-env VAR or --password-file FILE"),
        "{stderr}"
    );
    // There is no way to put the password on the command line.
    let argv = add(
        "1.0.2",
        &["--username", "ci", "--password", "s3cret-pw"],
        &[],
    );
    assert_eq!(argv.status.code(), Some(2));
}

#[test]
fn import_reads_server_json_and_pins_its_oci_package() {
    let Some(reg) = TestRegistry::start() else {
        return;
    };
    let (image, pushed) = push_tiny(&reg, "acme/weather-mcp:1.4.2", &RegistryAuth::Anonymous);
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path();
    let server_json = json!({
        "$schema": "https://static.modelcontextprotocol.io/schemas/2025-12-11/server.schema.json",
        "name": "io.github.acme/weather",
        "description": "Weather forecasts",
        "version": "1.4.2",
        "packages": [{
            "registryType": "oci",
            "identifier": image,
            "transport": {"type": "stdio"},
            "environmentVariables": [
                {"name": "WEATHER_API_KEY", "isRequired": true, "isSecret": true},
                {"name": "WEATHER_UNITS", "default": "metric"}
            ]
        }]
    });
    fs::write(dir.join("server.json"), server_json.to_string()).unwrap();
    let base = [
        "import",
        "--index",
        "index.json",
        "--server-json",
        "server.json",
        "--entrypoint",
        "/usr/bin/weather-mcp",
        "--insecure-registry",
        "--egress",
        "api.weather.example",
    ];
    let e = fails(dir, &base, &[]);
    assert!(e.contains("declares secret(s) WEATHER_API_KEY"), "{e}");
    assert!(!dir.join("index.json").exists());

    let credential = r#"{"env":"WEATHER_API_KEY","hosts":["api.weather.example"],"inject":{"type":"header","name":"X-Api-Key","template":"{}"}}"#;
    let mut args = base.to_vec();
    args.extend(["--credential", credential]);
    let out = ok(dir, &args);
    assert!(out.starts_with("weather@1.4.2 = "), "{out}");
    let index: Value = serde_json::from_slice(&fs::read(dir.join("index.json")).unwrap()).unwrap();
    let entry = &index["servers"]["weather"]["versions"]["1.4.2"];
    assert_eq!(entry["image"], format!("{image}@{pushed}"));
    assert_eq!(entry["env"], json!({"WEATHER_UNITS": "metric"}));
    assert_eq!(entry["credentials"][0]["env"], "WEATHER_API_KEY");
    assert_eq!(
        index["servers"]["weather"]["description"],
        "Weather forecasts"
    );
}
