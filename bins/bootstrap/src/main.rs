//! `bootstrap`: the trusted init that runs first inside every sandbox.
//!
//! It checks that the host finished the sandbox's network (the host configures `eth0`, its route
//! and `lo` over netlink while bubblewrap is held, so the sandbox never holds CAP_NET_ADMIN),
//! sets the rlimits it is told, closes every inherited descriptor but stdio, empties every
//! capability set (bounding, ambient, effective, permitted, inheritable), sets `no_new_privs`,
//! installs the compiled-in seccomp filter, and only then runs the server with exactly the
//! environment it was given. Any failing step exits with its own code and a message on stderr:
//! the server never runs half-isolated. As pid 1 (`bwrap --as-pid-1`) it stays as an undumpable
//! reaper so the server can neither ptrace nor write the memory of its namespace's init.
//!
//! `unsafe` is allowed here because these steps are raw syscalls (prctl, capset, close_range,
//! fork, waitpid) that std does not wrap; each block says why it is sound. No tokio, serde or clap:
//! this file should be auditable in one sitting.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};

const USAGE: &str = "usage: bootstrap [--nproc N] [--data BYTES] [--expect-addr IPV4] -- /ABSOLUTE/PROGRAM [ARGS...]";

/// One exit code per step, so the gateway can tell which step failed.
#[derive(Clone, Copy, Debug)]
#[repr(u8)]
enum Step {
    Usage = 64,
    Rlimit = 65,
    CloseFds = 66,
    Ambient = 67,
    Bounding = 68,
    Capset = 69,
    NoNewPrivs = 70,
    Seccomp = 71,
    Verify = 72,
    Undumpable = 73,
    Fork = 74,
    Exec = 75,
    Network = 76,
}

struct Failure(Step, String);

fn fail<T>(step: Step, msg: impl Into<String>) -> Result<T, Failure> {
    Err(Failure(step, msg.into()))
}

fn os_err(step: Step, what: &str) -> Failure {
    Failure(step, format!("{what}: {}", std::io::Error::last_os_error()))
}

struct Args {
    nproc: Option<u64>,
    data: Option<u64>,
    expect_addr: Option<std::net::Ipv4Addr>,
    program: OsString,
    args: Vec<OsString>,
}

fn parse(mut argv: impl Iterator<Item = OsString>) -> Result<Args, Failure> {
    let (mut nproc, mut data, mut expect_addr) = (None, None, None);
    loop {
        let Some(arg) = argv.next() else {
            return fail(Step::Usage, USAGE);
        };
        let mut value = |what: &str| {
            argv.next()
                .and_then(|v| v.into_string().ok())
                .ok_or_else(|| Failure(Step::Usage, format!("{what} needs a value")))
        };
        let number = |what: &str, v: String| {
            v.parse::<u64>()
                .map_err(|_| Failure(Step::Usage, format!("{what} needs a number, not {v:?}")))
        };
        match arg.to_str() {
            Some("--") => break,
            Some("--nproc") => nproc = Some(number("--nproc", value("--nproc")?)?),
            Some("--data") => data = Some(number("--data", value("--data")?)?),
            Some("--expect-addr") => {
                let v = value("--expect-addr")?;
                let ip = v.parse().map_err(|_| {
                    Failure(
                        Step::Usage,
                        format!("--expect-addr needs an IPv4 address, not {v:?}"),
                    )
                })?;
                expect_addr = Some(ip);
            }
            _ => return fail(Step::Usage, format!("unknown argument {arg:?}; {USAGE}")),
        }
    }
    let Some(program) = argv.next() else {
        return fail(Step::Usage, USAGE);
    };
    if !program.as_encoded_bytes().starts_with(b"/") {
        return fail(
            Step::Usage,
            format!("program {program:?} must be an absolute path"),
        );
    }
    Ok(Args {
        nproc,
        data,
        expect_addr,
        program,
        args: argv.collect(),
    })
}

#[allow(unsafe_code)]
mod sys {
    use super::{Failure, Step, os_err};

    pub fn set_rlimit(
        resource: libc::__rlimit_resource_t,
        name: &str,
        n: u64,
    ) -> Result<(), Failure> {
        let lim = libc::rlimit {
            rlim_cur: n,
            rlim_max: n,
        };
        // SAFETY: `lim` is a valid rlimit that outlives the call.
        if unsafe { libc::setrlimit(resource, &lim) } != 0 {
            return Err(os_err(Step::Rlimit, &format!("setrlimit({name})")));
        }
        Ok(())
    }

