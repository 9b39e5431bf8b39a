//! `gigmcp doctor`: asks the host and the configuration the questions start-up asks, one line
//! per check — `ok`, `warn` (the gateway starts, with less) or `fail` (it will not start, or
//! its sandboxes will not) — with what to do. Exits 1 when anything fails.
//!
//! The detection is start-up's own (`gig_server::boot`: bubblewrap, cgroups, the network host
//! check, the store, the master key, the installer); only what start-up learns from a failure
//! deep inside bubblewrap — user namespaces, a masked `/proc` — is read here first, and then
//! confirmed by starting a real sandbox.

use std::path::PathBuf;
use std::sync::Arc;

use gig_config::{Env, InstallConfig, ProcessEnv, SandboxPolicy, StdioCommand, StoreConfig};
use gig_runtime::{ProgramSource, SandboxLaunch, data_dir};
use gig_secrets::Secrets;
use gig_server::boot;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Ok,
    Warn,
    Fail,
}

#[derive(Debug)]
struct Check {
    level: Level,
    name: &'static str,
    detail: String,
    fix: Option<String>,
}

impl Check {
    fn ok(name: &'static str, detail: impl Into<String>) -> Self {
        Check {
            level: Level::Ok,
            name,
            detail: detail.into(),
            fix: None,
        }
    }

    fn bad(
        level: Level,
        name: &'static str,
        detail: impl ToString,
        fix: impl Into<String>,
    ) -> Self {
        Check {
            level,
            name,
            detail: detail.to_string(),
            fix: Some(fix.into()),
        }
    }

    fn line(&self) -> String {
        let level = match self.level {
            Level::Ok => "ok  ",
            Level::Warn => "warn",
            Level::Fail => "fail",
        };
        match &self.fix {
            Some(fix) => format!("{level} {:<18} {} — fix: {fix}", self.name, self.detail),
            None => format!("{level} {:<18} {}", self.name, self.detail),
        }
    }
}

/// Runs every check, prints one line each, and returns the exit code.
pub async fn run() -> anyhow::Result<i32> {
    let env = ProcessEnv;
    let mut checks = host_checks(&env);
    checks.extend(sandbox_check(&env, &checks).await);
    checks.extend(state_checks(&env).await);
    for check in &checks {
        println!("{}", check.line());
    }
    let failed = checks.iter().filter(|c| c.level == Level::Fail).count();
    let warned = checks.iter().filter(|c| c.level == Level::Warn).count();
    println!(
        "{} checks: {} failed, {warned} warnings",
        checks.len(),
        failed
    );
    Ok(if failed > 0 { 1 } else { 0 })
}

fn host_checks(env: &dyn Env) -> Vec<Check> {
    let root = boot::is_root();
    let mut checks = Vec::new();
    checks.push(match boot::bubblewrap() {
        Ok(path) => Check::ok("bubblewrap", path.display().to_string()),
        Err(e) => Check::bad(Level::Fail, "bubblewrap", e, "apt-get install bubblewrap"),
    });
    checks.push(user_namespaces(
        &read("/proc/sys/user/max_user_namespaces"),
        &read("/proc/sys/kernel/unprivileged_userns_clone"),
        &read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns"),
        root,
    ));
    checks.push(proc_masking(&read("/proc/self/mountinfo")));
    checks.push(match boot::cgroup_limits() {
        (true, text) => Check::ok("cgroup delegation", text),
        (false, text) => Check::bad(
            Level::Warn,
            "cgroup delegation",
            text,
            "run under systemd with Delegate=yes (or a container with a writable cgroup v2)",
        ),
    });
    checks.push(match boot::sandbox_network_host(env) {
        Ok(nft) => Check::ok(
            "CAP_NET_ADMIN+nft",
            format!("CAP_NET_ADMIN held, {} works", nft.display()),
        ),
        // check_host's message names the missing piece and how to get it.
        Err(e) => Check::bad(
            Level::Warn,
            "CAP_NET_ADMIN+nft",
            e,
            "servers whose policy allows egress will not start until this is fixed",
        ),
    });
    checks.push(match boot::existing_bootstrap(env) {
        Ok(path) => match root.then(|| data_dir::blocked_for_others(&path)).flatten() {
            Some(blocked) => Check::bad(
                Level::Fail,
                "bootstrap",
                format!(
                    "{} is not reachable by `nobody` ({} blocks it)",
                    path.display(),
                    blocked.display()
                ),
                format!("chmod o+x {} or move the bootstrap", blocked.display()),
            ),
            None => Check::ok("bootstrap", path.display().to_string()),
        },
        Err(e) => Check::bad(
            Level::Fail,
            "bootstrap",
            e,
            "`make bootstrap`, then GIG_BOOTSTRAP=<path> (or install it next to gigmcp)",
        ),
    });
    checks
}

