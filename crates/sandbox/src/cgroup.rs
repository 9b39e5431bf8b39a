//! Per-sandbox resource limits through cgroups: memory, pids and CPU.
//!
//! cgroup v2 is the target. Hosts that still mount the controllers on v1 hierarchies (hybrid
//! layouts, many CI and container hosts) get the same limits through v1's files; a host where
//! neither is writable gets [`CgroupSupport::Unavailable`] with the reason, which the gateway
//! prints at start (RLIMITs set by bootstrap still apply). A sandbox joins its cgroup while
//! bubblewrap is held at `--block-fd`, so nothing untrusted ever runs outside it.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use gig_policy::ResourceLimits;

/// CFS period for `cpu.max` / `cpu.cfs_period_us`.
const CPU_PERIOD_US: u64 = 100_000;

/// What the host lets the gateway do with cgroups, decided once at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupSupport {
    /// A unified-hierarchy directory whose children have memory, pids and cpu enabled.
    V2 {
        parent: PathBuf,
    },
    /// Per-controller v1 directories (each present only if that controller is writable).
    V1 {
        memory: Option<PathBuf>,
        pids: Option<PathBuf>,
        cpu: Option<PathBuf>,
    },
    Unavailable {
        reason: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("creating cgroup {0}: {1}")]
    Create(PathBuf, #[source] io::Error),
    #[error("setting {0}: {1}")]
    Limit(PathBuf, #[source] io::Error),
    #[error("moving pid {1} into {0}: {2}")]
    Join(PathBuf, u32, #[source] io::Error),
}

impl CgroupSupport {
    /// Finds where this process may create sandbox cgroups named under `group` (e.g.
    /// `gigmcp-1234`), preparing the parent directory. Never fails: the reason is kept instead.
    pub fn detect(group: &str) -> Self {
        let own = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        Self::detect_in(&own, &mounts, group)
    }

    fn detect_in(own: &str, mounts: &str, group: &str) -> Self {
        let mut v2_error = None;
        if let (Some(mount), Some(path)) = (mount_point(mounts, None), own_path(own, "")) {
            match prepare_v2(&mount.join(path.trim_start_matches('/')), group) {
                Ok(parent) => return CgroupSupport::V2 { parent },
                Err(e) => v2_error = Some(e),
            }
        }
        let v1 = |controller: &str| {
            let mount = mount_point(mounts, Some(controller))?;
            let path = own_path(own, controller)?;
            let dir = mount.join(path.trim_start_matches('/')).join(group);
            match fs::create_dir_all(&dir) {
                Ok(()) => Some(dir),
                Err(_) => None,
            }
        };
        let (memory, pids, cpu) = (v1("memory"), v1("pids"), v1("cpu"));
        if memory.is_some() || pids.is_some() || cpu.is_some() {
            return CgroupSupport::V1 { memory, pids, cpu };
        }
        CgroupSupport::Unavailable {
            reason: v2_error.unwrap_or_else(|| "no writable cgroup v2 or v1 hierarchy".into()),
        }
    }

    /// One line for the start-up log.
    pub fn describe(&self) -> String {
        match self {
            CgroupSupport::V2 { parent } => format!("cgroup v2 at {}", parent.display()),
            CgroupSupport::V1 { memory, pids, cpu } => {
                let on: Vec<&str> = [("memory", memory), ("pids", pids), ("cpu", cpu)]
                    .iter()
                    .filter(|(_, d)| d.is_some())
                    .map(|(n, _)| *n)
                    .collect();
                format!(
                    "cgroup v1 controllers ({}); v2 has none delegated",
                    on.join(", ")
                )
            }
            CgroupSupport::Unavailable { reason } => format!(
                "no cgroup limits ({reason}): sandboxes are limited by RLIMITs only \
                 (delegate cgroup v2 to the gateway, e.g. systemd Delegate=yes)"
            ),
        }
    }

    /// Removes the cgroups a gateway that died without tearing down left behind (SIGKILL, a
    /// crash): children named `<server>-<pid>-<n>` whose gateway `pid` is not running. A plain
    /// server's (`plain.…`) has what it still holds killed first; a sandbox's is removed only
    /// when empty (the kernel refuses otherwise). A live gateway's are never touched (its pid
    /// runs). Returns how many were removed.
    pub fn remove_leftovers(&self) -> usize {
        let parents: Vec<&PathBuf> = match self {
            CgroupSupport::V2 { parent } => vec![parent],
            CgroupSupport::V1 { memory, pids, cpu } => {
                [memory, pids, cpu].into_iter().flatten().collect()
            }
            CgroupSupport::Unavailable { .. } => Vec::new(),
        };
        let mut removed = 0;
        for parent in parents {
            let Ok(children) = fs::read_dir(parent) else {
                continue;
            };
            for child in children.flatten() {
                let name = child.file_name();
                let name = name.to_str().unwrap_or_default();
                let owner = gateway_pid(name);
                // Not ours to touch: no gateway pid in the name, or that gateway still runs.
                if owner.is_none_or(|pid| Path::new(&format!("/proc/{pid}")).exists()) {
                    continue;
                }
                // A plain server's holder may still hold what that server started (the dead
                // gateway could not kill it): killed now, as its teardown would have.
                if name.starts_with("plain.") {
                    SandboxCgroup {
                        dirs: vec![child.path()],
                    }
                    .kill_all();
                    // Dropping the guard above removed the directory once empty.
                    if !child.path().exists() {
                        removed += 1;
                    }
                    continue;
                }
                if fs::remove_dir(child.path()).is_ok() {
                    removed += 1;
                }
            }
        }
        removed
    }

    /// One cgroup with no limits, only to hold a process tree together (a plain server): in
    /// v2 under the parent, in v1 in the first hierarchy present (pids, memory, cpu). `None`
    /// when cgroups are unavailable.
    pub fn create_holder(&self, name: &str) -> Option<Result<SandboxCgroup, CgroupError>> {
        let parent = match self {
            CgroupSupport::V2 { parent } => parent,
            CgroupSupport::V1 { memory, pids, cpu } => {
                pids.as_ref().or(memory.as_ref()).or(cpu.as_ref())?
            }
            CgroupSupport::Unavailable { .. } => return None,
        };
        // A fresh directory only: one that exists (another holder's, a leftover) is never
        // joined, so killing this cgroup can only kill what was started in it.
        let dir = parent.join(name);
        Some(
            fs::create_dir(&dir)
                .map(|()| SandboxCgroup {
                    dirs: vec![dir.clone()],
                })
                .map_err(|e| CgroupError::Create(dir, e)),
        )
    }

    /// Creates the cgroup(s) for one sandbox with `limits` applied.
    pub fn create(
        &self,
        name: &str,
        limits: &ResourceLimits,
    ) -> Result<SandboxCgroup, CgroupError> {
        let mut cg = SandboxCgroup { dirs: Vec::new() };
        match self {
            CgroupSupport::V2 { parent } => {
                let dir = cg.mkdir(parent, name)?;
                if let Some(bytes) = limits.memory_bytes {
                    write(&dir, "memory.max", &bytes.to_string())?;
                    // Swap would let a hog outgrow memory.max; absent when the host has no swap.
                    let _ = fs::write(dir.join("memory.swap.max"), "0");
                }
                if let Some(n) = limits.max_processes {
                    write(&dir, "pids.max", &n.to_string())?;
                }
                if let Some(millis) = limits.cpu_millis {
                    write(
                        &dir,
                        "cpu.max",
                        &format!("{} {CPU_PERIOD_US}", cpu_quota(millis)),
                    )?;
                }
            }
            CgroupSupport::V1 { memory, pids, cpu } => {
                if let (Some(parent), Some(bytes)) = (memory, limits.memory_bytes) {
                    let dir = cg.mkdir(parent, name)?;
                    write(&dir, "memory.limit_in_bytes", &bytes.to_string())?;
                    let _ = fs::write(dir.join("memory.memsw.limit_in_bytes"), bytes.to_string());
                }
                if let (Some(parent), Some(n)) = (pids, limits.max_processes) {
                    let dir = cg.mkdir(parent, name)?;
                    write(&dir, "pids.max", &n.to_string())?;
                }
                if let (Some(parent), Some(millis)) = (cpu, limits.cpu_millis) {
                    let dir = cg.mkdir(parent, name)?;
                    write(&dir, "cpu.cfs_period_us", &CPU_PERIOD_US.to_string())?;
                    write(&dir, "cpu.cfs_quota_us", &cpu_quota(millis).to_string())?;
                }
            }
            CgroupSupport::Unavailable { .. } => {}
        }
        Ok(cg)
    }
}

/// The gateway pid in a sandbox cgroup's name `<server>-<pid>-<n>`.
fn gateway_pid(name: &str) -> Option<u32> {
    let mut parts = name.rsplitn(3, '-');
    let _n: u64 = parts.next()?.parse().ok()?;
    let pid = parts.next()?.parse().ok()?;
    parts.next().filter(|server| !server.is_empty())?;
    Some(pid)
}

fn cpu_quota(millis: u32) -> u64 {
    (u64::from(millis) * CPU_PERIOD_US / 1000).max(1000)
}

fn write(dir: &Path, file: &str, value: &str) -> Result<(), CgroupError> {
    let path = dir.join(file);
    fs::write(&path, value).map_err(|e| CgroupError::Limit(path, e))
}

/// The mount point of the v2 hierarchy (`controller: None`) or of a v1 controller.
fn mount_point(mountinfo: &str, controller: Option<&str>) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let mut right = right.split_whitespace();
        let fstype = right.next()?;
        let options = right.nth(1).unwrap_or("");
        let point = left.split_whitespace().nth(4)?;
        let hit = match controller {
            None => fstype == "cgroup2",
            Some(c) => fstype == "cgroup" && options.split(',').any(|o| o == c),
        };
        hit.then(|| PathBuf::from(point))
    })
}

