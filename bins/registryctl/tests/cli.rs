//! Drives the real `registryctl` binary; `add` and `import` resolve tags against a real
//! CNCF distribution registry (Debian's `docker-registry`) started on loopback per test.

// Tests read their own switches (CI, GIG_REQUIRE_SANDBOX) and hand the environment to children.
#![allow(clippy::disallowed_methods)]

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::manifest::{
    IMAGE_CONFIG_MEDIA_TYPE, IMAGE_LAYER_MEDIA_TYPE, OCI_IMAGE_INDEX_MEDIA_TYPE,
    OCI_IMAGE_MEDIA_TYPE, OciImageManifest,
};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
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

/// A working dir with a key, a one-server index and its signed form; returns the public key.
fn signed_setup(dir: &Path, expires_in: &str) -> String {
    let pubkey = ok(dir, &["keygen", "--out", "key"]).trim().to_owned();
    let image = format!("127.0.0.1:5000/echo:1.0@{DIGEST}");
    ok(
        dir,
        &[
            "add",
            "--index",
            "index.json",
            "--name",
            "echo",
            "--version",
            "1.0.0",
            "--image",
            &image,
            "--entrypoint",
            "/echo-mcp",
            "--egress",
            "api.example.com",
        ],
    );
    ok(
        dir,
        &[
            "sign",
            "--index",
            "index.json",
            "--key",
            "key",
            "--expires-in",
            expires_in,
            "--out",
            "signed.json",
        ],
    );
    pubkey
}

#[test]
fn keygen_sign_verify_round_trip() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path();
    let pubkey = signed_setup(dir, "30d");
    assert!(pubkey.starts_with("ed25519:"), "{pubkey}");
    assert_eq!(
        fs::metadata(dir.join("key")).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let out = ok(
        dir,
        &["verify", "--signed", "signed.json", "--pubkey", &pubkey],
    );
    assert!(out.starts_with("OK: index version "), "{out}");
    // GIG_INDEX_PUBKEYS-style list with another key first works too.
    let other = ok(dir, &["keygen", "--out", "other"]).trim().to_owned();
    ok(
        dir,
        &[
            "verify",
            "--signed",
            "signed.json",
            "--pubkey",
            &format!("{other},{pubkey}"),
        ],
    );
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
fn several_keys_sign_for_a_threshold() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path();
    let a = signed_setup(dir, "30d");
    let b = ok(dir, &["keygen", "--out", "key-b"]).trim().to_owned();
    let both = format!("{a},{b}");
    let e = fails(
        dir,
        &[
            "verify",
            "--signed",
            "signed.json",
            "--pubkey",
            &both,
            "--threshold",
            "2",
        ],
        &[],
    );
    assert!(
        e.contains("valid signatures from 1 trusted key(s); 2 required"),
        "{e}"
    );
    ok(
        dir,
        &[
            "sign",
            "--index",
            "index.json",
            "--key",
            "key",
            "--key",
            "key-b",
            "--expires-in",
            "1d",
            "--out",
            "signed.json",
        ],
    );
    let out = ok(
        dir,
        &[
            "verify",
            "--signed",
            "signed.json",
            "--pubkey",
            &a,
            "--pubkey",
            &b,
            "--threshold",
            "2",
        ],
    );
    let signers = out.trim().rsplit("signed by ").next().unwrap();
    assert_eq!(
        signers.split(", ").count(),
        2,
        "two signers expected: {out}"
    );
}

#[test]
fn a_tampered_byte_fails_verification() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path();
    let pubkey = signed_setup(dir, "30d");
    let text = fs::read_to_string(dir.join("signed.json")).unwrap();
    assert!(text.contains("/echo-mcp"));
    fs::write(
        dir.join("signed.json"),
        text.replacen("/echo-mcp", "/echo-mcq", 1),
    )
    .unwrap();
    let e = fails(
        dir,
        &["verify", "--signed", "signed.json", "--pubkey", &pubkey],
        &[],
    );
    assert!(e.contains("bad signature"), "{e}");
}

#[test]
fn a_wrong_key_is_refused() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path();
    signed_setup(dir, "30d");
    let other = ok(dir, &["keygen", "--out", "other"]).trim().to_owned();
    let e = fails(
        dir,
        &["verify", "--signed", "signed.json", "--pubkey", &other],
        &[],
    );
    assert!(e.contains("signed only by unknown keys"), "{e}");
    let e = fails(
        dir,
        &[
            "verify",
            "--signed",
            "signed.json",
            "--pubkey",
            "ed25519:AAAA",
        ],
        &[],
    );
    assert!(e.contains("32 bytes"), "{e}");
}