/// Starts a real sandbox running `true`: namespaces, `/proc`, bootstrap, seccomp, limits.
async fn sandbox_check(env: &dyn Env, before: &[Check]) -> Option<Check> {
    let name = "sandbox start";
    let blocked = before
        .iter()
        .any(|c| c.level == Level::Fail && matches!(c.name, "bubblewrap" | "bootstrap"));
    if blocked {
        return Some(Check::bad(
            Level::Fail,
            name,
            "not tried",
            "fix bubblewrap and the bootstrap first",
        ));
    }
    let runtime = match boot::sandbox_runtime_from_env(env) {
        Ok(runtime) => Arc::new(runtime),
        Err(e) => return Some(Check::bad(Level::Fail, name, e, "see the lines above")),
    };
    let launch = SandboxLaunch {
        command: StdioCommand {
            program: "/usr/bin/true".into(),
            args: Vec::new(),
            env: Default::default(),
            cwd: None,
        },
        policy: SandboxPolicy {
            bind_ro: Vec::new(),
            limits: gig_config::DEFAULT_LIMITS,
            egress: Default::default(),
            instances: Default::default(),
        },
        source: ProgramSource::HostPath,
    };
    let fix = "the user namespaces and /proc lines above; in a container: --security-opt \
               seccomp=unconfined --security-opt apparmor=unconfined --security-opt unmask=/proc/*";
    let running = match runtime.start("doctor", &launch).await {
        Ok(running) => running,
        Err(e) => return Some(Check::bad(Level::Fail, name, e, fix)),
    };
    let waited = tokio::task::spawn_blocking(move || {
        let mut running = running;
        let status = running.sandbox.wait();
        drop(running);
        status
    })
    .await;
    Some(match waited {
        Ok(Ok(status)) if status.success() => Check::ok(
            name,
            "a sandbox ran `true` (namespaces, bootstrap, seccomp)",
        ),
        Ok(Ok(status)) => Check::bad(
            Level::Fail,
            name,
            format!("`true` in a sandbox: {status}"),
            fix,
        ),
        Ok(Err(e)) => Check::bad(Level::Fail, name, e, fix),
        Err(e) => Check::bad(Level::Fail, name, e, fix),
    })
}

