use super::*;

fn sample() -> SandboxSpec {
    let mut spec = SandboxSpec::new("/srv/server/bin/echo-mcp", "/opt/gig/bootstrap");
    spec.args = vec!["--stdio".into()];
    spec.env.insert("RUST_LOG".into(), "info".into());
    spec.env
        .insert("API_KEY".into(), "GIG_PLACEHOLDER_1".into());
    spec.ro_binds.push(Bind {
        host: "/var/lib/gig/blobs/ab12".into(),
        sandbox: "/srv/server".into(),
    });
    spec.max_processes = Some(64);
    spec
}

fn fds() -> Fds {
    Fds {
        seccomp: 10,
        info: Some(11),
        block: Some(12),
    }
}

fn strs(v: &[OsString]) -> Vec<&str> {
    v.iter().map(|s| s.to_str().unwrap()).collect()
}

fn pos(argv: &[&str], window: &[&str]) -> usize {
    argv.windows(window.len())
        .position(|w| w == window)
        .unwrap_or_else(|| panic!("{window:?} missing in {argv:?}"))
}

#[test]
fn sample_argv_is_exactly_this() {
    let cmd = bwrap_command(&sample(), fds());
    let expected = "--unshare-all --unshare-user --disable-userns --die-with-parent --new-session \
        --as-pid-1 --uid 65534 --gid 65534 --hostname sandbox --cap-drop ALL --clearenv \
        --setenv API_KEY GIG_PLACEHOLDER_1 --setenv RUST_LOG info --ro-bind /usr /usr \
        --symlink usr/lib /lib --symlink usr/lib64 /lib64 --symlink usr/bin /bin \
        --symlink usr/sbin /sbin --ro-bind-try /etc/ssl/certs /etc/ssl/certs \
        --ro-bind-try /etc/ca-certificates /etc/ca-certificates \
        --proc /proc --dev /dev --size 67108864 --tmpfs /tmp \
        --ro-bind /opt/gig/bootstrap /run/gig/bootstrap --ro-bind /var/lib/gig/blobs/ab12 /srv/server \
        --remount-ro / --chdir / --seccomp 10 --info-fd 11 \
        --block-fd 12 -- /run/gig/bootstrap --nproc 64 -- /srv/server/bin/echo-mcp --stdio";
    assert_eq!(strs(&cmd.flat()).join(" "), expected);
}

#[test]
fn namespaces_and_identity_come_before_any_mount() {
    let cmd = bwrap_command(&sample(), fds());
    let argv = strs(&cmd.options);
    let first_mount = pos(&argv, &["--ro-bind", "/usr", "/usr"]);
    for flag in [
        "--unshare-all",
        "--unshare-user",
        "--disable-userns",
        "--as-pid-1",
        "--cap-drop",
        "--clearenv",
    ] {
        assert!(pos(&argv, &[flag]) < first_mount, "{flag}");
    }
}

#[test]
fn clearenv_precedes_every_setenv_and_only_declared_vars_are_set() {
    let cmd = bwrap_command(&sample(), fds());
    let argv = strs(&cmd.options);
    let clear = pos(&argv, &["--clearenv"]);
    let sets: Vec<usize> = argv
        .iter()
        .enumerate()
        .filter(|(_, a)| **a == "--setenv")
        .map(|(i, _)| i)
        .collect();
    assert_eq!(sets.len(), 2);
    assert!(sets.iter().all(|&i| i > clear));
}

#[test]
fn mounts_are_parent_first_and_root_is_remounted_read_only_last() {
    let cmd = bwrap_command(&sample(), fds());
    let argv = strs(&cmd.options);
    let usr = pos(&argv, &["--ro-bind", "/usr", "/usr"]);
    let server = pos(
        &argv,
        &["--ro-bind", "/var/lib/gig/blobs/ab12", "/srv/server"],
    );
    let proc_ = pos(&argv, &["--proc", "/proc"]);
    let tmp = pos(&argv, &["--tmpfs", "/tmp"]);
    let ro = pos(&argv, &["--remount-ro", "/"]);
    assert!(usr < proc_ && proc_ < tmp && tmp < server && server < ro);
}

#[test]
fn no_writable_bind_and_no_tmp_unless_asked() {
    let mut spec = sample();
    spec.writable_tmp = false;
    let argv = bwrap_command(&spec, fds()).flat();
    let argv = strs(&argv);
    assert!(
        !argv
            .iter()
            .any(|a| *a == "--bind" || *a == "--tmpfs" || *a == "--dev-bind")
    );
}

#[test]
fn fds_are_optional_but_seccomp_is_not() {
    let cmd = bwrap_command(
        &sample(),
        Fds {
            seccomp: 3,
            info: None,
            block: None,
        },
    );
    let argv = strs(&cmd.options);
    assert_eq!(&argv[argv.len() - 2..], ["--seccomp", "3"]);
    assert!(!argv.contains(&"--info-fd") && !argv.contains(&"--block-fd"));
}

#[test]
fn bootstrap_runs_first_and_the_program_follows_its_separator() {
    let mut spec = sample();
    spec.max_processes = None;
    let cmd = bwrap_command(&spec, fds());
    assert_eq!(
        strs(&cmd.command),
        [
            "/run/gig/bootstrap",
            "--",
            "/srv/server/bin/echo-mcp",
            "--stdio"
        ]
    );
}

#[test]
fn split_usr_binds_runtime_dirs_instead_of_symlinking() {
    let mut spec = sample();
    spec.layout = SystemLayout::SplitUsr;
    let argv = bwrap_command(&spec, fds()).options;
    let argv = strs(&argv);
    pos(&argv, &["--ro-bind-try", "/lib64", "/lib64"]);
    assert!(!argv.contains(&"--symlink"));
}

#[test]
fn visibility_follows_the_binds() {
    let spec = sample();
    assert!(is_visible(&spec, Path::new("/srv/server/bin/echo-mcp")));
    assert!(is_visible(&spec, Path::new("/bin/echo")));
    assert!(!is_visible(&spec, Path::new("/root/secret")));
}
