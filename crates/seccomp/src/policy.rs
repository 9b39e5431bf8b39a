//! The reviewed policy table. Each row says why; `docs/seccomp.md` compares it with Docker's.

/// What a denied call returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// `EPERM`: "you may not", as an unprivileged process would see.
    Eperm,
    /// `ENOSYS`: "no such call", so libcs fall back to an older interface (clone3 → clone).
    Enosys,
    /// `EAFNOSUPPORT`: the socket family does not exist here.
    Eafnosupport,
}

impl Action {
    pub fn errno(self) -> i32 {
        match self {
            Action::Eperm => libc::EPERM,
            Action::Enosys => libc::ENOSYS,
            Action::Eafnosupport => libc::EAFNOSUPPORT,
        }
    }
}

/// When a row applies (argument comparisons look at the low 32 bits).
#[derive(Clone, Copy, Debug)]
pub enum When {
    Always,
    /// `args[arg]` has any of `bits` set.
    ArgHasAnyBit {
        arg: u8,
        bits: u64,
    },
    /// `args[arg]` equals one of `values`.
    ArgIn {
        arg: u8,
        values: &'static [u64],
    },
    /// `args[arg]` equals none of `values`.
    ArgNotIn {
        arg: u8,
        values: &'static [u64],
    },
}

/// One reviewed row. `nr` is `None` where the call does not exist on this architecture.
#[derive(Clone, Copy, Debug)]
pub struct Rule {
    pub syscall: &'static str,
    pub nr: Option<i64>,
    pub when: When,
    pub action: Action,
    pub reason: &'static str,
}

macro_rules! row {
    ($name:ident, $nr:expr, $when:expr, $action:ident, $reason:literal) => {
        Rule {
            syscall: stringify!($name),
            nr: $nr,
            when: $when,
            action: Action::$action,
            reason: $reason,
        }
    };
}
/// A row for a call every supported architecture has.
macro_rules! deny {
    ($name:ident, $action:ident, $reason:literal) => {
        deny!($name, When::Always, $action, $reason)
    };
    ($name:ident, $when:expr, $action:ident, $reason:literal) => {
        paste_nr!($name, $when, $action, $reason, all)
    };
}
/// A row for a call only x86_64 has (legacy interfaces dropped from the generic table).
macro_rules! deny_x86 {
    ($name:ident, $action:ident, $reason:literal) => {
        paste_nr!($name, When::Always, $action, $reason, x86)
    };
}
macro_rules! paste_nr {
    ($name:ident, $when:expr, $action:ident, $reason:literal, all) => {
        row!($name, Some(sys::$name), $when, $action, $reason)
    };
    ($name:ident, $when:expr, $action:ident, $reason:literal, x86) => {
        row!(
            $name,
            {
                #[cfg(target_arch = "x86_64")]
                let nr = Some(sys::$name);
                #[cfg(not(target_arch = "x86_64"))]
                let nr = None;
                nr
            },
            $when,
            $action,
            $reason
        )
    };
}