/// The data directory and database, the master key against the vault, the signed index.
async fn state_checks(env: &dyn Env) -> Vec<Check> {
    let mut checks = Vec::new();
    let store_config = match StoreConfig::from_env(env) {
        Ok(config) => config,
        Err(e) => {
            checks.push(Check::bad(
                Level::Fail,
                "database",
                e,
                "see docs/configuration.md",
            ));
            return checks;
        }
    };
    let key = boot::master_key(env, "GIG_MASTER_KEY");
    checks.push(match &key {
        Ok(_) => Check::ok("master key", "GIG_MASTER_KEY is a valid 256-bit key"),
        Err(e) => Check::bad(
            Level::Fail,
            "master key",
            e,
            "set GIG_MASTER_KEY to 64 hex digits (openssl rand -hex 32) — the same key the store was first opened with",
        ),
    });
    let store = boot::open_store(&store_config).await;
    checks.push(match &store {
        Ok(store) => Check::ok(
            "database",
            format!(
                "{:?} store opens and is migrated ({})",
                store.kind(),
                store_config.data_dir.display()
            ),
        ),
        Err(e) => Check::bad(
            Level::Fail,
            "database",
            e,
            "make GIG_DATA_DIR a writable directory (created 0711) and GIG_DATABASE_URL reachable",
        ),
    });
    if boot::is_root()
        && let Some(blocked) =
            data_dir::blocked_for_others(&data_dir::public_dir(&store_config.data_dir))
    {
        checks.push(Check::bad(
            Level::Fail,
            "data dir",
            format!(
                "{} blocks `nobody` from the extracted images",
                blocked.display()
            ),
            format!("chmod o+x {} (sandboxes run as nobody)", blocked.display()),
        ));
    }
    let secrets = match (key, store) {
        (Ok(key), Ok(store)) => match Secrets::open(store, &key).await {
            Ok(secrets) => {
                checks.push(Check::ok(
                    "vault",
                    "the master key opens the stored secrets",
                ));
                Some(Arc::new(secrets))
            }
            Err(e) => {
                checks.push(Check::bad(
                    Level::Fail,
                    "vault",
                    e,
                    "use the master key this store was created with (or `gigmcp vault rotate` from it)",
                ));
                None
            }
        },
        _ => None,
    };
    checks.push(index_check(env, &store_config, secrets).await);
    checks
}

async fn index_check(env: &dyn Env, store: &StoreConfig, secrets: Option<Arc<Secrets>>) -> Check {
    let name = "signed index";
    let install = match InstallConfig::from_env(env) {
        Ok(install) => install,
        Err(e) => return Check::bad(Level::Fail, name, e, "see docs/configuration.md"),
    };
    if install.index_url.is_none() && install.index_pubkeys.is_none() {
        return Check::ok(name, "installs off (GIG_INDEX_URL unset)");
    }
    let Some(secrets) = secrets else {
        return Check::bad(Level::Fail, name, "not checked", "fix the vault first");
    };
    let installer = match boot::installer(store, &install, secrets) {
        Ok(installer) => installer,
        Err(e) => {
            return Check::bad(
                Level::Fail,
                name,
                e,
                "set both GIG_INDEX_URL and GIG_INDEX_PUBKEYS (ed25519:... from `registryctl keygen`)",
            );
        }
    };
    match installer.load_index().await {
        Ok(index) => Check::ok(
            name,
            format!("version {} fetched and verified", index.index().version),
        ),
        Err(e) => Check::bad(
            Level::Fail,
            name,
            e,
            "check GIG_INDEX_URL is reachable and signed by a key in GIG_INDEX_PUBKEYS, and not expired",
        ),
    }
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(PathBuf::from(path))
        .ok()
        .map(|s| s.trim().to_owned())
}

/// bubblewrap needs a user namespace even as root (`--unshare-user`); unprivileged, the
/// distribution's switches must allow it too.
fn user_namespaces(
    max: &Option<String>,
    unprivileged_clone: &Option<String>,
    apparmor_restrict: &Option<String>,
    root: bool,
) -> Check {
    let name = "user namespaces";
    match max.as_deref().and_then(|m| m.parse::<u64>().ok()) {
        Some(0) => {
            return Check::bad(
                Level::Fail,
                name,
                "user.max_user_namespaces is 0",
                "sysctl -w user.max_user_namespaces=15000 (and in /etc/sysctl.d/)",
            );
        }
        None => {
            return Check::bad(
                Level::Fail,
                name,
                "the kernel has no user namespaces",
                "a kernel built with CONFIG_USER_NS",
            );
        }
        Some(_) => {}
    }
    if !root {
        if unprivileged_clone.as_deref() == Some("0") {
            return Check::bad(
                Level::Fail,
                name,
                "kernel.unprivileged_userns_clone is 0",
                "sysctl -w kernel.unprivileged_userns_clone=1, or run the gateway as root",
            );
        }
        if apparmor_restrict.as_deref() == Some("1") {
            return Check::bad(
                Level::Fail,
                name,
                "AppArmor restricts unprivileged user namespaces",
                "an AppArmor profile allowing userns for bwrap, or run the gateway as root",
            );
        }
    }
    Check::ok(name, "available")
}