/// This process's path in the v2 hierarchy (`controller` empty) or a v1 controller's.
fn own_path(proc_cgroup: &str, controller: &str) -> Option<String> {
    proc_cgroup.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_, list, path) = (parts.next()?, parts.next()?, parts.next()?);
        let hit = if controller.is_empty() {
            list.is_empty()
        } else {
            list.split(',').any(|c| c == controller)
        };
        hit.then(|| path.to_string())
    })
}

/// Makes `<own>/<group>` a v2 parent whose children get memory, pids and cpu. v2's
/// "no internal processes" rule forbids enabling controllers below a cgroup that holds
/// processes, so the gateway first moves itself into a leaf `<own>/gateway` when it must.
fn prepare_v2(own: &Path, group: &str) -> Result<PathBuf, String> {
    const NEEDED: [&str; 3] = ["memory", "pids", "cpu"];
    let available = fs::read_to_string(own.join("cgroup.controllers")).unwrap_or_default();
    let missing: Vec<&str> = NEEDED
        .iter()
        .copied()
        .filter(|c| !available.split_whitespace().any(|a| a == *c))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "cgroup v2 at {} lacks the {} controller(s)",
            own.display(),
            missing.join(", ")
        ));
    }
    let enable = |dir: &Path| {
        fs::write(dir.join("cgroup.subtree_control"), "+memory +pids +cpu")
            .map_err(|e| format!("enabling controllers in {}: {e}", dir.display()))
    };
    if enable(own).is_err() {
        let leaf = own.join("gateway");
        fs::create_dir_all(&leaf)
            .and_then(|()| fs::write(leaf.join("cgroup.procs"), std::process::id().to_string()))
            .map_err(|e| format!("moving the gateway into {}: {e}", leaf.display()))?;
        enable(own)?;
    }
    let parent = own.join(group);
    fs::create_dir_all(&parent).map_err(|e| format!("creating {}: {e}", parent.display()))?;
    enable(&parent)?;
    Ok(parent)
}

