//! `escape-probe`: a hostile fixture that runs inside the real sandbox and tries to get out.
//!
//! Every attempt prints one JSON line `{"attempt", "outcome": "blocked"|"ESCAPED", "detail"}`.
//! Attempts are built like bubblewrap's `try-syscall`: harmless arguments (bad fd, bad pointer,
//! invalid command) so an allowed call fails with EBADF/EFAULT/EINVAL and only a filtered or
//! refused call fails with EPERM/ENOSYS. It must never be run outside a sandbox.
//!
//! `escape-probe --net [SPEC]...` runs the network half instead (see `net`): it reads more SPECs
//! from stdin, one per line, and starts once stdin closes (so the test can first read the
//! sandbox's addresses and set up its observers), then tries to reach what the SPECs name and to
//! change its own network.
//!
//! `unsafe` is allowed because the probe's whole job is to make raw syscalls.
#![allow(unsafe_code)]

mod net;

use std::ffi::CString;
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::time::Duration;

struct Ctx {
    marker: String,
    host_pid: i32,
    port: u16,
}

type Outcome = (bool, String);

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn errname(e: i32) -> String {
    format!("{} ({e})", std::io::Error::from_raw_os_error(e))
}

/// Blocked iff the call failed with one of `want` (the errno the filter or kernel policy gives).
fn expect(ret: i64, want: &[i32]) -> Outcome {
    if ret != -1 {
        return (false, format!("succeeded, returned {ret}"));
    }
    let e = errno();
    (want.contains(&e), format!("failed with {}", errname(e)))
}

/// Blocked iff the call failed at all.
fn expect_fail(ret: i64) -> Outcome {
    if ret == -1 {
        (true, format!("failed with {}", errname(errno())))
    } else {
        (false, format!("returned {ret}"))
    }
}

fn c(s: &str) -> CString {
    CString::new(s).unwrap()
}

fn sys(nr: i64, a: [i64; 6]) -> i64 {
    // SAFETY: every call site passes integers or pointers to live buffers (or deliberately invalid
    // ones the kernel validates); the probe owns no memory the kernel could be told to corrupt.
    unsafe { libc::syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]) }
}

fn read(path: &str) -> Result<Vec<u8>, String> {
    let mut v = Vec::new();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_end(&mut v))
        .map(|_| v)
        .map_err(|e| e.to_string())
}

fn no_marker(ctx: &Ctx, path: &str) -> Outcome {
    match read(path) {
        Err(e) => (true, format!("unreadable: {e}")),
        Ok(bytes) => {
            let found = String::from_utf8_lossy(&bytes).contains(&ctx.marker);
            (
                !found,
                if found {
                    "host marker visible".into()
                } else {
                    format!("{} bytes, no marker", bytes.len())
                },
            )
        }
    }
}

fn status_field(name: &str) -> String {
    let s = String::from_utf8(read("/proc/self/status").unwrap_or_default()).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix(name))
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

fn clone_flags(flags: i64) -> Outcome {
    let pid = sys(
        libc::SYS_clone,
        [flags | libc::SIGCHLD as i64, 0, 0, 0, 0, 0],
    );
    if pid == 0 {
        // SAFETY: in the child of a raw clone, only _exit is safe.
        unsafe { libc::_exit(0) };
    }
    if pid > 0 {
        // SAFETY: reaping our own child.
        unsafe { libc::waitpid(pid as i32, std::ptr::null_mut(), 0) };
    }
    expect(pid, &[libc::EPERM])
}

fn write_probe(path: &str) -> Outcome {
    match std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
    {
        Ok(_) => (false, format!("opened {path} for writing")),
        Err(e) => (true, e.to_string()),
    }
}

fn fork_bomb() -> Outcome {
    let mut kids = Vec::new();
    let mut result = (false, "forked 2000 processes without a limit".to_string());
    for i in 0..2000 {
        // SAFETY: the probe is single-threaded; the child only pauses until killed.
        match unsafe { libc::fork() } {
            0 => loop {
                // SAFETY: pause has no arguments.
                unsafe { libc::pause() };
            },
            -1 => {
                result = (true, format!("fork #{i} failed with {}", errname(errno())));
                break;
            }
            pid => kids.push(pid),
        }
    }
    for pid in kids {
        // SAFETY: signalling and reaping our own children.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
    }
    result
}

