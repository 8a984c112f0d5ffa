//! Resource readers: the allocator's heap in use, and the cgroup's memory working set against
//! its limit (cgroup v2, or v1's memory controller).

use crate::config::overload::MonitorKind;
use std::path::{Path, PathBuf};

pub struct Reader(MonitorKind);

/// One reading: pressure as a fraction of the limit (not capped: a heap past its maximum
/// reads > 1), or nothing to measure (no cgroup memory limit now), or a failed read.
pub enum Reading {
    Pressure(f64),
    Unlimited,
    Failed,
}

impl Reader {
    pub fn new(kind: MonitorKind) -> Reader {
        Reader(kind)
    }

    /// Reads the resource now. The cgroup and its limit are looked up on every reading: the
    /// process may be moved, and a pod's limit may be resized in place.
    pub fn read(&self) -> Reading {
        match self.0 {
            MonitorKind::FixedHeap { max } => match heap_in_use() {
                Some(used) => Reading::Pressure(used as f64 / max.max(1) as f64),
                None => Reading::Failed,
            },
            MonitorKind::CgroupMemory { max } => {
                let Some((dir, v2)) = memory_cgroup() else {
                    return match max {
                        Some(_) => Reading::Failed,
                        None => Reading::Unlimited,
                    };
                };
                let limit = match (max, cgroup_limit(&dir, v2)) {
                    (Some(m), Some(c)) => m.min(c),
                    (Some(m), None) => m,
                    (None, Some(c)) => c,
                    (None, None) => return Reading::Unlimited,
                };
                match working_set(&dir, v2) {
                    Some(used) => Reading::Pressure(used as f64 / limit.max(1) as f64),
                    None => Reading::Failed,
                }
            }
        }
    }
}

/// The allocator's view: `(in use, obtained from the system, free inside it)`, in bytes.
pub fn heap_stats() -> Option<(u64, u64, u64)> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallinfo2 has no preconditions; it sums the allocator's arenas.
        let m = unsafe { libc::mallinfo2() };
        Some((
            (m.uordblks + m.hblkhd) as u64,
            (m.arena + m.hblkhd) as u64,
            m.fordblks as u64,
        ))
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        None
    }
}

/// Bytes the allocator has handed out and not had back.
fn heap_in_use() -> Option<u64> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallinfo2 has no preconditions; it sums the allocator's arenas.
        let m = unsafe { libc::mallinfo2() };
        Some((m.uordblks + m.hblkhd) as u64)
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        None
    }
}

/// Hands freed heap pages back to the system (`shrink_heap`).
pub fn shrink_heap() {
    // SAFETY: malloc_trim only releases free heap pages; it has no preconditions.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        libc::malloc_trim(0);
    }
}

/// This process's memory cgroup directory, and whether it is cgroup v2.
fn memory_cgroup() -> Option<(PathBuf, bool)> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let root = Path::new("/sys/fs/cgroup");
    // v1's memory controller first (a hybrid host has both); then the unified hierarchy.
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
        if ctrls.split(',').any(|c| c == "memory") {
            return Some((existing(&root.join("memory"), path), false));
        }
    }
    let path = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    for base in [root.to_path_buf(), root.join("unified")] {
        if base.join("cgroup.controllers").exists() {
            return Some((existing(&base, path), true));
        }
    }
    None
}

/// `base` + the cgroup path, or `base` itself when that path is not visible here (a cgroup
/// namespace shows the container's own cgroup as the root).
fn existing(base: &Path, path: &str) -> PathBuf {
    let dir = base.join(path.trim_start_matches('/'));
    if dir.is_dir() {
        dir
    } else {
        base.to_path_buf()
    }
}

fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn cgroup_limit(dir: &Path, v2: bool) -> Option<u64> {
    if v2 {
        // "max": no limit.
        read_u64(&dir.join("memory.max"))
    } else {
        // v1 reports "no limit" as a huge page-aligned number.
        read_u64(&dir.join("memory.limit_in_bytes")).filter(|v| *v < (1 << 62))
    }
}

/// Usage minus the inactive file cache the kernel can drop at once: the working set that
/// the OOM killer judges.
fn working_set(dir: &Path, v2: bool) -> Option<u64> {
    let (usage, stat, key) = if v2 {
        ("memory.current", "memory.stat", "inactive_file")
    } else {
        (
            "memory.usage_in_bytes",
            "memory.stat",
            "total_inactive_file",
        )
    };
    let used = read_u64(&dir.join(usage))?;
    let stat = std::fs::read_to_string(dir.join(stat)).unwrap_or_default();
    let inactive = stat
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0u64);
    Some(used.saturating_sub(inactive))
}
