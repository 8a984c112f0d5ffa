//! Scheduling priority on a shared machine. With autogroup scheduling (the kernel default on
//! desktops and many VMs) a nice value only ranks threads within their session: to get ahead
//! of other sessions' builds, the benchmark and each proxy run in sessions of their own whose
//! autogroup gets the nice value.

use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};

const CHILD_MARK: &str = "FERRY_BENCH_OWN_SESSION";

fn autogroup_enabled() -> bool {
    std::fs::read_to_string("/proc/sys/kernel/sched_autogroup_enabled")
        .is_ok_and(|s| s.trim() == "1")
}

/// Sets the nice value of `pid`'s autogroup ("self" for this process), if autogroups are on.
pub fn set_autogroup_nice(pid: &str, nice: i32) -> std::io::Result<()> {
    if nice == 0 || !autogroup_enabled() {
        return Ok(());
    }
    std::fs::write(format!("/proc/{pid}/autogroup"), nice.to_string())
}

/// Sets the calling thread's nice value (threads it starts inherit it).
pub fn set_nice(nice: i32) -> std::io::Result<()> {
    if nice == 0 {
        return Ok(());
    }
    // SAFETY: setpriority has no memory-safety preconditions; 0 is the calling thread.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// When autogroups are on and `nice` is not 0, runs this same command again in a session of
/// its own (so that its priority does not leak into the caller's session) and returns its
/// exit code; None in that child, or when nothing needs doing.
pub fn reexec_in_own_session(nice: i32) -> Option<ExitCode> {
    if nice == 0 || !autogroup_enabled() || std::env::var_os(CHILD_MARK).is_some() {
        return None;
    }
    let exe = std::env::current_exe().ok()?;
    let mut cmd = Command::new(exe);
    cmd.args(std::env::args_os().skip(1)).env(CHILD_MARK, "1");
    // SAFETY: only async-signal-safe system calls run between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // Ctrl-C reaches only the caller's session: end with it.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    match cmd.status() {
        Ok(status) => Some(ExitCode::from(
            status.code().unwrap_or(1).clamp(0, 255) as u8
        )),
        // Could not start a copy: carry on in this session.
        Err(_) => None,
    }
}