    /// The IPv4 address of `eth0`, which the host configured (from outside, over netlink)
    /// before releasing the sandbox; `None` if the interface or its address is missing.
    pub fn eth0_addr() -> Result<Option<std::net::Ipv4Addr>, Failure> {
        // SAFETY: socket() takes integers; the fd is closed below.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(os_err(Step::Network, "socket(AF_INET)"));
        }
        // SAFETY: ifreq is plain old data; all-zero is a valid value.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        for (dst, src) in req.ifr_name.iter_mut().zip(b"eth0") {
            *dst = *src as libc::c_char;
        }
        // SAFETY: SIOCGIFADDR reads ifr_name and writes ifr_ifru inside `req`, which we own.
        let rc = unsafe { libc::ioctl(fd, libc::SIOCGIFADDR, &mut req) };
        // SAFETY: closing the fd we opened above.
        unsafe { libc::close(fd) };
        if rc != 0 {
            return Ok(None);
        }
        // SAFETY: after a successful SIOCGIFADDR the union holds an AF_INET sockaddr_in.
        let sin: libc::sockaddr_in =
            unsafe { std::ptr::read_unaligned(std::ptr::addr_of!(req.ifr_ifru.ifru_addr).cast()) };
        Ok(Some(std::net::Ipv4Addr::from(u32::from_be(
            sin.sin_addr.s_addr,
        ))))
    }

    /// Closes every descriptor above stderr: bubblewrap's fds and anything a bug leaked.
    pub fn close_inherited_fds() -> Result<(), Failure> {
        // SAFETY: close_range takes plain integers; closing fds we do not use cannot break Rust
        // invariants because nothing in this process owns a descriptor above 2 yet.
        if unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) } != 0 {
            return Err(os_err(Step::CloseFds, "close_range(3, ~0)"));
        }
        Ok(())
    }

    pub fn clear_ambient() -> Result<(), Failure> {
        // SAFETY: prctl with integer arguments only.
        if unsafe {
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_CLEAR_ALL,
                0,
                0,
                0,
            )
        } != 0
        {
            return Err(os_err(Step::Ambient, "PR_CAP_AMBIENT_CLEAR_ALL"));
        }
        Ok(())
    }

    /// Drops every capability still in the bounding set (dropping needs CAP_SETPCAP, so a set
    /// that is already empty is checked rather than dropped again).
    pub fn drop_bounding_set() -> Result<(), Failure> {
        for cap in 0..64 {
            // SAFETY: prctl with integer arguments only.
            let present = unsafe { libc::prctl(libc::PR_CAPBSET_READ, cap, 0, 0, 0) };
            if present < 0 {
                break; // EINVAL: past the kernel's last capability.
            }
            // SAFETY: prctl with integer arguments only.
            if present == 1 && unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) } != 0 {
                return Err(os_err(Step::Bounding, &format!("PR_CAPBSET_DROP({cap})")));
            }
        }
        Ok(())
    }

    #[repr(C)]
    struct CapHeader {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct CapData {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const CAP_V3: u32 = 0x2008_0522;

    pub fn clear_capsets() -> Result<(), Failure> {
        let mut header = CapHeader {
            version: CAP_V3,
            pid: 0,
        };
        let data = [CapData::default(); 2];
        // SAFETY: v3 capset reads one header and two data structs, which we own for the call.
        if unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) } != 0 {
            return Err(os_err(Step::Capset, "capset(0)"));
        }
        Ok(())
    }

    pub fn set_no_new_privs() -> Result<(), Failure> {
        // SAFETY: prctl with integer arguments only.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            return Err(os_err(Step::NoNewPrivs, "PR_SET_NO_NEW_PRIVS"));
        }
        Ok(())
    }

    /// Reads back what the kernel holds: all five capability sets empty and no_new_privs on.
    pub fn verify() -> Result<(), Failure> {
        let mut header = CapHeader {
            version: CAP_V3,
            pid: 0,
        };
        let mut data = [CapData::default(); 2];
        // SAFETY: v3 capget writes two data structs into our array.
        if unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) } != 0 {
            return Err(os_err(Step::Verify, "capget"));
        }
        if data
            .iter()
            .any(|d| d.effective | d.permitted | d.inheritable != 0)
        {
            return Err(Failure(
                Step::Verify,
                "capabilities remain after capset".into(),
            ));
        }
        // SAFETY: prctl with integer arguments only.
        let bounding0 = unsafe { libc::prctl(libc::PR_CAPBSET_READ, 0, 0, 0, 0) };
        // SAFETY: prctl with integer arguments only.
        let ambient0 =
            unsafe { libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_IS_SET, 0, 0, 0) };
        // SAFETY: prctl with integer arguments only.
        let nnp = unsafe { libc::prctl(libc::PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) };
        if bounding0 != 0 || ambient0 != 0 || nnp != 1 {
            return Err(Failure(
                Step::Verify,
                format!("bounding={bounding0} ambient={ambient0} nnp={nnp}"),
            ));
        }
        Ok(())
    }

    pub fn make_undumpable() -> Result<(), Failure> {
        // SAFETY: prctl with integer arguments only.
        if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
            return Err(os_err(Step::Undumpable, "PR_SET_DUMPABLE(0)"));
        }
        Ok(())
    }

    pub fn is_pid1() -> bool {
        std::process::id() == 1
    }

    /// Forks; `Ok(None)` in the child, `Ok(Some(pid))` in the parent.
    pub fn fork() -> Result<Option<i32>, Failure> {
        // SAFETY: bootstrap is single-threaded, so the child may run arbitrary code.
        match unsafe { libc::fork() } {
            -1 => Err(os_err(Step::Fork, "fork")),
            0 => Ok(None),
            pid => Ok(Some(pid)),
        }
    }

    /// Reaps every orphan until `server` exits; returns its exit code (128 + signal if killed).
    pub fn reap_until(server: i32) -> u8 {
        loop {
            let mut status = 0;
            // SAFETY: waitpid writes one int we own.
            let pid = unsafe { libc::waitpid(-1, &mut status, 0) };
            if pid == -1 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                return 255; // ECHILD: the server vanished without us seeing it.
            }
            if pid == server {
                if libc::WIFEXITED(status) {
                    return libc::WEXITSTATUS(status) as u8;
                }
                if libc::WIFSIGNALED(status) {
                    return 128u8.wrapping_add(libc::WTERMSIG(status) as u8);
                }
            }
        }
    }
}