/// Paths under `/proc` with something mounted over them: a container runtime's masking. The
/// kernel then refuses the fresh `/proc` bubblewrap mounts in the sandbox.
fn masked_proc_paths(mountinfo: &str) -> Vec<String> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(' ');
            let mount_point = fields.nth(4)?;
            let fs_type = line.split(" - ").nth(1)?.split(' ').next()?;
            (mount_point.starts_with("/proc/") && !matches!(fs_type, "binfmt_misc" | "autofs"))
                .then(|| mount_point.to_owned())
        })
        .collect()
}

fn proc_masking(mountinfo: &Option<String>) -> Check {
    let name = "/proc masking";
    let masked = masked_proc_paths(mountinfo.as_deref().unwrap_or_default());
    if masked.is_empty() {
        return Check::ok(name, "/proc is not masked");
    }
    Check::bad(
        Level::Fail,
        name,
        format!(
            "{} paths under /proc are masked (e.g. {}): sandboxes cannot mount their /proc",
            masked.len(),
            masked[0]
        ),
        "run the container with --security-opt unmask=/proc/* (podman) or securityContext.procMount: Unmasked (Kubernetes)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONTAINER: &str = "\
1 0 0:50 / / rw,relatime - overlay overlay rw
2 1 0:52 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
3 2 0:53 /null /proc/kcore rw,nosuid - tmpfs tmpfs rw
4 2 0:54 / /proc/sys ro,relatime - proc proc rw
5 2 0:55 / /proc/sys/fs/binfmt_misc rw,relatime - binfmt_misc binfmt_misc rw";

    #[test]
    fn masking_is_read_from_overmounts_under_proc() {
        assert_eq!(masked_proc_paths(CONTAINER), ["/proc/kcore", "/proc/sys"]);
        let host = "2 1 0:52 / /proc rw - proc proc rw\n5 2 0:55 / /proc/sys/fs/binfmt_misc rw - autofs systemd-1 rw";
        assert!(masked_proc_paths(host).is_empty());
        let check = proc_masking(&Some(CONTAINER.into()));
        assert_eq!(check.level, Level::Fail);
        assert!(
            check
                .line()
                .contains("fix: run the container with --security-opt unmask=/proc/*")
        );
    }

    #[test]
    fn user_namespaces_need_the_kernel_and_for_non_root_the_distribution() {
        let s = |v: &str| Some(v.to_owned());
        assert_eq!(
            user_namespaces(&s("15000"), &None, &None, false).level,
            Level::Ok
        );
        assert_eq!(
            user_namespaces(&s("0"), &None, &None, true).level,
            Level::Fail
        );
        assert_eq!(
            user_namespaces(&None, &None, &None, true).level,
            Level::Fail
        );
        assert_eq!(
            user_namespaces(&s("15000"), &s("0"), &None, true).level,
            Level::Ok
        );
        assert_eq!(
            user_namespaces(&s("15000"), &s("0"), &None, false).level,
            Level::Fail
        );
        assert_eq!(
            user_namespaces(&s("15000"), &s("1"), &s("1"), false).level,
            Level::Fail
        );
    }

    #[test]
    fn a_line_says_the_level_the_check_and_the_fix() {
        let line = Check::bad(Level::Warn, "cgroup delegation", "none", "Delegate=yes").line();
        assert!(line.starts_with("warn cgroup delegation"), "{line}");
        assert!(line.ends_with("none — fix: Delegate=yes"));
        assert_eq!(
            Check::ok("bubblewrap", "/usr/bin/bwrap").line(),
            format!("ok   {:<18} /usr/bin/bwrap", "bubblewrap")
        );
    }
}
