//! The real sandbox end to end (bubblewrap + bootstrap + seccomp): the escape matrix, stdio
//! pass-through, and the declared environment. Needs bubblewrap; on CI (`CI` set) or with
//! `GIG_REQUIRE_SANDBOX=1` a missing bubblewrap fails the tests instead of skipping them.

// Tests read their own switches (CI, GIG_REQUIRE_SANDBOX) and hand the environment to children.
#![allow(clippy::disallowed_methods)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;

use gig_policy::ResourceLimits;
use gig_sandbox::{Bind, BwrapSpawner, CgroupSupport, Sandbox, SandboxSpec, Spawner, SystemLayout};

/// None = skip (allowed only off CI); panics where the sandbox is required.
fn spawner() -> Option<BwrapSpawner> {
    match BwrapSpawner::detect() {
        Ok(s) => Some(s),
        Err(e) => {
            let required = std::env::var_os("CI").is_some()
                || std::env::var("GIG_REQUIRE_SANDBOX").is_ok_and(|v| v == "1");
            assert!(!required, "sandbox required but unavailable: {e}");
            eprintln!("SKIPPED (set GIG_REQUIRE_SANDBOX=1 to fail instead): {e}");
            None
        }
    }
}

/// Builds `package` as a static binary (it must need nothing from the sandbox's filesystem)
/// and returns the path of `name`. Static linking goes to its own target dir with an explicit
/// target, so the flag never reaches host artefacts (proc-macros) or the rest of the workspace.
fn workspace_bin(package: &str, name: &str) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let target_dir = root.join("target/static");
    let triple = format!("{}-unknown-linux-gnu", std::env::consts::ARCH);
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "-q",
            "-p",
            package,
            "--target",
            &triple,
            "--target-dir",
        ])
        .arg(&target_dir)
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .current_dir(&root)
        .status()
        .expect("running cargo build");
    assert!(status.success(), "building {package}");
    world_readable_copy(&target_dir.join(triple).join("debug").join(name))
}