/// Every isolation step, in order. Returns only when all succeeded.
fn isolate(args: &Args) -> Result<(), Failure> {
    if let Some(want) = args.expect_addr {
        // The host finishes networking while bubblewrap is held; a sandbox released without it
        // (a host bug) must not run the server with a network state nobody intended.
        match sys::eth0_addr()? {
            Some(have) if have == want => {}
            have => {
                return fail(
                    Step::Network,
                    format!(
                        "eth0 has {have:?}, expected {want}: the host did not finish networking"
                    ),
                );
            }
        }
    }
    if let Some(n) = args.nproc {
        sys::set_rlimit(libc::RLIMIT_NPROC, "RLIMIT_NPROC", n)?;
    }
    if let Some(n) = args.data {
        sys::set_rlimit(libc::RLIMIT_DATA, "RLIMIT_DATA", n)?;
    }
    sys::close_inherited_fds()?;
    sys::clear_ambient()?;
    sys::drop_bounding_set()?;
    sys::clear_capsets()?;
    sys::set_no_new_privs()?;
    let program = gig_seccomp::compile().map_err(|e| Failure(Step::Seccomp, e.to_string()))?;
    gig_seccomp::install(&program).map_err(|e| Failure(Step::Seccomp, e.to_string()))?;
    sys::verify()
}

fn exec(args: &Args) -> Failure {
    let err = Command::new(&args.program).args(&args.args).exec();
    Failure(Step::Exec, format!("execve {:?}: {err}", args.program))
}

fn run() -> Result<u8, Failure> {
    let args = parse(std::env::args_os().skip(1))?;
    isolate(&args)?;
    if !sys::is_pid1() {
        return Err(exec(&args));
    }
    sys::make_undumpable()?;
    match sys::fork()? {
        None => {
            let Failure(step, msg) = exec(&args);
            eprintln!("bootstrap: {msg}");
            std::process::exit(step as i32);
        }
        Some(server) => Ok(sys::reap_until(server)),
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => ExitCode::from(code),
        Err(Failure(step, msg)) => {
            eprintln!("bootstrap: {step:?} failed: {msg}");
            ExitCode::from(step as u8)
        }
    }
}
