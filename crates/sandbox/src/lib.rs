//! Builds and starts the bubblewrap sandbox an untrusted MCP server runs in.
//!
//! [`bwrap_command`] is a pure function from a [`SandboxSpec`] to bubblewrap's arguments; the
//! [`Spawner`] trait is the one narrow step that touches the kernel. This crate never decides
//! policy (that is the caller's spec and `gig-seccomp`'s table) and never puts a value from the
//! host's environment into the sandbox: only the spec's declared variables reach it.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

mod cgroup;
mod spawn;
pub use cgroup::{CgroupError, CgroupSupport, SandboxCgroup};
pub use spawn::{BwrapSpawner, Error, Sandbox, Spawner, find_bwrap};

/// Where `bootstrap` appears inside the sandbox.
pub const BOOTSTRAP_PATH: &str = "/run/gig/bootstrap";

/// A read-only bind of a host path to a path inside the sandbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bind {
    pub host: PathBuf,
    pub sandbox: PathBuf,
}

impl Bind {
    pub fn same(path: impl Into<PathBuf>) -> Self {
        let host = path.into();
        Bind {
            sandbox: host.clone(),
            host,
        }
    }
}

/// How the host lays out its system runtime; decides whether `/lib`, `/bin`... are binds or
/// symlinks into `/usr`. [`SystemLayout::detect`] is the only impure part.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SystemLayout {
    /// `/bin`, `/lib`, ... are symlinks into `/usr` (Debian 12, Fedora, Arch).
    MergedUsr,
    /// `/bin`, `/lib`, ... are real directories.
    SplitUsr,
}

impl SystemLayout {
    pub fn detect() -> Self {
        match std::fs::symlink_metadata("/lib") {
            Ok(m) if m.file_type().is_symlink() => SystemLayout::MergedUsr,
            _ => SystemLayout::SplitUsr,
        }
    }
}

/// The top-level directories that hold the system runtime besides `/usr`.
const RUNTIME_DIRS: &[&str] = &["lib", "lib64", "bin", "sbin"];
/// Optional read-only system files: CA roots for TLS through the proxy.
const OPTIONAL_SYSTEM_BINDS: &[&str] = &["/etc/ssl/certs", "/etc/ca-certificates"];

/// Default size of a sandbox's `/tmp`.
pub const DEFAULT_TMP_BYTES: u64 = 64 << 20;

/// Everything that describes one sandboxed process. Paths in `program` and `Bind::sandbox` are as
/// seen inside the sandbox.
#[derive(Clone, Debug)]
pub struct SandboxSpec {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    /// The only variables the server sees (non-secret values: credentials are placeholders).
    pub env: BTreeMap<String, String>,
    /// The server's own files, read-only.
    pub ro_binds: Vec<Bind>,
    /// Symlinks created in the sandbox's root: (target, link path), e.g. an image's
    /// `lib -> usr/lib`.
    pub symlinks: Vec<(String, PathBuf)>,
    /// Bind the host's `/usr` (and `/lib`, `/bin`...) as the runtime. Off for servers that
    /// bring their own root filesystem (an image extracted whole): `ro_binds` then are the root.
    pub host_runtime: bool,
    /// A private tmpfs at `/tmp` (otherwise the whole tree is read-only).
    pub writable_tmp: bool,
    pub uid: u32,
    pub gid: u32,
    /// The host uid/gid bubblewrap runs as (the one the sandbox's ids map to), when the
    /// gateway is root: one of the sandbox's own. `None`: the spawner's default.
    pub host_ids: Option<(u32, u32)>,
    pub hostname: String,
    /// The host path of the `bootstrap` binary, bound at [`BOOTSTRAP_PATH`].
    pub bootstrap: PathBuf,
    /// `RLIMIT_NPROC` set by bootstrap before the server starts.
    pub max_processes: Option<u64>,
    /// `RLIMIT_DATA` set by bootstrap: the memory bound that holds even without cgroups.
    pub max_data_bytes: Option<u64>,
    /// The address the host gives `eth0` before release; bootstrap refuses to run the server
    /// if it is not there. `None`: no network at all (only `lo`).
    pub expect_addr: Option<std::net::Ipv4Addr>,
    /// Size of the `/tmp` tmpfs: its pages are memory a server could otherwise fill unbounded.
    pub tmp_bytes: u64,
    pub layout: SystemLayout,
}

impl SandboxSpec {
    /// A spec with the defaults every server gets: `nobody` inside, `/tmp` writable, no env.
    pub fn new(program: impl Into<PathBuf>, bootstrap: impl Into<PathBuf>) -> Self {
        SandboxSpec {
            program: program.into(),
            args: Vec::new(),
            env: BTreeMap::new(),
            ro_binds: Vec::new(),
            symlinks: Vec::new(),
            host_runtime: true,
            writable_tmp: true,
            uid: 65534,
            gid: 65534,
            host_ids: None,
            hostname: "sandbox".into(),
            bootstrap: bootstrap.into(),
            max_processes: None,
            max_data_bytes: None,
            expect_addr: None,
            tmp_bytes: DEFAULT_TMP_BYTES,
            layout: SystemLayout::MergedUsr,
        }
    }
}

/// The file descriptor numbers bubblewrap finds already open in its own process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fds {
    /// The raw seccomp program (`--seccomp`); bubblewrap installs it before `bootstrap` runs.
    pub seccomp: i32,
    /// Where bubblewrap writes `{"child-pid": N}` (`--info-fd`).
    pub info: Option<i32>,
    /// bubblewrap waits for one byte or EOF here before running anything (`--block-fd`).
    pub block: Option<i32>,
}