/// Syscall numbers under their plain names, so the table reads like strace output.
#[allow(non_upper_case_globals)]
mod sys {
    macro_rules! nrs { ($($n:ident = $s:ident),* $(,)?) => { $(pub const $n: i64 = libc::$s;)* } }
    nrs!(
        mount = SYS_mount,
        umount2 = SYS_umount2,
        pivot_root = SYS_pivot_root,
        chroot = SYS_chroot,
        fsopen = SYS_fsopen,
        fsconfig = SYS_fsconfig,
        fsmount = SYS_fsmount,
        fspick = SYS_fspick,
        move_mount = SYS_move_mount,
        open_tree = SYS_open_tree,
        mount_setattr = SYS_mount_setattr,
        ptrace = SYS_ptrace,
        process_vm_readv = SYS_process_vm_readv,
        process_vm_writev = SYS_process_vm_writev,
        process_madvise = SYS_process_madvise,
        pidfd_getfd = SYS_pidfd_getfd,
        kcmp = SYS_kcmp,
        keyctl = SYS_keyctl,
        add_key = SYS_add_key,
        request_key = SYS_request_key,
        bpf = SYS_bpf,
        perf_event_open = SYS_perf_event_open,
        userfaultfd = SYS_userfaultfd,
        init_module = SYS_init_module,
        finit_module = SYS_finit_module,
        delete_module = SYS_delete_module,
        kexec_load = SYS_kexec_load,
        kexec_file_load = SYS_kexec_file_load,
        reboot = SYS_reboot,
        swapon = SYS_swapon,
        swapoff = SYS_swapoff,
        setns = SYS_setns,
        unshare = SYS_unshare,
        clone = SYS_clone,
        clone3 = SYS_clone3,
        io_uring_setup = SYS_io_uring_setup,
        io_uring_enter = SYS_io_uring_enter,
        io_uring_register = SYS_io_uring_register,
        acct = SYS_acct,
        clock_adjtime = SYS_clock_adjtime,
        clock_settime = SYS_clock_settime,
        settimeofday = SYS_settimeofday,
        adjtimex = SYS_adjtimex,
        get_mempolicy = SYS_get_mempolicy,
        set_mempolicy = SYS_set_mempolicy,
        mbind = SYS_mbind,
        move_pages = SYS_move_pages,
        migrate_pages = SYS_migrate_pages,
        set_mempolicy_home_node = SYS_set_mempolicy_home_node,
        name_to_handle_at = SYS_name_to_handle_at,
        open_by_handle_at = SYS_open_by_handle_at,
        lookup_dcookie = SYS_lookup_dcookie,
        nfsservctl = SYS_nfsservctl,
        personality = SYS_personality,
        quotactl = SYS_quotactl,
        quotactl_fd = SYS_quotactl_fd,
        syslog = SYS_syslog,
        fanotify_init = SYS_fanotify_init,
        vhangup = SYS_vhangup,
        sethostname = SYS_sethostname,
        setdomainname = SYS_setdomainname,
        ioctl = SYS_ioctl,
        socket = SYS_socket,
    );
    #[cfg(target_arch = "x86_64")]
    nrs!(
        _sysctl = SYS__sysctl,
        uselib = SYS_uselib,
        ustat = SYS_ustat,
        sysfs = SYS_sysfs,
        iopl = SYS_iopl,
        ioperm = SYS_ioperm,
        modify_ldt = SYS_modify_ldt,
    );
    // Removed interfaces libc no longer names; numbers from arch/x86/entry/syscalls/syscall_64.tbl.
    #[cfg(target_arch = "x86_64")]
    pub const create_module: i64 = 174;
    #[cfg(target_arch = "x86_64")]
    pub const get_kernel_syms: i64 = 177;
    #[cfg(target_arch = "x86_64")]
    pub const query_module: i64 = 178;
}

/// Namespace-creating clone flags: a nested user namespace is the classic route to kernel attack
/// surface that needs "root", and the other namespaces could hide from the gateway's view.
pub const CLONE_NAMESPACE_FLAGS: u64 = (libc::CLONE_NEWUSER
    | libc::CLONE_NEWNS
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWCGROUP) as u64;

/// Socket families a server may use: local IPC, IP (its netns only routes to the proxy), and
/// route netlink, which glibc needs for `getaddrinfo(AI_ADDRCONFIG)`.
pub const ALLOWED_SOCKET_FAMILIES: &[u64] = &[
    libc::AF_UNIX as u64,
    libc::AF_INET as u64,
    libc::AF_INET6 as u64,
    libc::AF_NETLINK as u64,
];

/// `personality` values allowed: the default and the query value (as Docker, minus the
/// ASLR-disabling ones).
pub const ALLOWED_PERSONALITIES: &[u64] = &[0, 0xffff_ffff];

