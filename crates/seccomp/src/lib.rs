//! The sandbox's seccomp policy: a reviewed table of `(syscall, condition, action, reason)` rows,
//! compiled with `seccompiler` into one classic-BPF program for the native architecture.
//!
//! It owns the policy and its compilation only; it never installs a filter on the calling process
//! except through [`install`], which only `bootstrap` calls. Denied calls return an errno (`EPERM`,
//! or `ENOSYS` where a libc must fall back), never kill, so a server fails cleanly.

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::io::Write;

pub use seccompiler::{BpfProgram, sock_filter};
use seccompiler::{
    SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule,
    TargetArch,
};

mod policy;
pub use policy::{Action, RULES, Rule, When};

/// First syscall number this policy was not reviewed against: everything at or above it returns
/// `ENOSYS` (so new kernel interfaces, e.g. `open_tree_attr` = 467, are off until reviewed).
pub const FIRST_UNREVIEWED_NR: u32 = 467;
/// x32 ABI syscalls on x86_64 carry this bit in their number; they are rejected wholesale.
pub const X32_SYSCALL_BIT: u32 = 0x4000_0000;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unsupported architecture {0} (the policy is written for x86_64 and aarch64)")]
    UnsupportedArch(&'static str),
    #[error("invalid condition in the rule for {syscall}: {source}")]
    Condition {
        syscall: &'static str,
        source: seccompiler::BackendError,
    },
    #[error("compiling the {errno} group: {source}")]
    Compile {
        errno: i32,
        source: seccompiler::BackendError,
    },
    #[error("the combined program has {0} instructions; the kernel takes at most 4096")]
    TooLong(usize),
    #[error("writing the filter: {0}")]
    Write(#[source] std::io::Error),
    #[error("installing the filter: {0}")]
    Install(#[source] seccompiler::Error),
}

const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JMP_JA: u16 = 0x05;
const BPF_JMP_JEQ_K: u16 = 0x15;
const BPF_JMP_JGE_K: u16 = 0x35;
const BPF_RET_K: u16 = 0x06;
const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
const DATA_NR: u32 = 0;
const DATA_ARCH: u32 = 4;

fn native_arch() -> Result<(TargetArch, u32), Error> {
    match std::env::consts::ARCH {
        "x86_64" => Ok((TargetArch::x86_64, 0xC000_003E)),
        "aarch64" => Ok((TargetArch::aarch64, 0xC000_00B7)),
        other => Err(Error::UnsupportedArch(other)),
    }
}

fn stmt(code: u16, k: u32) -> sock_filter {
    sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

fn ret_errno(errno: i32) -> sock_filter {
    stmt(BPF_RET_K, SECCOMP_RET_ERRNO | (errno as u32 & 0xffff))
}

/// The prologue seccompiler cannot express: a foreign ABI (i386 via `int 0x80`), an x32 number, or a
/// syscall newer than this review all get `ENOSYS` before any table rule is consulted.
fn prologue(audit_arch: u32) -> Vec<sock_filter> {
    let mut p = vec![
        stmt(BPF_LD_W_ABS, DATA_ARCH),
        jump(BPF_JMP_JEQ_K, audit_arch, 1, 0),
        ret_errno(libc::ENOSYS),
        stmt(BPF_LD_W_ABS, DATA_NR),
    ];
    if cfg!(target_arch = "x86_64") {
        p.push(jump(BPF_JMP_JGE_K, X32_SYSCALL_BIT, 0, 1));
        p.push(ret_errno(libc::ENOSYS));
    }
    p.push(jump(BPF_JMP_JGE_K, FIRST_UNREVIEWED_NR, 0, 1));
    p.push(ret_errno(libc::ENOSYS));
    p
}

fn cond(
    syscall: &'static str,
    arg: u8,
    op: SeccompCmpOp,
    v: u64,
) -> Result<SeccompCondition, Error> {
    SeccompCondition::new(arg, SeccompCmpArgLen::Dword, op, v)
        .map_err(|source| Error::Condition { syscall, source })
}

/// Translates one row's condition into seccompiler rules (rules are OR-ed, conditions AND-ed).
fn rules_for(rule: &Rule) -> Result<Vec<SeccompRule>, Error> {
    let name = rule.syscall;
    let one = |conds: Vec<SeccompCondition>| {
        SeccompRule::new(conds).map_err(|source| Error::Condition {
            syscall: name,
            source,
        })
    };
    match rule.when {
        When::Always => Ok(vec![]),
        When::ArgHasAnyBit { arg, bits } => (0..32)
            .map(|b| 1u64 << b)
            .filter(|bit| bits & bit != 0)
            .map(|bit| one(vec![cond(name, arg, SeccompCmpOp::MaskedEq(bit), bit)?]))
            .collect(),
        When::ArgIn { arg, values } => values
            .iter()
            .map(|&v| one(vec![cond(name, arg, SeccompCmpOp::Eq, v)?]))
            .collect(),
        When::ArgNotIn { arg, values } => Ok(vec![one(values
            .iter()
            .map(|&v| cond(name, arg, SeccompCmpOp::Ne, v))
            .collect::<Result<_, _>>()?)?]),
    }
}

/// Compiles [`RULES`] for the native architecture into one program.
///
/// seccompiler gives a filter a single match action, so the table is compiled once per errno and
/// the pieces are chained: every `RET ALLOW` of a piece becomes a jump to the next piece, and only
/// the last piece really allows.
pub fn compile() -> Result<BpfProgram, Error> {
    let (arch, audit_arch) = native_arch()?;
    let mut groups: BTreeMap<i32, BTreeMap<i64, Vec<SeccompRule>>> = BTreeMap::new();
    for rule in RULES.iter().filter(|r| r.nr.is_some()) {
        let nr = rule.nr.unwrap_or_default();
        let entry = groups
            .entry(rule.action.errno())
            .or_default()
            .entry(nr)
            .or_default();
        entry.extend(rules_for(rule)?);
    }
    let mut program = prologue(audit_arch);
    let count = groups.len();
    for (i, (errno, rules)) in groups.into_iter().enumerate() {
        let filter = SeccompFilter::new(
            rules,
            SeccompAction::Allow,
            SeccompAction::Errno(errno as u32),
            arch,
        )
        .map_err(|source| Error::Compile { errno, source })?;
        let mut piece: BpfProgram = filter
            .try_into()
            .map_err(|source| Error::Compile { errno, source })?;
        if i + 1 < count {
            let len = piece.len();
            for (at, ins) in piece.iter_mut().enumerate() {
                if ins.code == BPF_RET_K && ins.k == SECCOMP_RET_ALLOW {
                    *ins = stmt(BPF_JMP_JA, (len - at - 1) as u32);
                }
            }
        }
        program.extend(piece);
    }
    if program.len() > 4096 {
        return Err(Error::TooLong(program.len()));
    }
    Ok(program)
}

/// The raw `struct sock_filter[]` bytes, as bubblewrap's `--seccomp FD` reads them.
pub fn to_bytes(program: &[sock_filter]) -> Vec<u8> {
    let mut out = Vec::with_capacity(program.len() * 8);
    for ins in program {
        out.extend_from_slice(&ins.code.to_ne_bytes());
        out.extend_from_slice(&[ins.jt, ins.jf]);
        out.extend_from_slice(&ins.k.to_ne_bytes());
    }
    out
}

/// Compiles the policy and writes its raw bytes to `w` (a pipe or memfd handed to bubblewrap).
pub fn write_to<W: Write>(mut w: W) -> Result<(), Error> {
    w.write_all(&to_bytes(&compile()?)).map_err(Error::Write)
}

/// Sets `no_new_privs` and installs `program` on the calling thread. Only `bootstrap` calls this.
pub fn install(program: &[sock_filter]) -> Result<(), Error> {
    seccompiler::apply_filter(program).map_err(Error::Install)
}

#[cfg(test)]
mod tests;
