//! Starting a proxy under test (pinned to one CPU, killed on drop) and reading what it costs:
//! CPU time and memory from /proc, readiness from its admin `/ready`.

use std::fs;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A running proxy. Dropping it ends it (SIGTERM, then SIGKILL after a short grace).
pub struct Proxy {
    child: Child,
    pub pid: i32,
    pub admin: SocketAddr,
    log: PathBuf,
}

impl Proxy {
    /// Starts `bin -c config --concurrency 1 --disable-hot-restart -l error`, pinned to `cpu`,
    /// at scheduling priority `nice`.
    pub fn start(
        bin: &Path,
        config: &Path,
        admin: SocketAddr,
        cpu: Option<usize>,
        nice: i32,
    ) -> Result<Proxy> {
        let log = config.with_extension("log");
        let out = fs::File::create(&log).with_context(|| format!("create {}", log.display()))?;
        let err = out.try_clone()?;
        let mut cmd = Command::new(bin);
        cmd.arg("-c")
            .arg(config)
            .args(["--concurrency", "1", "--disable-hot-restart", "-l", "error"])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        // SAFETY: only async-signal-safe system calls run between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if let Some(cpu) = cpu {
                    set_affinity(0, cpu)?;
                }
                // A session (so an autogroup) of its own, ranked by `nice` below.
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                crate::priority::set_nice(nice)?;
                // Room for the idle scenario's connections (as root the hard limit can rise;
                // otherwise the inherited limits stay).
                let files = libc::rlimit {
                    rlim_cur: 65_536,
                    rlim_max: 65_536,
                };
                libc::setrlimit(libc::RLIMIT_NOFILE, &files);
                // The proxy must not outlive the benchmark, even if it is killed.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("start {}", bin.display()))?;
        let pid = child.id() as i32;
        let _ = crate::priority::set_autogroup_nice(&pid.to_string(), nice);
        Ok(Proxy {
            child,
            pid,
            admin,
            log,
        })
    }

    /// Waits until the admin endpoint answers `/ready` with 200; fails if the process exits.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                bail!("exited with {status} before ready: {}", self.log_tail());
            }
            if let Ok(Ok(200)) =
                tokio::time::timeout(Duration::from_secs(1), admin_get(self.admin, "/ready")).await
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("not ready within {timeout:?}: {}", self.log_tail())
    }

    /// Whether the process has exited (and how).
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(format!("{status}: {}", self.log_tail())),
            _ => None,
        }
    }

    /// User + system CPU time of the whole process (all threads), in seconds.
    pub fn cpu_seconds(&self) -> f64 {
        cpu_seconds(self.pid).unwrap_or(0.0)
    }

    /// (VmRSS, VmHWM) in KiB.
    pub fn memory_kib(&self) -> (u64, u64) {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// The last lines the proxy logged (for error messages).
    pub fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().rev().take(5).collect();
        let tail: Vec<&str> = lines.into_iter().rev().collect();
        format!("log {}: {}", self.log.display(), tail.join(" | "))
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // SAFETY: signalling our own child by its PID.
        unsafe { libc::kill(self.pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// utime + stime of a process from /proc/PID/stat, in seconds.
pub fn cpu_seconds(pid: i32) -> Option<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at field 3 (state).
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / ticks_per_second())
}

pub fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// Pins thread/process `pid` (0: the calling thread) to one CPU.
pub fn set_affinity(pid: i32, cpu: usize) -> std::io::Result<()> {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET stays within its bounds for cpu < 1024.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(pid, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Number of CPUs this process may run on.
pub fn usable_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A plain HTTP/1.1 GET (Connection: close) to the admin endpoint; returns the status code.
pub async fn admin_get(admin: SocketAddr, path: &str) -> Result<u16> {
    let mut s = TcpStream::connect(admin).await?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 1024];
    // The status line is all we need; stop after it or after 64 KiB.
    while !buf.contains(&b'\n') && buf.len() < 65536 {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let line = String::from_utf8_lossy(&buf);
    let code = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("no HTTP status from admin")?;
    Ok(code)
}

/// A free 127.0.0.1 port (bound and released; the proxy binds it right after).
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// The body of an admin GET (read to the close).
pub async fn admin_body(admin: SocketAddr, path: &str) -> Result<String> {
    let mut s = TcpStream::connect(admin).await?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await?;
    let text = String::from_utf8_lossy(&buf);
    Ok(text
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_string()))
}

/// `allocated` from the admin `/memory` (bytes the allocator has handed out).
pub async fn allocated_bytes(admin: SocketAddr) -> Option<u64> {
    let body = admin_body(admin, "/memory").await.ok()?;
    let at = body.find("\"allocated\"")?;
    body[at + 11..]
        .split('"')
        .nth(1)
        .and_then(|v| v.parse().ok())
}