/// Touches up to 2 GiB in a child: contained if the child is killed (cgroup OOM) or its
/// allocation fails (RLIMIT_DATA); escaped if it holds all of it.
fn memory_hog() -> Outcome {
    const CHUNK: usize = 16 << 20;
    // SAFETY: single-threaded; the child only allocates and exits.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let mut held: Vec<Vec<u8>> = Vec::new();
        for _ in 0..(2048 / 16) {
            let mut chunk = Vec::new();
            if chunk.try_reserve_exact(CHUNK).is_err() {
                // SAFETY: leaving the forked child without running the parent's destructors.
                unsafe { libc::_exit(3) };
            }
            chunk.resize(CHUNK, 1u8);
            held.push(chunk);
        }
        // SAFETY: as above.
        unsafe { libc::_exit(0) };
    }
    let mut status = 0;
    // SAFETY: reaping our own child into an int we own.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    if libc::WIFSIGNALED(status) {
        (
            true,
            format!("hog killed by signal {}", libc::WTERMSIG(status)),
        )
    } else if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 3 {
        (true, "hog's allocation was refused".into())
    } else {
        (false, format!("hog held 2 GiB (status {status:#x})"))
    }
}

fn ptrace_sibling() -> Outcome {
    // SAFETY: single-threaded; the child only pauses until killed.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        loop {
            // SAFETY: no arguments.
            unsafe { libc::pause() };
        }
    }
    let r = sys(
        libc::SYS_ptrace,
        [libc::PTRACE_ATTACH as i64, pid as i64, 0, 0, 0, 0],
    );
    // SAFETY: signalling and reaping our own child.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, std::ptr::null_mut(), 0);
    }
    expect(r, &[libc::EPERM])
}

