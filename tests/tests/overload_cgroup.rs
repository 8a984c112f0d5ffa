//! Without any overload configuration, Ferry sheds load before its container's OOM killer
//! would take the whole pod's traffic down. The test runs Ferry in a memory cgroup of its own
//! (v1's memory controller or v2) limited to 1 GiB, then fills that cgroup with 990 MiB of
//! tmpfs pages written from inside it: the working set passes 95 % of the limit, and new
//! requests get 503 "envoy overloaded" with their connections closed. Once the pages are
//! freed, requests are served again. Stock Envoy has no such default (it would keep
//! accepting until killed), so this test is Ferry's alone. Needs root to make a cgroup.

use ferry_tests::client::{self, HttpRequest};
use ferry_tests::conn::stat;
use ferry_tests::proxy::{self, ProxyKind};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const BOOTSTRAP: &str = r#"
admin:
  address: { socket_address: { address: 127.0.0.1, port_value: {{ADMIN}} } }
static_resources:
  listeners:
  - name: l1
    address: { socket_address: { address: 127.0.0.1, port_value: {{L1}} } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: l1
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                direct_response: { status: 200, body: { inline_string: "ok" } }
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
"#;

/// A memory cgroup made for the test, removed on drop.
struct Cgroup {
    dir: PathBuf,
    v2: bool,
}

impl Cgroup {
    /// A child of this process's own memory cgroup, limited to `limit` bytes.
    fn create(limit: u64) -> Result<Cgroup, String> {
        let own = std::fs::read_to_string("/proc/self/cgroup").map_err(|e| e.to_string())?;
        let root = Path::new("/sys/fs/cgroup");
        let name = format!("ferry-overload-{}", std::process::id());
        let v1 = own.lines().find_map(|l| {
            let mut p = l.splitn(3, ':');
            let (_, ctrls, path) = (p.next()?, p.next()?, p.next()?);
            ctrls
                .split(',')
                .any(|c| c == "memory")
                .then(|| root.join("memory").join(path.trim_start_matches('/')))
        });
        let (parent, v2) = match v1 {
            Some(p) if p.is_dir() => (p, false),
            _ => {
                let path = own
                    .lines()
                    .find_map(|l| l.strip_prefix("0::"))
                    .ok_or("no memory cgroup (neither v1's controller nor v2)")?;
                (root.join(path.trim_start_matches('/')), true)
            }
        };
        let dir = parent.join(name);
        std::fs::create_dir(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        let cg = Cgroup { dir, v2 };
        let file = if v2 {
            "memory.max"
        } else {
            "memory.limit_in_bytes"
        };
        std::fs::write(cg.dir.join(file), limit.to_string())
            .map_err(|e| format!("set {file}: {e}"))?;
        Ok(cg)
    }

    fn add(&self, pid: u32) -> Result<(), String> {
        std::fs::write(self.dir.join("cgroup.procs"), pid.to_string())
            .map_err(|e| format!("move {pid} into {}: {e}", self.dir.display()))
    }

    fn usage(&self) -> u64 {
        let f = if self.v2 {
            "memory.current"
        } else {
            "memory.usage_in_bytes"
        };
        std::fs::read_to_string(self.dir.join(f))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        // The processes in it have exited by now (or are about to): retry briefly.
        for _ in 0..50 {
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A file in /dev/shm, removed on drop.
struct ShmFile(PathBuf);

impl Drop for ShmFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// GET / on the listener: "<status> <connection header>".
async fn get(port: u16) -> String {
    match client::send(port, &HttpRequest::get("/")).await {
        Ok(r) => format!(
            "{} connection:{}",
            r.status,
            r.header("connection").unwrap_or("-")
        ),
        Err(e) => format!("error {e}"),
    }
}

/// Polls until `get` answers as `want`, for at most 5 s (the default monitor reads once a
/// second).
async fn wait_for(port: u16, want: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let got = get(port).await;
        if got == want || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sheds_load_near_the_cgroup_memory_limit() {
    if !ferry_tests::netns::root_or_skip("sheds_load_near_the_cgroup_memory_limit") {
        return;
    }
    const LIMIT: u64 = 1 << 30;
    let cg = match Cgroup::create(LIMIT) {
        Ok(cg) => cg,
        Err(e) => panic!("cannot make a memory cgroup as root: {e}"),
    };
    let ferry = proxy::start(
        ProxyKind::Ferry,
        &proxy::ferry_bin(),
        BOOTSTRAP,
        &BTreeMap::new(),
        &[],
    )
    .await;
    cg.add(ferry.pid()).expect("move ferry into the cgroup");
    let (port, admin) = (ferry.port("L1"), ferry.admin_port());
    assert_eq!(
        get(port).await,
        "200 connection:-",
        "served before the fill"
    );
    // Ferry shows no overload stats while it has a limit it is far from... once it has seen
    // the limit, its monitor's pressure is there.
    let pressure = "overload.envoy.resource_monitors.cgroup_memory.pressure";
    let mut seen = String::new();
    for _ in 0..20 {
        seen = stat(admin, pressure).await;
        if seen != "<absent>" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let low: u64 = seen.parse().unwrap_or(u64::MAX);
    assert!(low < 50, "pressure before the fill: {seen}");

    // 990 MiB of tmpfs pages charged to the cgroup (written by a process inside it).
    let shm = ShmFile(PathBuf::from(format!(
        "/dev/shm/ferry-overload-{}",
        std::process::id()
    )));
    let script = format!(
        "echo $$ > {}/cgroup.procs && exec dd if=/dev/zero of={} bs=1M count=990 status=none",
        cg.dir.display(),
        shm.0.display()
    );
    let out = Command::new("sh")
        .args(["-c", &script])
        .output()
        .expect("run dd");
    assert!(
        out.status.success(),
        "dd into the cgroup failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let usage = cg.usage();
    let overloaded = wait_for(port, "503 connection:close").await;
    let high = stat(admin, pressure).await;
    let active = stat(
        admin,
        "overload.envoy.overload_actions.stop_accepting_requests.active",
    )
    .await;
    let closes = stat(admin, "http.l1.downstream_rq_overload_close").await;
    drop(shm);
    let recovered = wait_for(port, "200 connection:-").await;
    let cleared = stat(
        admin,
        "overload.envoy.overload_actions.stop_accepting_requests.active",
    )
    .await;
    drop(ferry);
    eprintln!(
        "cgroup usage after the fill: {} MiB of {} MiB; pressure {high} %",
        usage >> 20,
        LIMIT >> 20
    );
    assert_eq!(overloaded, "503 connection:close", "near the limit");
    assert!(
        high.parse::<u64>().is_ok_and(|p| p >= 95),
        "pressure {high}"
    );
    assert_eq!(active, "1", "stop_accepting_requests active near the limit");
    assert!(
        closes.parse::<u64>().is_ok_and(|n| n >= 1),
        "downstream_rq_overload_close {closes}"
    );
    assert_eq!(recovered, "200 connection:-", "after the pages were freed");
    assert_eq!(cleared, "0", "stop_accepting_requests cleared");
    drop(cg);
}