/// Bubblewrap runs as `nobody` here, so what it binds must be reachable by `nobody` even when
/// the checkout lives under a private directory such as /root: copy it out to a 0755 dir.
fn world_readable_copy(built: &std::path::Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("gig-sandbox-test-bins-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let copy = dir.join(built.file_name().unwrap());
    // Tests run in parallel: each copy stages under its own name, then renames atomically.
    static COPIES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = COPIES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let staging = dir.join(format!(
        ".{}.{n}.tmp",
        built.file_name().unwrap().to_string_lossy()
    ));
    std::fs::copy(built, &staging).unwrap();
    std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::rename(&staging, &copy).unwrap();
    copy
}

fn spec(program: &str) -> SandboxSpec {
    let mut spec = SandboxSpec::new(program, workspace_bin("gig-bootstrap", "bootstrap"));
    spec.layout = SystemLayout::detect();
    spec
}

fn run(sandbox: &mut Sandbox, stdin: &[u8]) -> (i32, String, String) {
    let mut input = sandbox.child.stdin.take().unwrap();
    input.write_all(stdin).unwrap();
    drop(input);
    let (mut out, mut err) = (String::new(), String::new());
    sandbox
        .child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    sandbox
        .child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = sandbox.wait().unwrap();
    (status.code().unwrap_or(-1), out, err)
}

#[test]
fn escape_matrix_every_attempt_is_blocked() {
    let Some(mut spawner) = spawner() else { return };
    // Run bubblewrap as host `nobody`: the sandbox's uid then maps to an unprivileged host user,
    // so RLIMIT_NPROC binds (it never binds host root).
    spawner.host_ids = Some((65534, 65534));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let (key, value) = std::env::vars()
        .find(|(k, _)| k == "CARGO_MANIFEST_DIR" || k == "PATH")
        .unwrap();
    let marker = format!("{key}={value}");

    let mut spec = spec("/run/gig/escape-probe");
    spec.ro_binds.push(Bind {
        host: workspace_bin("gig-escape-probe", "escape-probe"),
        sandbox: "/run/gig/escape-probe".into(),
    });
    spec.max_processes = Some(64);
    // The memory hog must be stopped by the cgroup where the host has one, by RLIMIT_DATA
    // otherwise; with a cgroup, RLIMIT_DATA stays off so the test shows the cgroup works.
    let cgroups = CgroupSupport::detect("gig-test");
    println!("cgroups: {}", cgroups.describe());
    let has_memory_cgroup = match &cgroups {
        CgroupSupport::V2 { .. } => true,
        CgroupSupport::V1 { memory, .. } => memory.is_some(),
        CgroupSupport::Unavailable { .. } => false,
    };
    if !has_memory_cgroup {
        spec.max_data_bytes = Some(256 << 20);
    }
    let cgroup = cgroups
        .create(
            &format!("matrix-{}", std::process::id()),
            &ResourceLimits {
                memory_bytes: Some(256 << 20),
                max_processes: Some(64),
                cpu_millis: Some(1000),
            },
        )
        .unwrap();
    spec.args = vec![
        "--marker-reversed".into(),
        marker.chars().rev().collect::<String>().into(),
        "--host-pid".into(),
        std::process::id().to_string().into(),
        "--port".into(),
        port.to_string().into(),
    ];
    let mut sandbox = spawner.spawn(&spec, true).unwrap();
    let pid = sandbox.child_pid().unwrap();
    // While held at --block-fd: what the host shows of bubblewrap must hold nothing of its env.
    let bwrap = sandbox.child.id();
    let environ = std::fs::read(format!("/proc/{bwrap}/environ")).unwrap();
    let cmdline =
        String::from_utf8_lossy(&std::fs::read(format!("/proc/{bwrap}/cmdline")).unwrap())
            .into_owned();
    assert!(
        environ.is_empty(),
        "bwrap started with a non-empty environment"
    );
    assert!(
        !cmdline.contains("--setenv") && !cmdline.contains(&marker),
        "bwrap argv leaks: {cmdline}"
    );
    assert!(pid > 1);
    cgroup.add(bwrap).unwrap();
    cgroup.add(pid).unwrap();
    sandbox.release().unwrap();
    let (code, out, err) = run(&mut sandbox, b"");
    assert_eq!(code, 0, "probe failed: {err}");
    assert!(
        listener.accept().is_err(),
        "the sandbox reached the host's loopback listener"
    );

    let rows: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let escaped: Vec<&serde_json::Value> =
        rows.iter().filter(|r| r["outcome"] != "blocked").collect();
    println!("\n{:<44} {:<8} detail", "attempt", "outcome");
    for r in &rows {
        println!(
            "{:<44} {:<8} {}",
            r["attempt"].as_str().unwrap(),
            r["outcome"].as_str().unwrap(),
            r["detail"].as_str().unwrap()
        );
    }
    println!(
        "escape matrix: {} tried, {} blocked, {} escaped",
        rows.len(),
        rows.len() - escaped.len(),
        escaped.len()
    );
    assert!(rows.len() >= 30, "only {} attempts ran", rows.len());
    if has_memory_cgroup {
        let hog = rows
            .iter()
            .find(|r| r["attempt"] == "memory hog (2 GiB)")
            .unwrap();
        assert_eq!(
            hog["detail"], "hog killed by signal 9",
            "the memory cgroup did not stop the hog"
        );
        assert!(cgroup.memory_limit_hit());
    }
    assert!(escaped.is_empty(), "escapes: {escaped:#?}");
}

#[test]
fn stdio_passes_through_a_normal_program() {
    let Some(spawner) = spawner() else { return };
    let mut sandbox = spawner.spawn(&spec("/usr/bin/cat"), false).unwrap();
    let (code, out, err) = run(&mut sandbox, b"hello over stdio\n");
    assert_eq!(
        (code, out.as_str()),
        (0, "hello over stdio\n"),
        "stderr: {err}"
    );
}

#[test]
fn only_declared_variables_reach_the_server() {
    let Some(spawner) = spawner() else { return };
    let mut spec = spec("/usr/bin/env");
    spec.env.insert("GREETING".into(), "hi".into());
    let mut sandbox = spawner.spawn(&spec, false).unwrap();
    let (code, out, _) = run(&mut sandbox, b"");
    // bubblewrap itself sets PWD after --chdir; nothing else besides the declared variable.
    assert_eq!((code, out.as_str()), (0, "GREETING=hi\nPWD=/\n"));
}

#[test]
fn exit_status_is_the_servers() {
    let Some(spawner) = spawner() else { return };
    let mut spec = spec("/bin/sh");
    spec.args = vec!["-c".into(), "exit 7".into()];
    let mut sandbox = spawner.spawn(&spec, false).unwrap();
    assert_eq!(run(&mut sandbox, b"").0, 7);
}

#[test]
fn unbound_program_is_refused_before_spawning() {
    let Some(spawner) = spawner() else { return };
    let err = spawner.spawn(&spec("/root/server"), false).err().unwrap();
    assert!(err.to_string().contains("not inside any bind"), "{err}");
}
