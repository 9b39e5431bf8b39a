use super::*;

const ALLOW: u32 = SECCOMP_RET_ALLOW;
fn errno(e: i32) -> u32 {
    SECCOMP_RET_ERRNO | e as u32
}

/// A classic-BPF interpreter for the instructions seccomp filters use, run over a synthetic
/// `struct seccomp_data` so the compiled program is checked without installing it.
fn run(prog: &[sock_filter], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
    let mut data = Vec::with_capacity(64);
    data.extend_from_slice(&nr.to_ne_bytes());
    data.extend_from_slice(&arch.to_ne_bytes());
    data.extend_from_slice(&0u64.to_ne_bytes());
    for a in args {
        data.extend_from_slice(&a.to_ne_bytes());
    }
    let (mut acc, mut pc) = (0u32, 0usize);
    loop {
        let ins = &prog[pc];
        pc += 1;
        let cond = |taken: bool| {
            if taken {
                ins.jt as usize
            } else {
                ins.jf as usize
            }
        };
        match ins.code {
            0x20 => {
                let o = ins.k as usize;
                acc = u32::from_ne_bytes(data[o..o + 4].try_into().unwrap());
            }
            0x54 => acc &= ins.k,
            0x05 => pc += ins.k as usize,
            0x15 => pc += cond(acc == ins.k),
            0x25 => pc += cond(acc > ins.k),
            0x35 => pc += cond(acc >= ins.k),
            0x45 => pc += cond(acc & ins.k != 0),
            0x06 => return ins.k,
            other => panic!("unexpected BPF opcode {other:#x} at {}", pc - 1),
        }
    }
}

fn native() -> u32 {
    native_arch().unwrap().1
}

fn call(nr: i64, args: [u64; 6]) -> u32 {
    run(&compile().unwrap(), native(), nr as u32, args)
}

#[test]
fn every_row_has_a_reason_and_is_unique() {
    let mut seen = std::collections::HashSet::new();
    for r in RULES {
        assert!(r.reason.len() > 10, "{} needs a reason", r.syscall);
        assert!(seen.insert(r.syscall), "{} listed twice", r.syscall);
    }
}

#[test]
fn unconditional_rows_return_their_errno() {
    for r in RULES.iter().filter(|r| matches!(r.when, When::Always)) {
        let Some(nr) = r.nr else { continue };
        assert_eq!(call(nr, [0; 6]), errno(r.action.errno()), "{}", r.syscall);
    }
}

#[test]
fn ordinary_calls_are_allowed() {
    for nr in [
        libc::SYS_read,
        libc::SYS_write,
        libc::SYS_openat,
        libc::SYS_execve,
        libc::SYS_exit_group,
        libc::SYS_mmap,
        libc::SYS_futex,
        libc::SYS_capset,
        libc::SYS_prctl,
        libc::SYS_seccomp,
    ] {
        assert_eq!(call(nr, [0; 6]), ALLOW, "syscall {nr}");
    }
}

#[test]
fn clone_is_denied_only_with_namespace_flags() {
    let fork = libc::SIGCHLD as u64;
    let thread = (libc::CLONE_VM
        | libc::CLONE_FS
        | libc::CLONE_FILES
        | libc::CLONE_SIGHAND
        | libc::CLONE_THREAD
        | libc::CLONE_SYSVSEM
        | libc::CLONE_SETTLS
        | libc::CLONE_PARENT_SETTID
        | libc::CLONE_CHILD_CLEARTID) as u64;
    assert_eq!(call(libc::SYS_clone, [fork, 0, 0, 0, 0, 0]), ALLOW);
    assert_eq!(call(libc::SYS_clone, [thread, 0, 0, 0, 0, 0]), ALLOW);
    for flag in [
        libc::CLONE_NEWUSER,
        libc::CLONE_NEWNS,
        libc::CLONE_NEWPID,
        libc::CLONE_NEWNET,
        libc::CLONE_NEWIPC,
        libc::CLONE_NEWUTS,
        libc::CLONE_NEWCGROUP,
    ] {
        assert_eq!(
            call(libc::SYS_clone, [fork | flag as u64, 0, 0, 0, 0, 0]),
            errno(libc::EPERM)
        );
    }
    assert_eq!(call(libc::SYS_clone3, [0; 6]), errno(libc::ENOSYS));
}

#[test]
#[allow(clippy::unnecessary_cast)] // the ioctl constants change type across libcs
fn terminal_injection_ioctls_are_denied_even_with_high_bits_set() {
    let sti = libc::TIOCSTI as u64;
    assert_eq!(
        call(libc::SYS_ioctl, [0, sti, 0, 0, 0, 0]),
        errno(libc::EPERM)
    );
    assert_eq!(
        call(
            libc::SYS_ioctl,
            [0, sti | 0xdead_beef_0000_0000, 0, 0, 0, 0]
        ),
        errno(libc::EPERM)
    );
    assert_eq!(
        call(libc::SYS_ioctl, [0, libc::TIOCLINUX as u64, 0, 0, 0, 0]),
        errno(libc::EPERM)
    );
    assert_eq!(
        call(libc::SYS_ioctl, [0, libc::TCGETS as u64, 0, 0, 0, 0]),
        ALLOW
    );
}

#[test]
fn socket_families_are_restricted() {
    for ok in [
        libc::AF_UNIX,
        libc::AF_INET,
        libc::AF_INET6,
        libc::AF_NETLINK,
    ] {
        assert_eq!(call(libc::SYS_socket, [ok as u64, 1, 0, 0, 0, 0]), ALLOW);
    }
    for bad in [
        libc::AF_PACKET,
        libc::AF_VSOCK,
        libc::AF_BLUETOOTH,
        libc::AF_KEY,
        libc::AF_ALG,
    ] {
        assert_eq!(
            call(libc::SYS_socket, [bad as u64, 3, 0, 0, 0, 0]),
            errno(libc::EAFNOSUPPORT)
        );
    }
}

#[test]
fn personality_allows_only_default_and_query() {
    assert_eq!(call(libc::SYS_personality, [0; 6]), ALLOW);
    assert_eq!(
        call(libc::SYS_personality, [0xffff_ffff, 0, 0, 0, 0, 0]),
        ALLOW
    );
    assert_eq!(
        call(libc::SYS_personality, [0x0040000, 0, 0, 0, 0, 0]),
        errno(libc::EPERM)
    );
}

#[test]
fn foreign_abis_and_unreviewed_numbers_get_enosys() {
    let prog = compile().unwrap();
    const AUDIT_ARCH_I386: u32 = 0x4000_0003;
    assert_eq!(run(&prog, AUDIT_ARCH_I386, 1, [0; 6]), errno(libc::ENOSYS));
    if cfg!(target_arch = "x86_64") {
        assert_eq!(
            run(&prog, native(), X32_SYSCALL_BIT | 1, [0; 6]),
            errno(libc::ENOSYS)
        );
    }
    assert_eq!(
        run(&prog, native(), FIRST_UNREVIEWED_NR, [0; 6]),
        errno(libc::ENOSYS)
    );
    assert_eq!(run(&prog, native(), FIRST_UNREVIEWED_NR - 1, [0; 6]), ALLOW);
}

#[test]
fn raw_bytes_are_the_sock_filter_array() {
    let prog = compile().unwrap();
    let mut out = Vec::new();
    write_to(&mut out).unwrap();
    assert_eq!(out.len(), prog.len() * 8);
    assert_eq!(out[..2], prog[0].code.to_ne_bytes());
    assert!(prog.len() < 4096);
}