// One statement per attempt keeps them independent and run in order.
#[allow(clippy::vec_init_then_push)]
fn attempts(ctx: &Ctx) -> Vec<(&'static str, Outcome)> {
    let tmp = c("/tmp");
    let tmpfs = c("tmpfs");
    let bad = usize::MAX as i64; // an invalid pointer: allowed calls fail with EFAULT
    let mut v: Vec<(&'static str, Outcome)> = Vec::new();
    v.push((
        "mount tmpfs",
        expect(
            sys(
                libc::SYS_mount,
                [
                    tmpfs.as_ptr() as i64,
                    tmp.as_ptr() as i64,
                    tmpfs.as_ptr() as i64,
                    0,
                    0,
                    0,
                ],
            ),
            &[libc::EPERM],
        ),
    ));
    v.push((
        "umount2 /proc",
        expect(
            sys(
                libc::SYS_umount2,
                [
                    c("/proc").as_ptr() as i64,
                    libc::MNT_DETACH as i64,
                    0,
                    0,
                    0,
                    0,
                ],
            ),
            &[libc::EPERM],
        ),
    ));
    v.push((
        "pivot_root",
        expect(
            sys(libc::SYS_pivot_root, [bad, bad, 0, 0, 0, 0]),
            &[libc::EPERM],
        ),
    ));
    v.push((
        "chroot",
        expect(
            sys(libc::SYS_chroot, [tmp.as_ptr() as i64, 0, 0, 0, 0, 0]),
            &[libc::EPERM],
        ),
    ));
    v.push((
        "fsopen (new mount API)",
        expect(
            sys(libc::SYS_fsopen, [tmpfs.as_ptr() as i64, 0, 0, 0, 0, 0]),
            &[libc::ENOSYS],
        ),
    ));
    v.push((
        "open_tree (new mount API)",
        expect(
            sys(libc::SYS_open_tree, [-100, tmp.as_ptr() as i64, 1, 0, 0, 0]),
            &[libc::ENOSYS],
        ),
    ));
    v.push((
        "unshare(CLONE_NEWUSER)",
        expect(
            sys(
                libc::SYS_unshare,
                [libc::CLONE_NEWUSER as i64, 0, 0, 0, 0, 0],
            ),
            &[libc::EPERM],
        ),
    ));
    v.push((
        "unshare(CLONE_NEWNS)",
        expect(
            sys(libc::SYS_unshare, [libc::CLONE_NEWNS as i64, 0, 0, 0, 0, 0]),
            &[libc::EPERM],
        ),
    ));
    v.push((
        "clone(CLONE_NEWUSER)",
        clone_flags(libc::CLONE_NEWUSER as i64),
    ));
    v.push((
        "clone(CLONE_NEWNET)",
        clone_flags(libc::CLONE_NEWNET as i64),
    ));
    v.push((
        "clone3",
        expect(
            sys(libc::SYS_clone3, [bad, 88, 0, 0, 0, 0]),
            &[libc::ENOSYS],
        ),
    ));
    let ns = std::fs::File::open("/proc/1/ns/net");
    let nsfd = ns
        .as_ref()
        .map(|f| std::os::fd::AsRawFd::as_raw_fd(f) as i64)
        .unwrap_or(-1);
    v.push((
        "setns via /proc/1/ns/net",
        expect(sys(libc::SYS_setns, [nsfd, 0, 0, 0, 0, 0]), &[libc::EPERM]),
    ));
    v.push((
        "ptrace(PTRACE_ATTACH, 1)",
        expect(
            sys(
                libc::SYS_ptrace,
                [libc::PTRACE_ATTACH as i64, 1, 0, 0, 0, 0],
            ),
            &[libc::EPERM],
        ),
    ));
    v.push(("ptrace a sibling", ptrace_sibling()));
    v.push((
        "open /proc/1/mem rw",
        match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/proc/1/mem")
        {
            Ok(_) => (false, "opened".into()),
            Err(e) => (true, e.to_string()),
        },
    ));
    v.push((
        "process_vm_readv pid 1",
        expect(
            sys(libc::SYS_process_vm_readv, [1, bad, 1, bad, 1, 0]),
            &[libc::EPERM],
        ),
    ));
    v.push((
        "host marker in /proc/1/environ",
        no_marker(ctx, "/proc/1/environ"),
    ));
    v.push((
        "host marker in /proc/1/cmdline",
        no_marker(ctx, "/proc/1/cmdline"),
    ));
    v.push((
        "host marker in own environ",
        no_marker(ctx, "/proc/self/environ"),
    ));
    v.push((
        "write into a read-only bind (/usr)",
        write_probe("/usr/gig-escape"),
    ));
    v.push(("write into the sandbox root", write_probe("/gig-escape")));
    v.push((
        "read /etc/shadow (not bound)",
        match read("/etc/shadow") {
            Ok(_) => (false, "read".into()),
            Err(e) => (true, e),
        },
    ));
    v.push((
        "list /root (not bound)",
        match std::fs::read_dir("/root") {
            Ok(_) => (false, "listed".into()),
            Err(e) => (true, e.to_string()),
        },
    ));
    v.push((
        "keyctl",
        expect(
            sys(
                libc::SYS_keyctl,
                [
                    libc::KEYCTL_GET_KEYRING_ID as i64,
                    libc::KEY_SPEC_SESSION_KEYRING as i64,
                    0,
                    0,
                    0,
                    0,
                ],
            ),
            &[libc::EPERM],
        ),
    ));
    v.push((
        "add_key",
        expect(
            sys(libc::SYS_add_key, [bad, bad, 0, 0, 0, 0]),
            &[libc::EPERM],
        ),
    ));
    v.push((
        "bpf",
        expect(
            sys(libc::SYS_bpf, [5 /* BPF_PROG_LOAD */, bad, 0, 0, 0, 0]),
            &[libc::EPERM],
        ),
    ));
    v.push((
        "perf_event_open",
        expect(
            sys(libc::SYS_perf_event_open, [bad, 0, -1, -1, 0, 0]),
            &[libc::EPERM],
        ),
    ));
    v.push((
        "io_uring_setup",
        expect(
            sys(libc::SYS_io_uring_setup, [1, bad, 0, 0, 0, 0]),
            &[libc::EPERM],
        ),
    ));
    v.push((
        "userfaultfd",
        expect(
            sys(libc::SYS_userfaultfd, [0, 0, 0, 0, 0, 0]),
            &[libc::EPERM],
        ),
    ));
    v.push((
        "init_module",
        expect(
            sys(libc::SYS_init_module, [bad, 0, bad, 0, 0, 0]),
            &[libc::EPERM],
        ),
    ));
    v.push((
        "finit_module",
        expect(
            sys(libc::SYS_finit_module, [-1, bad, 0, 0, 0, 0]),
            &[libc::EPERM],
        ),
    ));
    v.push((
        "kexec_load",
        expect(
            sys(libc::SYS_kexec_load, [0, 0, bad, 0, 0, 0]),
            &[libc::EPERM],
        ),
    ));
    v.push((
        "reboot (invalid command)",
        expect(
            sys(
                libc::SYS_reboot,
                [0xfee1dead, 672274793, 0x0bad_c0de, 0, 0, 0],
            ),
            &[libc::EPERM],
        ),
    ));
    v.push((
        "swapon",
        expect(sys(libc::SYS_swapon, [bad, 0, 0, 0, 0, 0]), &[libc::EPERM]),
    ));
    v.push((
        "kill the host test runner",
        expect(
            sys(libc::SYS_kill, [ctx.host_pid as i64, 0, 0, 0, 0, 0]),
            &[libc::ESRCH],
        ),
    ));
    v.push(("see host processes in /proc", {
        let pids = std::fs::read_dir("/proc")
            .map(|d| {
                d.flatten()
                    .filter(|e| {
                        e.file_name()
                            .to_string_lossy()
                            .bytes()
                            .all(|b| b.is_ascii_digit())
                    })
                    .count()
            })
            .unwrap_or(0);
        let runner =
            std::path::Path::new(&format!("/proc/{}", ctx.host_pid)).exists() && ctx.host_pid > 10;
        (pids < 10 && !runner, format!("{pids} pids visible"))
    }));
    v.push((
        "TCP to the host's 127.0.0.1 listener",
        match TcpStream::connect_timeout(
            &SocketAddrV4::new(Ipv4Addr::LOCALHOST, ctx.port).into(),
            Duration::from_secs(2),
        ) {
            Ok(_) => (false, "connected".into()),
            Err(e) => (true, e.to_string()),
        },
    ));
    v.push((
        "raw ICMP socket",
        expect(
            sys(
                libc::SYS_socket,
                [
                    libc::AF_INET as i64,
                    libc::SOCK_RAW as i64,
                    libc::IPPROTO_ICMP as i64,
                    0,
                    0,
                    0,
                ],
            ),
            &[libc::EPERM, libc::EAFNOSUPPORT],
        ),
    ));
    v.push((
        "AF_PACKET socket",
        expect(
            sys(
                libc::SYS_socket,
                [libc::AF_PACKET as i64, libc::SOCK_RAW as i64, 0, 0, 0, 0],
            ),
            &[libc::EAFNOSUPPORT],
        ),
    ));
    v.push((
        "TIOCSTI on stdin",
        expect(
            sys(libc::SYS_ioctl, [0, libc::TIOCSTI as i64, bad, 0, 0, 0]),
            &[libc::EPERM],
        ),
    ));
    v.push((
        "x32 syscall ABI",
        expect(sys(0x4000_0000 | libc::SYS_getpid, [0; 6]), &[libc::ENOSYS]),
    ));
    v.push((
        "mknod a device",
        expect(
            sys(
                libc::SYS_mknodat,
                [
                    -100,
                    c("/tmp/null").as_ptr() as i64,
                    (libc::S_IFCHR | 0o666) as i64,
                    libc::makedev(1, 3) as i64,
                    0,
                    0,
                ],
            ),
            &[libc::EPERM],
        ),
    ));
    let mut caps = [0u32; 6];
    caps.iter_mut().for_each(|c| *c = u32::MAX);
    let mut hdr = [0x2008_0522u32, 0];
    v.push((
        "capset raise all",
        expect(
            sys(
                libc::SYS_capset,
                [hdr.as_mut_ptr() as i64, caps.as_ptr() as i64, 0, 0, 0, 0],
            ),
            &[libc::EPERM],
        ),
    ));
    v.push((
        "setuid(0)",
        expect_fail(sys(libc::SYS_setuid, [0, 0, 0, 0, 0, 0])),
    ));
    v.push((
        "personality(ADDR_NO_RANDOMIZE)",
        expect(
            sys(
                libc::SYS_personality,
                [libc::ADDR_NO_RANDOMIZE as i64, 0, 0, 0, 0, 0],
            ),
            &[libc::EPERM],
        ),
    ));
    for (field, want) in [
        ("CapEff:", "0000000000000000"),
        ("CapPrm:", "0000000000000000"),
        ("CapBnd:", "0000000000000000"),
        ("CapAmb:", "0000000000000000"),
        ("NoNewPrivs:", "1"),
    ] {
        let got = status_field(field);
        let name: &'static str =
            Box::leak(format!("/proc/self/status {field} {want}").into_boxed_str());
        v.push((name, (got == want, format!("{field} {got}"))));
    }
    v.push(("inherited fds beyond stdio", {
        let fds: Vec<String> = std::fs::read_dir("/proc/self/fd")
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        // 0-2 plus the directory handle read_dir itself holds.
        (fds.len() <= 4, format!("open fds: {}", fds.join(",")))
    }));
    v.push(("fork bomb (RLIMIT_NPROC)", fork_bomb()));
    v.push(("memory hog (2 GiB)", memory_hog()));
    v
}

fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn net_main(args: &[String]) {
    // More SPECs come one per line on stdin; nothing is tried before it closes, so the test can
    // read the sandbox's addresses and set up its observers first.
    let mut specs = args.to_vec();
    let mut input = String::new();
    let _ = std::io::stdin().read_to_string(&mut input);
    specs.extend(
        input
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from),
    );
    match net::run(&specs) {
        Ok(rows) => {
            for row in rows {
                println!(
                    "{{\"attempt\":{},\"outcome\":\"{}\",\"errno\":{},\"detail\":{}}}",
                    json_str(&row.attempt),
                    row.outcome,
                    json_str(&row.errno),
                    json_str(&row.detail)
                );
            }
        }
        Err(e) => {
            eprintln!("escape-probe: {e}");
            std::process::exit(2);
        }
    }
}