#[test]
fn an_expired_index_is_refused() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path();
    // Expires the second it is signed: already expired when verified.
    let pubkey = signed_setup(dir, "0s");
    let e = fails(
        dir,
        &["verify", "--signed", "signed.json", "--pubkey", &pubkey],
        &[],
    );
    assert!(e.contains("expired at"), "{e}");
}

#[test]
fn a_key_file_readable_by_others_is_refused_and_keys_are_never_overwritten() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path();
    signed_setup(dir, "30d");
    let before = fs::read(dir.join("key")).unwrap();
    let e = fails(dir, &["keygen", "--out", "key"], &[]);
    assert!(e.contains("never overwritten"), "{e}");
    assert_eq!(fs::read(dir.join("key")).unwrap(), before);

    fs::set_permissions(dir.join("key"), fs::Permissions::from_mode(0o644)).unwrap();
    let signed_before = fs::read(dir.join("signed.json")).unwrap();
    let e = fails(
        dir,
        &[
            "sign",
            "--index",
            "index.json",
            "--key",
            "key",
            "--expires-in",
            "1d",
            "--out",
            "signed.json",
        ],
        &[],
    );
    assert!(e.contains("mode 0644") && e.contains("chmod 600"), "{e}");
    assert_eq!(fs::read(dir.join("signed.json")).unwrap(), signed_before);
}

#[test]
fn writes_never_follow_a_planted_temp_name() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path();
    signed_setup(dir, "30d");
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
    ok(
        dir,
        &[
            "sign",
            "--index",
            "index.json",
            "--key",
            "key",
            "--expires-in",
            "1d",
            "--out",
            "signed.json",
        ],
    );
    let image = format!("127.0.0.1:5000/echo:1.0@{DIGEST}");
    ok(
        dir,
        &[
            "add",
            "--index",
            "index.json",
            "--name",
            "other",
            "--version",
            "1.0.0",
            "--image",
            &image,
            "--entrypoint",
            "/other",
        ],
    );
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
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path();
    signed_setup(dir, "366d");
    let before = fs::read(dir.join("signed.json")).unwrap();
    for too_long in ["367d", "2years", "100000000years"] {
        let out = run(
            dir,
            &[
                "sign",
                "--index",
                "index.json",
                "--key",
                "key",
                "--expires-in",
                too_long,
                "--out",
                "signed.json",
            ],
            &[],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{too_long} was accepted");
        assert!(stderr.contains("366 days"), "{too_long}: {stderr}");
        assert_eq!(fs::read(dir.join("signed.json")).unwrap(), before);
    }
}

#[test]
fn a_threshold_in_the_key_list_is_enforced() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path();
    let a = signed_setup(dir, "30d");
    let b = ok(dir, &["keygen", "--out", "key-b"]).trim().to_owned();
    // As a gateway would read GIG_INDEX_PUBKEYS.
    let list = format!("threshold=2,{a},{b}");
    let e = fails(
        dir,
        &["verify", "--signed", "signed.json", "--pubkey", &list],
        &[],
    );
    assert!(e.contains("2 required"), "{e}");
    ok(
        dir,
        &[
            "sign",
            "--index",
            "index.json",
            "--key",
            "key",
            "--key",
            "key-b",
            "--expires-in",
            "1d",
            "--out",
            "signed.json",
        ],
    );
    ok(
        dir,
        &["verify", "--signed", "signed.json", "--pubkey", &list],
    );
    let help = String::from_utf8(run(dir, &["sign", "--help"], &[]).stdout).unwrap();
    assert!(help.contains("threshold=N"), "{help}");
}