/// bubblewrap's arguments: the options (handed over through a pipe with `--args`, so no value in
/// them shows up in the host's `/proc/PID/cmdline`) and the command that follows `--`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BwrapCommand {
    pub options: Vec<OsString>,
    pub command: Vec<OsString>,
}

impl BwrapCommand {
    /// Everything as one argv (for display and tests).
    pub fn flat(&self) -> Vec<OsString> {
        let mut all = self.options.clone();
        all.push("--".into());
        all.extend(self.command.iter().cloned());
        all
    }
}

fn push(out: &mut Vec<OsString>, items: &[&dyn AsRef<std::ffi::OsStr>]) {
    out.extend(items.iter().map(|s| s.as_ref().to_os_string()));
}

/// Builds bubblewrap's arguments for `spec`. Pure: the same spec and fds give the same argv.
///
/// Order matters where bubblewrap applies options in sequence: namespaces and identity first, then
/// the mount tree parent-first (system runtime, `/proc`, `/dev`, `/tmp`, the server's files), then
/// `--remount-ro /` so the tmpfs root bubblewrap builds is not writable, then the fds.
pub fn bwrap_command(spec: &SandboxSpec, fds: Fds) -> BwrapCommand {
    let mut o: Vec<OsString> = Vec::new();
    let uid = spec.uid.to_string();
    let gid = spec.gid.to_string();
    // --unshare-all only *tries* a user namespace; --unshare-user makes it mandatory, which
    // --disable-userns needs. --as-pid-1: bootstrap is pid 1 and undumpable, so the server cannot
    // ptrace or write the memory of an unfiltered or less-confined init (see docs/sandbox.md).
    push(
        &mut o,
        &[&"--unshare-all", &"--unshare-user", &"--disable-userns"],
    );
    push(
        &mut o,
        &[&"--die-with-parent", &"--new-session", &"--as-pid-1"],
    );
    push(
        &mut o,
        &[
            &"--uid",
            &uid,
            &"--gid",
            &gid,
            &"--hostname",
            &spec.hostname,
        ],
    );
    push(&mut o, &[&"--cap-drop", &"ALL", &"--clearenv"]);
    for (k, v) in &spec.env {
        push(&mut o, &[&"--setenv", k, v]);
    }
    if spec.host_runtime {
        push(&mut o, &[&"--ro-bind", &"/usr", &"/usr"]);
        for dir in RUNTIME_DIRS {
            let abs = format!("/{dir}");
            match spec.layout {
                SystemLayout::MergedUsr => {
                    push(&mut o, &[&"--symlink", &format!("usr/{dir}"), &abs]);
                }
                SystemLayout::SplitUsr => push(&mut o, &[&"--ro-bind-try", &abs, &abs]),
            }
        }
        for path in OPTIONAL_SYSTEM_BINDS {
            push(&mut o, &[&"--ro-bind-try", path, path]);
        }
    }
    for (target, link) in &spec.symlinks {
        push(&mut o, &[&"--symlink", target, link]);
    }
    push(&mut o, &[&"--proc", &"/proc", &"--dev", &"/dev"]);
    if spec.writable_tmp {
        push(
            &mut o,
            &[&"--size", &spec.tmp_bytes.to_string(), &"--tmpfs", &"/tmp"],
        );
    }
    // The server's files come after `/tmp`'s tmpfs, so a server installed under /tmp (a CI
    // checkout, say) stays visible instead of being hidden by the empty tmpfs.
    push(&mut o, &[&"--ro-bind", &spec.bootstrap, &BOOTSTRAP_PATH]);
    for bind in &spec.ro_binds {
        push(&mut o, &[&"--ro-bind", &bind.host, &bind.sandbox]);
    }
    push(&mut o, &[&"--remount-ro", &"/", &"--chdir", &"/"]);
    push(&mut o, &[&"--seccomp", &fds.seccomp.to_string()]);
    if let Some(fd) = fds.info {
        push(&mut o, &[&"--info-fd", &fd.to_string()]);
    }
    if let Some(fd) = fds.block {
        push(&mut o, &[&"--block-fd", &fd.to_string()]);
    }

    let mut command: Vec<OsString> = vec![BOOTSTRAP_PATH.into()];
    if let Some(n) = spec.max_processes {
        push(&mut command, &[&"--nproc", &n.to_string()]);
    }
    if let Some(n) = spec.max_data_bytes {
        push(&mut command, &[&"--data", &n.to_string()]);
    }
    if let Some(addr) = spec.expect_addr {
        push(&mut command, &[&"--expect-addr", &addr.to_string()]);
    }
    command.push("--".into());
    command.push(spec.program.clone().into_os_string());
    command.extend(spec.args.iter().cloned());
    BwrapCommand {
        options: o,
        command,
    }
}

/// True if `path` would be visible inside the sandbox built from `spec` (used to refuse specs
/// whose program is not bound).
pub fn is_visible(spec: &SandboxSpec, path: &Path) -> bool {
    (spec.host_runtime && path.starts_with("/usr"))
        || spec.ro_binds.iter().any(|b| path.starts_with(&b.sandbox))
        || spec.symlinks.iter().any(|(_, link)| path.starts_with(link))
        || (spec.host_runtime
            && spec.layout == SystemLayout::MergedUsr
            && RUNTIME_DIRS
                .iter()
                .any(|d| path.starts_with(format!("/{d}"))))
}

#[cfg(test)]
mod tests;