/// Terminal ioctls that inject input into or reconfigure the controlling terminal.
#[allow(clippy::unnecessary_cast)] // libc types these c_ulong on glibc but c_int elsewhere
pub const TERMINAL_INJECTION_IOCTLS: &[u64] = &[libc::TIOCSTI as u64, libc::TIOCLINUX as u64];

pub const RULES: &[Rule] = &[
    // --- filesystem view ---
    deny!(
        mount,
        Eperm,
        "the mount table is fixed by bubblewrap; remounting could expose host paths"
    ),
    deny!(umount2, Eperm, "unmounting could reveal what a bind hides"),
    deny!(
        pivot_root,
        Eperm,
        "changing the root is a container runtime's job, not a server's"
    ),
    deny!(
        chroot,
        Eperm,
        "Docker denies it without CAP_SYS_CHROOT; a server has no use for it"
    ),
    deny!(
        fsopen,
        Enosys,
        "new mount API: ENOSYS so callers fall back to mount(2), which is denied"
    ),
    deny!(fsconfig, Enosys, "new mount API (see fsopen)"),
    deny!(fsmount, Enosys, "new mount API (see fsopen)"),
    deny!(fspick, Enosys, "new mount API (see fsopen)"),
    deny!(move_mount, Enosys, "new mount API (see fsopen)"),
    deny!(
        open_tree,
        Enosys,
        "new mount API: can clone a mount tree (see fsopen)"
    ),
    deny!(
        mount_setattr,
        Enosys,
        "new mount API: could drop MS_RDONLY from a bind"
    ),
    deny!(
        name_to_handle_at,
        Eperm,
        "file handles bypass path-based confinement (shocker)"
    ),
    deny!(
        open_by_handle_at,
        Eperm,
        "file handles open files outside the mount view (shocker)"
    ),
    deny!(quotactl, Eperm, "filesystem quota administration"),
    deny!(quotactl_fd, Eperm, "filesystem quota administration"),
    // --- other processes ---
    deny!(
        ptrace,
        Eperm,
        "tracing bwrap's pid 1 or a sibling would bypass its filter and namespaces"
    ),
    deny!(process_vm_readv, Eperm, "reads another process's memory"),
    deny!(process_vm_writev, Eperm, "writes another process's memory"),
    deny!(process_madvise, Eperm, "acts on another process's memory"),
    deny!(
        pidfd_getfd,
        Eperm,
        "steals file descriptors from another process"
    ),
    deny!(
        kcmp,
        Eperm,
        "compares other processes' kernel objects; an address-layout oracle"
    ),
    // --- namespaces ---
    deny!(
        setns,
        Eperm,
        "joining another namespace (e.g. the host's via /proc) is an escape"
    ),
    deny!(
        unshare,
        Eperm,
        "nested namespaces (above all user namespaces) widen kernel attack surface"
    ),
    deny!(
        clone,
        When::ArgHasAnyBit {
            arg: 0,
            bits: CLONE_NAMESPACE_FLAGS
        },
        Eperm,
        "clone with namespace flags is unshare by another name; plain fork/threads stay allowed"
    ),
    deny!(
        clone3,
        Enosys,
        "flags live in memory a filter cannot read; ENOSYS makes libcs use clone"
    ),
    // --- kernel attack surface ---
    deny!(keyctl, Eperm, "the keyring is not namespaced"),
    deny!(add_key, Eperm, "the keyring is not namespaced"),
    deny!(request_key, Eperm, "the keyring is not namespaced"),
    deny!(
        bpf,
        Eperm,
        "eBPF is a large kernel attack surface and can read kernel memory"
    ),
    deny!(
        perf_event_open,
        Eperm,
        "perf events leak kernel addresses and have a history of bugs"
    ),
    deny!(
        userfaultfd,
        Eperm,
        "a standard tool for winning kernel races in exploits"
    ),
    deny!(
        io_uring_setup,
        Eperm,
        "io_uring bypasses the syscall filter and has a long CVE record"
    ),
    deny!(io_uring_enter, Eperm, "see io_uring_setup"),
    deny!(io_uring_register, Eperm, "see io_uring_setup"),
    deny!(
        lookup_dcookie,
        Eperm,
        "profiling interface, CAP_SYS_ADMIN in Docker"
    ),
    deny!(
        fanotify_init,
        Eperm,
        "filesystem-wide monitoring, CAP_SYS_ADMIN in Docker"
    ),
    deny!(nfsservctl, Eperm, "removed kernel interface"),
    deny!(
        personality,
        When::ArgNotIn {
            arg: 0,
            values: ALLOWED_PERSONALITIES
        },
        Eperm,
        "non-default personalities disable ASLR or enable legacy ABIs"
    ),
    deny!(
        ioctl,
        When::ArgIn {
            arg: 1,
            values: TERMINAL_INJECTION_IOCTLS
        },
        Eperm,
        "TIOCSTI/TIOCLINUX push input into a terminal the server might share with an operator"
    ),
    deny!(
        socket,
        When::ArgNotIn {
            arg: 0,
            values: ALLOWED_SOCKET_FAMILIES
        },
        Eafnosupport,
        "packet, raw-protocol, vsock, bluetooth... families are attack surface a server never needs"
    ),
    // --- whole-machine state ---
    deny!(init_module, Eperm, "loading kernel code"),
    deny!(finit_module, Eperm, "loading kernel code"),
    deny!(delete_module, Eperm, "unloading kernel code"),
    deny!(kexec_load, Eperm, "replacing the running kernel"),
    deny!(kexec_file_load, Eperm, "replacing the running kernel"),
    deny!(reboot, Eperm, "rebooting the host (or the pid namespace)"),
    deny!(swapon, Eperm, "host memory administration"),
    deny!(swapoff, Eperm, "host memory administration"),
    deny!(acct, Eperm, "process accounting is host-wide"),
    deny!(
        syslog,
        Eperm,
        "the kernel log leaks addresses and host activity"
    ),
    deny!(clock_adjtime, Eperm, "the clock is host-wide"),
    deny!(clock_settime, Eperm, "the clock is host-wide"),
    deny!(settimeofday, Eperm, "the clock is host-wide"),
    deny!(
        adjtimex,
        Eperm,
        "the clock is host-wide (Docker allows read-only use; a server never needs it)"
    ),
    deny!(
        sethostname,
        Eperm,
        "the hostname is set by the sandbox spec"
    ),
    deny!(
        setdomainname,
        Eperm,
        "the domain name is set by the sandbox spec"
    ),
    deny!(vhangup, Eperm, "hangs up a terminal the server might share"),
    deny!(get_mempolicy, Eperm, "NUMA policy; CAP_SYS_NICE in Docker"),
    deny!(set_mempolicy, Eperm, "NUMA policy; CAP_SYS_NICE in Docker"),
    deny!(
        set_mempolicy_home_node,
        Eperm,
        "NUMA policy; CAP_SYS_NICE in Docker"
    ),
    deny!(mbind, Eperm, "NUMA policy; CAP_SYS_NICE in Docker"),
    deny!(move_pages, Eperm, "moves another process's pages"),
    deny!(migrate_pages, Eperm, "moves another process's pages"),
    deny_x86!(create_module, Eperm, "removed kernel interface"),
    deny_x86!(get_kernel_syms, Eperm, "removed kernel interface"),
    deny_x86!(query_module, Eperm, "removed kernel interface"),
    deny_x86!(_sysctl, Eperm, "removed kernel interface"),
    deny_x86!(uselib, Eperm, "legacy a.out loader"),
    deny_x86!(ustat, Eperm, "legacy filesystem statistics"),
    deny_x86!(sysfs, Eperm, "legacy filesystem-type enumeration"),
    deny_x86!(iopl, Eperm, "raw I/O port access"),
    deny_x86!(ioperm, Eperm, "raw I/O port access"),
    deny_x86!(
        modify_ldt,
        Eperm,
        "16-bit segments; only old emulators need it, and it had CVEs"
    ),
];