/// One sandbox's cgroup directories; removed on drop once its processes are gone.
#[derive(Debug)]
pub struct SandboxCgroup {
    dirs: Vec<PathBuf>,
}

impl SandboxCgroup {
    fn mkdir(&mut self, parent: &Path, name: &str) -> Result<PathBuf, CgroupError> {
        let dir = parent.join(name);
        match fs::create_dir(&dir) {
            Ok(()) => {}
            // A leftover of a crashed gateway with the same name: reuse it, it is ours.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(CgroupError::Create(dir, e)),
        }
        self.dirs.push(dir.clone());
        Ok(dir)
    }

    /// Moves `pid` (and, in v2, its whole process) into every directory of this cgroup.
    pub fn add(&self, pid: u32) -> Result<(), CgroupError> {
        for dir in &self.dirs {
            fs::write(dir.join("cgroup.procs"), pid.to_string())
                .map_err(|e| CgroupError::Join(dir.clone(), pid, e))?;
        }
        Ok(())
    }

    /// Kills every process in this cgroup, wherever it has gone in the process tree (a
    /// `setsid` child, an orphan of a leader that already died): cgroup v2's `cgroup.kill`
    /// where the kernel has it (5.14+), otherwise each pid listed in `cgroup.procs`.
    pub fn kill_all(&self) {
        for dir in &self.dirs {
            if fs::write(dir.join("cgroup.kill"), "1").is_ok() {
                continue;
            }
            // Without cgroup.kill a process may fork between the read and the kill: read again
            // until the cgroup is empty (each round kills what the last one missed).
            for _ in 0..20 {
                let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
                // 0 stands for a process outside our pid namespace, and kill(0) would signal
                // the gateway's own process group: only real pids.
                let pids: Vec<i32> = procs
                    .lines()
                    .filter_map(|l| l.trim().parse().ok())
                    .filter(|pid: &i32| *pid > 0)
                    .collect();
                if pids.is_empty() {
                    break;
                }
                for pid in pids {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
    }

    /// The directories (for tests and diagnostics).
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// Whether the memory controller ever killed a process here (v1 `memory.oom_control`, v2
    /// `memory.events`, both count `oom_kill`).
    pub fn memory_limit_hit(&self) -> bool {
        self.dirs.iter().any(|d| {
            ["memory.oom_control", "memory.events"].iter().any(|file| {
                fs::read_to_string(d.join(file)).ok().is_some_and(|s| {
                    s.lines().any(|l| {
                        l.strip_prefix("oom_kill ")
                            .and_then(|n| n.trim().parse::<u64>().ok())
                            .is_some_and(|n| n > 0)
                    })
                })
            })
        })
    }
}

impl Drop for SandboxCgroup {
    fn drop(&mut self) {
        // rmdir fails while exiting processes are still being reaped; a few short retries cover
        // that, and a leftover empty directory is reused by name or removed with the parent.
        for dir in &self.dirs {
            for _ in 0..50 {
                match fs::remove_dir(dir) {
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                        std::thread::sleep(std::time::Duration::from_millis(10));
                    }
                    _ => break,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID_MOUNTS: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw";
    const HYBRID_SELF: &str = "8:pids:/\n4:memory:/process_api/abc\n1:cpu:/\n0::/\n";

    #[test]
    fn reads_mount_points_and_own_paths() {
        assert_eq!(
            mount_point(HYBRID_MOUNTS, None),
            Some("/sys/fs/cgroup/unified".into())
        );
        assert_eq!(
            mount_point(HYBRID_MOUNTS, Some("memory")),
            Some("/sys/fs/cgroup/memory".into())
        );
        assert_eq!(mount_point(HYBRID_MOUNTS, Some("blkio")), None);
        assert_eq!(
            own_path(HYBRID_SELF, "memory").as_deref(),
            Some("/process_api/abc")
        );
        assert_eq!(own_path(HYBRID_SELF, "").as_deref(), Some("/"));
        assert_eq!(own_path(HYBRID_SELF, "cpuset"), None);
    }

    #[test]
    fn leftovers_are_recognised_by_their_gateway_pid() {
        assert_eq!(gateway_pid("fetch-16689-0"), Some(16689));
        assert_eq!(gateway_pid("my-svc-42-7"), Some(42));
        for not_ours in ["gateway", "fetch-0", "-42-7", "fetch-x-1", "fetch-42-"] {
            assert_eq!(gateway_pid(not_ours), None, "{not_ours}");
        }
    }

    #[test]
    fn cpu_quota_is_per_period() {
        assert_eq!(cpu_quota(500), 50_000);
        assert_eq!(cpu_quota(2000), 200_000);
        assert_eq!(cpu_quota(1), 1000, "the kernel's minimum quota is 1 ms");
    }

    #[test]
    fn unavailable_explains_itself() {
        let s = CgroupSupport::detect_in("", "", "x");
        assert!(matches!(s, CgroupSupport::Unavailable { .. }));
        assert!(s.describe().contains("RLIMITs"), "{}", s.describe());
    }
}
