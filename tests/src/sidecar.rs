//! A proxy running as a pod's sidecar: inside the pod's network namespace, as UID/GID 1337
//! (Istio's proxy identity, which the capture rules exempt), with CAP_NET_ADMIN for
//! transparent sockets as Istio grants in TPROXY mode. The binary and its bootstrap are copied
//! where UID 1337 can read them. Also: finding `ferry-iptables` and waiting for readiness.

use crate::netns::Netns;
use crate::proxy::{ferry_bin, TempDir};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

pub struct Sidecar {
    child: Child,
    dir: TempDir,
}

impl Sidecar {
    pub fn start(pod: &Netns, proxy: &Path, bootstrap: &str) -> Sidecar {
        let dir = TempDir::new("sidecar");
        let bin = dir.path().join("sidecar");
        std::fs::copy(proxy, &bin).expect("copy the proxy binary");
        let cfg = dir.path().join("bootstrap.yaml");
        std::fs::write(&cfg, bootstrap).expect("write the bootstrap");
        let log = std::fs::File::create(dir.path().join("proxy.log")).expect("log");
        let child = pod.spawn(
            Command::new("setpriv")
                .args([
                    "--reuid=1337",
                    "--regid=1337",
                    "--clear-groups",
                    "--inh-caps=+net_admin",
                    "--ambient-caps=+net_admin",
                ])
                .arg(&bin)
                .arg("-c")
                .arg(&cfg)
                .args(["--concurrency", "1", "--disable-hot-restart", "-l", "info"])
                .stdout(log.try_clone().expect("log"))
                .stderr(log),
        );
        Sidecar { child, dir }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("proxy.log")).unwrap_or_default()
    }

    /// Waits (up to 30 s: the whole suite may be running at once) until the admin port in the
    /// pod answers `/ready` with 200.
    pub fn wait_ready(&self, pod: &Netns) -> bool {
        pod.block_on(|| async {
            for _ in 0..300 {
                if let Ok(r) = crate::client::admin_get(15000, "/ready").await {
                    if r.status == 200 {
                        return true;
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            false
        })
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `ferry-iptables`, next to the Ferry binary.
pub fn ferry_iptables_bin() -> PathBuf {
    let p = ferry_bin().with_file_name("ferry-iptables");
    assert!(
        p.is_file(),
        "ferry-iptables not found at {} — run `cargo build -p ferry-iptables`",
        p.display()
    );
    p
}
