//! A sandbox lives as long as its connection, not as long as the thread that started it.
//!
//! bubblewrap's `--die-with-parent` is tied to the thread that forked it; tokio retires idle
//! blocking-pool threads (after 10 s by default), so a sandbox spawned from that pool died 10 s
//! into its life. This runtime retires them after 50 ms, so the test shows the bug in well under
//! a second. Needs root and bubblewrap; required on CI.

// Tests read their own switches (CI, GIG_REQUIRE_SANDBOX) and hand the environment to children.
#![allow(clippy::disallowed_methods)]

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;

use gig_config::{DEFAULT_LIMITS, SandboxPolicy, StdioCommand};
use gig_runtime::{ProgramSource, SandboxLaunch, SandboxRuntime};

fn required() -> bool {
    std::env::var_os("CI").is_some() || std::env::var("GIG_REQUIRE_SANDBOX").is_ok_and(|v| v == "1")
}

#[test]
fn a_sandbox_outlives_the_blocking_thread_that_helped_start_it() {
    let spawner = match gig_sandbox::BwrapSpawner::detect() {
        Ok(mut s) => {
            s.host_ids = Some((65534, 65534));
            s
        }
        Err(e) => {
            assert!(!required(), "sandbox required but unavailable: {e}");
            eprintln!("SKIPPED: {e}");
            return;
        }
    };
    // bubblewrap runs as nobody: bootstrap must sit somewhere nobody can reach.
    let dir = tempfile::Builder::new()
        .prefix("gig-lifetime-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bootstrap = dir.path().join("bootstrap");
    std::fs::copy(gig_test_util::workspace_bin("bootstrap"), &bootstrap).unwrap();
    std::fs::set_permissions(&bootstrap, std::fs::Permissions::from_mode(0o755)).unwrap();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_keep_alive(Duration::from_millis(50))
        .build()
        .unwrap();
    rt.block_on(async {
        let runtime = Arc::new(SandboxRuntime::new(
            Arc::new(spawner),
            bootstrap,
            "gigmcp-test",
        ));
        let launch = SandboxLaunch {
            command: StdioCommand {
                program: "/usr/bin/cat".into(),
                args: vec![],
                env: Default::default(),
                cwd: None,
            },
            policy: SandboxPolicy {
                bind_ro: vec![],
                limits: DEFAULT_LIMITS,
                egress: Default::default(),
                instances: Default::default(),
            },
            source: ProgramSource::HostPath,
        };
        let mut running = runtime.start("lifetime", &launch).await.unwrap();
        // Long enough for every blocking-pool thread used during the start to be retired.
        tokio::time::sleep(Duration::from_millis(600)).await;
        let child = &mut running.sandbox.child;
        assert!(
            child.try_wait().unwrap().is_none(),
            "the sandbox died with its helper thread"
        );
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"still here\n").unwrap();
        drop(stdin);
        let mut out = String::new();
        std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut out).unwrap();
        assert_eq!(out, "still here\n");
    });
}