#[test]
fn bad_entries_are_refused_and_change_nothing() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path();
    signed_setup(dir, "30d");
    let index_before = fs::read(dir.join("index.json")).unwrap();
    let image = format!("127.0.0.1:5000/echo:1.0@{DIGEST}");
    let base = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = [
            "add",
            "--index",
            "index.json",
            "--name",
            "echo",
            "--version",
            "2.0.0",
            "--image",
            &image,
            "--entrypoint",
            "/echo-mcp",
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        v.extend(extra.iter().map(ToString::to_string));
        v
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

// ---- against a real registry --------------------------------------------------------------

struct Registry {
    child: Child,
    addr: String,
    _dir: TempDir,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The tool at `path`, or `None` (skip) when it is missing — a failure under GIG_REQUIRE_SANDBOX=1.
fn required_tool(path: &str, package: &str) -> Option<PathBuf> {
    let path = PathBuf::from(path);
    if path.exists() {
        return Some(path);
    }
    let msg = format!(
        "{} is not installed (apt-get install -y {package})",
        path.display()
    );
    if std::env::var("GIG_REQUIRE_SANDBOX").as_deref() == Ok("1") {
        panic!("{msg}");
    }
    eprintln!("SKIP: {msg}");
    None
}

/// Starts `docker-registry` on a free loopback port; with `htpasswd`, basic auth for user `ci`.
fn start_registry(htpasswd_password: Option<&str>) -> Option<Registry> {
    let bin = required_tool("/usr/bin/docker-registry", "docker-registry")?;
    let dir = TempDir::new().unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut config = format!(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
        dir.path().join("storage").display()
    );
    if let Some(pw) = htpasswd_password {
        let htpasswd = required_tool("/usr/bin/htpasswd", "apache2-utils")?;
        let out = Command::new(htpasswd)
            .args(["-Bbn", "ci", pw])
            .output()
            .expect("run htpasswd");
        assert!(out.status.success());
        fs::write(dir.path().join("htpasswd"), out.stdout).unwrap();
        config.push_str(&format!(
            "auth:\n  htpasswd:\n    realm: test\n    path: {}\n",
            dir.path().join("htpasswd").display()
        ));
    }
    fs::write(dir.path().join("config.yml"), config).unwrap();
    let child = Command::new(bin)
        .arg("serve")
        .arg(dir.path().join("config.yml"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start docker-registry");
    let mut reg = Registry {
        child,
        addr,
        _dir: dir,
    };
    // Readiness wait, not a timing assertion: generous, and fails loudly if the server died.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = reg.child.try_wait().unwrap() {
            panic!("docker-registry exited at start: {status}");
        }
        if let Ok(mut s) = TcpStream::connect(&reg.addr) {
            let _ = write!(s, "GET /v2/ HTTP/1.0\r\nHost: {}\r\n\r\n", reg.addr);
            let mut head = String::new();
            let _ = s.read_to_string(&mut head);
            if head.starts_with("HTTP/1.") {
                return Some(reg);
            }
        }
        assert!(Instant::now() < deadline, "docker-registry did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn sha256(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(b)))
}

/// Pushes a one-layer image as `repo:tag` and returns the digest of the manifest bytes we sent.
async fn push_image(client: &Client, reference: &Reference, auth: &RegistryAuth) -> String {
    client
        .store_auth_if_needed(reference.resolve_registry(), auth)
        .await;
    // An empty tar archive is two zero blocks.
    let layer = ImageLayer::new(vec![0u8; 1024], IMAGE_LAYER_MEDIA_TYPE.into(), None);
    let config_json = json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [sha256(&layer.data)]},
        "config": {"Entrypoint": ["/echo-mcp"]}
    });
    let config = Config::new(
        serde_json::to_vec(&config_json).unwrap(),
        IMAGE_CONFIG_MEDIA_TYPE.into(),
        None,
    );
    let manifest = OciImageManifest::build(std::slice::from_ref(&layer), &config, None);
    let manifest_bytes = serde_json::to_vec(&manifest).unwrap();
    client
        .push_blob(reference, layer.data.clone(), &manifest.layers[0].digest)
        .await
        .expect("push layer");
    client
        .push_blob(reference, config.data.clone(), &manifest.config.digest)
        .await
        .expect("push config");
    client
        .push_manifest_raw(
            reference,
            manifest_bytes.clone(),
            OCI_IMAGE_MEDIA_TYPE.parse().unwrap(),
        )
        .await
        .expect("push manifest");
    sha256(&manifest_bytes)
}

fn http_client() -> Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        ..Default::default()
    })
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
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
    let Some(reg) = start_registry(None) else {
        return;
    };
    let reference: Reference = format!("{}/tiny/echo:1.0", reg.addr).parse().unwrap();
    let pushed = rt().block_on(push_image(
        &http_client(),
        &reference,
        &RegistryAuth::Anonymous,
    ));
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path();
    let image = format!("{}/tiny/echo:1.0", reg.addr);
    let out = ok(
        dir,
        &[
            "add",
            "--index",
            "index.json",
            "--name",
            "echo",
            "--version",
            "1.0.0",
            "--image",
            &image,
            "--entrypoint",
            "/echo-mcp",
            "--insecure-registry",
        ],
    );
    assert_eq!(out.trim(), format!("echo@1.0.0 = {image}@{pushed}"));
    assert_eq!(
        recorded_image(dir, "echo", "1.0.0"),
        format!("{image}@{pushed}")
    );

    // A tag that is not there: a clear error and an unchanged index.
    let before = fs::read(dir.join("index.json")).unwrap();
    let missing = format!("{}/tiny/echo:nope", reg.addr);
    let e = fails(
        dir,
        &[
            "add",
            "--index",
            "index.json",
            "--name",
            "echo",
            "--version",
            "2.0.0",
            "--image",
            &missing,
            "--entrypoint",
            "/echo-mcp",
            "--insecure-registry",
        ],
        &[],
    );
    assert!(e.contains("cannot resolve"), "{e}");
    assert_eq!(fs::read(dir.join("index.json")).unwrap(), before);
}