fn main() {
    let all: Vec<String> = std::env::args().skip(1).collect();
    if all.first().is_some_and(|a| a == "--net") {
        return net_main(&all[1..]);
    }
    let mut args = std::env::args().skip(1);
    let mut ctx = Ctx {
        marker: String::new(),
        host_pid: 0,
        port: 0,
    };
    while let Some(a) = args.next() {
        let val = args.next().unwrap_or_default();
        match a.as_str() {
            // Reversed, so the marker itself never appears in this process's argv.
            "--marker-reversed" => ctx.marker = val.chars().rev().collect(),
            "--host-pid" => ctx.host_pid = val.parse().unwrap_or(0),
            "--port" => ctx.port = val.parse().unwrap_or(0),
            _ => {
                eprintln!("escape-probe: unknown argument {a}");
                std::process::exit(2);
            }
        }
    }
    if ctx.marker.len() < 8 {
        eprintln!("escape-probe: --marker-reversed is required");
        std::process::exit(2);
    }
    for (attempt, (blocked, detail)) in attempts(&ctx) {
        let outcome = if blocked { "blocked" } else { "ESCAPED" };
        println!(
            "{{\"attempt\":{},\"outcome\":\"{outcome}\",\"detail\":{}}}",
            json_str(attempt),
            json_str(&detail)
        );
    }
}
