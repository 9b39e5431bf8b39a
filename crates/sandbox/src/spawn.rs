//! Starting bubblewrap: the one step of this crate that touches the kernel.

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};

use crate::{Fds, SandboxSpec, bwrap_command, is_visible};

/// Where bubblewrap is looked for. The gateway never searches `PATH`: a sandbox's launcher
/// should not depend on the environment it was started from.
const BWRAP_CANDIDATES: &[&str] = &["/usr/bin/bwrap", "/usr/local/bin/bwrap", "/bin/bwrap"];

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "bubblewrap (bwrap) was not found at {0:?}; it is a runtime dependency of the sandbox: \
         install it with `apt-get install bubblewrap` (Debian/Ubuntu), `dnf install bubblewrap` \
         (Fedora) or `apk add bubblewrap` (Alpine)"
    )]
    BwrapMissing(Vec<PathBuf>),
    #[error("`{0} --version` failed: {1}")]
    BwrapBroken(PathBuf, String),
    #[error("the program {0:?} is not inside any bind of the sandbox")]
    ProgramNotBound(PathBuf),
    #[error("the bootstrap binary {0:?} does not exist")]
    BootstrapMissing(PathBuf),
    #[error("compiling the seccomp filter: {0}")]
    Seccomp(#[from] gig_seccomp::Error),
    #[error("creating the {0} pipe: {1}")]
    Pipe(&'static str, #[source] io::Error),
    #[error("writing bubblewrap's {0}: {1}")]
    Feed(&'static str, #[source] io::Error),
    #[error("starting {0:?}: {1}")]
    Start(PathBuf, #[source] io::Error),
    #[error("reading bubblewrap's info fd: {0}")]
    Info(String),
}

/// Finds bubblewrap and checks that it runs; the error says how to install it.
pub fn find_bwrap() -> Result<PathBuf, Error> {
    let path = BWRAP_CANDIDATES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or_else(|| Error::BwrapMissing(BWRAP_CANDIDATES.iter().map(PathBuf::from).collect()))?;
    let out = Command::new(&path).arg("--version").env_clear().output();
    match out {
        Ok(o) if o.status.success() => Ok(path),
        Ok(o) => Err(Error::BwrapBroken(
            path,
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )),
        Err(e) => Err(Error::BwrapBroken(path, e.to_string())),
    }
}

/// A started sandbox. Dropping it kills bubblewrap, and with it (`--die-with-parent`, pid
/// namespace) everything inside.
pub struct Sandbox {
    pub child: Child,
    info: Option<io::PipeReader>,
    block: Option<io::PipeWriter>,
    child_pid: Option<u32>,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("bwrap_pid", &self.child.id())
            .field("child_pid", &self.child_pid)
            .finish()
    }
}

impl Sandbox {
    /// The host pid of the sandbox's pid 1, from bubblewrap's info fd (for netmgr's veth).
    pub fn child_pid(&mut self) -> Result<u32, Error> {
        if let Some(pid) = self.child_pid {
            return Ok(pid);
        }
        let info = self
            .info
            .as_mut()
            .ok_or_else(|| Error::Info("no info fd was requested".into()))?;
        let mut text = String::new();
        let mut buf = [0u8; 256];
        while !text.contains('}') {
            let n = info
                .read(&mut buf)
                .map_err(|e| Error::Info(e.to_string()))?;
            if n == 0 {
                break;
            }
            text.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        let pid = parse_child_pid(&text)
            .ok_or_else(|| Error::Info(format!("no child-pid in {text:?}")))?;
        self.child_pid = Some(pid);
        Ok(pid)
    }

    /// Lets bubblewrap go on past `--block-fd`: nothing untrusted runs before this.
    pub fn release(&mut self) -> Result<(), Error> {
        if let Some(mut w) = self.block.take() {
            w.write_all(b"1").map_err(|e| Error::Feed("block fd", e))?;
        }
        Ok(())
    }

    pub fn wait(&mut self) -> io::Result<ExitStatus> {
        self.block.take();
        self.child.wait()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `{"child-pid": 123, ...}` → 123, without a JSON dependency.
fn parse_child_pid(text: &str) -> Option<u32> {
    let rest = &text[text.find("\"child-pid\"")? + "\"child-pid\"".len()..];
    let rest = rest.trim_start().strip_prefix(':')?.trim_start();
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The narrow step that starts a sandbox; the gateway holds a `dyn Spawner` so its supervision
/// logic is tested without bubblewrap.
pub trait Spawner {
    /// Starts `spec`. With `hold`, the sandbox waits in [`Sandbox::release`] before running
    /// anything, so the host can set up networking first.
    fn spawn(&self, spec: &SandboxSpec, hold: bool) -> Result<Sandbox, Error>;
}

/// The real spawner: bubblewrap with an empty environment, options through `--args`.
#[derive(Clone, Debug)]
pub struct BwrapSpawner {
    pub bwrap: PathBuf,
    /// Host uid/gid bubblewrap runs as when the gateway is root and the spec names none: then
    /// the sandbox's uid maps to this unprivileged host user instead of root, so RLIMIT_NPROC
    /// binds and a kernel escape lands unprivileged. The gateway gives each sandbox its own
    /// ([`SandboxSpec::host_ids`]); this default is for tools and tests.
    pub host_ids: Option<(u32, u32)>,
}

impl BwrapSpawner {
    /// Detects bubblewrap; fails with installation advice if it is missing.
    pub fn detect() -> Result<Self, Error> {
        Ok(BwrapSpawner {
            bwrap: find_bwrap()?,
            host_ids: None,
        })
    }
}

fn pipe(what: &'static str) -> Result<(io::PipeReader, io::PipeWriter), Error> {
    io::pipe().map_err(|e| Error::Pipe(what, e))
}

impl Spawner for BwrapSpawner {
    fn spawn(&self, spec: &SandboxSpec, hold: bool) -> Result<Sandbox, Error> {
        if !is_visible(spec, &spec.program) {
            return Err(Error::ProgramNotBound(spec.program.clone()));
        }
        if !spec.bootstrap.is_file() {
            return Err(Error::BootstrapMissing(spec.bootstrap.clone()));
        }
        let (seccomp_r, mut seccomp_w) = pipe("seccomp")?;
        let (args_r, mut args_w) = pipe("args")?;
        let (info_r, info_w) = pipe("info")?;
        let (block_r, block_w) = if hold {
            Some(pipe("block")?).unzip()
        } else {
            (None, None)
        };
        let fds = Fds {
            seccomp: seccomp_r.as_raw_fd(),
            info: Some(info_w.as_raw_fd()),
            block: block_r.as_ref().map(AsRawFd::as_raw_fd),
        };
        let cmd = bwrap_command(spec, fds);

        // Both payloads are a few KiB, far below a pipe's buffer, so writing before the child
        // exists cannot block; closing the write ends gives bubblewrap its EOF.
        let mut options = Vec::new();
        for arg in &cmd.options {
            options.extend_from_slice(arg.as_encoded_bytes());
            options.push(0);
        }
        if options.len() > 60 * 1024 {
            return Err(Error::Feed(
                "--args",
                io::Error::other("options exceed a pipe buffer"),
            ));
        }
        args_w
            .write_all(&options)
            .map_err(|e| Error::Feed("--args", e))?;
        drop(args_w);
        gig_seccomp::write_to(&mut seccomp_w)?;
        drop(seccomp_w);

        let inherit: Vec<OwnedFd> = [
            Some(OwnedFd::from(seccomp_r)),
            Some(args_r.into()),
            Some(info_w.into()),
            block_r.map(Into::into),
        ]
        .into_iter()
        .flatten()
        .collect();
        let args_fd = inherit[1].as_raw_fd();
        let mut command = Command::new(&self.bwrap);
        command
            .env_clear()
            .arg("--args")
            .arg(args_fd.to_string())
            .arg("--")
            .args(&cmd.command)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some((uid, gid)) = spec.host_ids.or(self.host_ids) {
            command.uid(uid).gid(gid);
        }
        inherit_in_child(
            &mut command,
            inherit.iter().map(AsRawFd::as_raw_fd).collect(),
        );
        let child = command
            .spawn()
            .map_err(|e| Error::Start(self.bwrap.clone(), e))?;
        drop(inherit);
        Ok(Sandbox {
            child,
            info: Some(info_r),
            block: block_w,
            child_pid: None,
        })
    }
}

/// Clears close-on-exec on exactly `fds` in the forked child, so bubblewrap inherits them and no
/// other descriptor of the (multi-threaded) gateway leaks.
#[allow(unsafe_code)]
fn inherit_in_child(command: &mut Command, fds: Vec<i32>) {
    // SAFETY: the closure runs between fork and exec; it only calls fcntl, which is
    // async-signal-safe, on descriptors the parent keeps open until after spawn returns.
    unsafe {
        command.pre_exec(move || {
            for &fd in &fds {
                // SAFETY: F_SETFD on an open descriptor has no memory effects.
                if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::parse_child_pid;

    #[test]
    fn parses_bwrap_info() {
        assert_eq!(
            parse_child_pid("{\n    \"child-pid\": 4242\n}\n"),
            Some(4242)
        );
        assert_eq!(parse_child_pid("{\"child-pid\":7,\"x\":1}"), Some(7));
        assert_eq!(parse_child_pid("{}"), None);
    }
}