#[test]
fn add_pins_a_manifest_list_by_its_own_digest() {
    let Some(reg) = start_registry(None) else {
        return;
    };
    let client = http_client();
    let rt = rt();
    let single: Reference = format!("{}/tiny/multi:amd64", reg.addr).parse().unwrap();
    let inner = rt.block_on(push_image(&client, &single, &RegistryAuth::Anonymous));
    let inner_size = {
        // The size field of an index entry is the manifest's byte length; fetch it back.
        let (bytes, _) = rt
            .block_on(client.pull_manifest_raw(
                &single,
                &RegistryAuth::Anonymous,
                &[OCI_IMAGE_MEDIA_TYPE],
            ))
            .unwrap();
        bytes.len()
    };
    let index_bytes = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_IMAGE_INDEX_MEDIA_TYPE,
        "manifests": [{
            "mediaType": OCI_IMAGE_MEDIA_TYPE, "digest": inner, "size": inner_size,
            "platform": {"architecture": "amd64", "os": "linux"}
        }]
    }))
    .unwrap();
    let multi: Reference = format!("{}/tiny/multi:1.0", reg.addr).parse().unwrap();
    rt.block_on(client.push_manifest_raw(
        &multi,
        index_bytes.clone(),
        OCI_IMAGE_INDEX_MEDIA_TYPE.parse().unwrap(),
    ))
    .unwrap();

    let tmp = TempDir::new().unwrap();
    let dir = tmp.path();
    let image = format!("{}/tiny/multi:1.0", reg.addr);
    ok(
        dir,
        &[
            "add",
            "--index",
            "index.json",
            "--name",
            "multi",
            "--version",
            "1.0.0",
            "--image",
            &image,
            "--entrypoint",
            "/echo-mcp",
            "--insecure-registry",
        ],
    );
    let recorded = recorded_image(dir, "multi", "1.0.0");
    assert_eq!(recorded, format!("{image}@{}", sha256(&index_bytes)));
    assert_ne!(sha256(&index_bytes), inner);
}

#[test]
fn add_authenticates_with_a_password_from_env_or_file_never_argv() {
    let Some(reg) = start_registry(Some("s3cret-pw")) else {
        return;
    };
    let reference: Reference = format!("{}/private/echo:1.0", reg.addr).parse().unwrap();
    let auth = RegistryAuth::Basic("ci".into(), "s3cret-pw".into());
    let pushed = rt().block_on(push_image(&http_client(), &reference, &auth));
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path();
    let image = format!("{}/private/echo:1.0", reg.addr);
    let add = |version: &str, extra: &[&str], env: &[(&str, &str)]| {
        let mut args = vec![
            "add",
            "--index",
            "index.json",
            "--name",
            "echo",
            "--version",
            version,
            "--image",
            &image,
            "--entrypoint",
            "/echo-mcp",
            "--insecure-registry",
        ];
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
    let Some(reg) = start_registry(None) else {
        return;
    };
    let reference: Reference = format!("{}/acme/weather-mcp:1.4.2", reg.addr)
        .parse()
        .unwrap();
    let pushed = rt().block_on(push_image(
        &http_client(),
        &reference,
        &RegistryAuth::Anonymous,
    ));
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path();
    let server_json = json!({
        "$schema": "https://static.modelcontextprotocol.io/schemas/2025-12-11/server.schema.json",
        "name": "io.github.acme/weather",
        "description": "Weather forecasts",
        "version": "1.4.2",
        "packages": [{
            "registryType": "oci",
            "identifier": format!("{}/acme/weather-mcp:1.4.2", reg.addr),
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
    assert_eq!(
        entry["image"],
        format!("{}/acme/weather-mcp:1.4.2@{pushed}", reg.addr)
    );
    assert_eq!(entry["env"], json!({"WEATHER_UNITS": "metric"}));
    assert_eq!(entry["credentials"][0]["env"], "WEATHER_API_KEY");
    assert_eq!(
        index["servers"]["weather"]["description"],
        "Weather forecasts"
    );
}
