//! Network namespaces for capture tests: a "pod" namespace and a "peer" namespace joined by a
//! veth pair, each removed when dropped (also when the test fails).
//!
//! Code runs inside a namespace from a thread that joined it (`setns`): sockets that thread
//! opens and processes it starts live in the namespace. Tests need root; [`root_or_skip`] says
//! clearly why they did not run elsewhere, and fails in CI.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};

/// True when the tests can create namespaces. Without root: a failure in CI, else a SKIP line.
pub fn root_or_skip(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if crate::proxy::is_ci() {
        panic!("{test}: network-namespace tests need root, and CI runs as root");
    }
    eprintln!("SKIP {test}: needs root to create network namespaces (run as root; CI does)");
    false
}

/// One network namespace, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn create(tag: &str) -> Netns {
        static N: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "ferry-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        run_checked(Command::new("ip").args(["netns", "add", &name]));
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// Runs a command inside the namespace.
    pub fn exec(&self, args: &[&str]) -> Output {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .output();
        match out {
            Ok(o) => o,
            Err(e) => panic!("cannot run {args:?} in {}: {e}", self.name),
        }
    }

    /// Runs a command inside the namespace; panics when it fails.
    pub fn exec_ok(&self, args: &[&str]) -> String {
        let o = self.exec(args);
        assert!(
            o.status.success(),
            "{args:?} in {} failed: {}{}",
            self.name,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// `ip ARGS` inside the namespace.
    pub fn ip(&self, args: &[&str]) {
        let mut all = vec!["ip"];
        all.extend_from_slice(args);
        self.exec_ok(&all);
    }

    /// Runs `f` on a thread that has joined the namespace.
    pub fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.name);
        std::thread::scope(|s| {
            s.spawn(|| {
                join(&path);
                f()
            })
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e))
        })
    }

    /// Runs a future to completion inside the namespace (on its own runtime).
    pub fn block_on<F, T>(&self, f: impl FnOnce() -> F + Send) -> T
    where
        F: Future<Output = T>,
        T: Send,
    {
        self.enter(|| runtime().block_on(f()))
    }

    /// Starts a server future inside the namespace, on a thread of its own that lives as long
    /// as the test process.
    pub fn serve<F>(&self, f: impl FnOnce() -> F + Send + 'static)
    where
        F: Future<Output = ()>,
    {
        let path = format!("/run/netns/{}", self.name);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            join(&path);
            let rt = runtime();
            let _ = ready_tx.send(());
            rt.block_on(f());
        });
        let _ = ready_rx.recv();
    }

    /// Starts a process inside the namespace (it inherits the namespace of the thread that
    /// forks it).
    pub fn spawn(&self, cmd: &mut Command) -> std::process::Child {
        self.enter(|| cmd.spawn())
            .unwrap_or_else(|e| panic!("cannot start {cmd:?} in {}: {e}", self.name))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

fn join(path: &str) {
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("open {path}: {e}"));
    // SAFETY: setns on a namespace fd we hold open; it only changes this thread's namespace.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("tokio runtime: {e}"))
}

fn run_checked(cmd: &mut Command) {
    let o = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        o.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A pod and a peer joined by a veth pair (`eth0` on both sides), dual-stack. The peer has a
/// second address of each family (for exclusion tests).
pub struct PodPair {
    pub pod: Netns,
    pub peer: Netns,
}

impl PodPair {
    pub const POD4: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 77, 0, 1));
    pub const PEER4: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 77, 0, 2));
    pub const PEER4_B: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 77, 0, 3));
    pub const POD6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfd00, 0x77, 0, 0, 0, 0, 0, 1));
    pub const PEER6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfd00, 0x77, 0, 0, 0, 0, 0, 2));
    pub const PEER6_B: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfd00, 0x77, 0, 0, 0, 0, 0, 3));

    pub fn create(tag: &str) -> PodPair {
        let pod = Netns::create(&format!("{tag}-pod"));
        let peer = Netns::create(&format!("{tag}-peer"));
        pod.ip(&[
            "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p",
        ]);
        pod.ip(&["link", "set", "eth0p", "netns", &peer.name]);
        peer.ip(&["link", "set", "eth0p", "name", "eth0"]);
        for (ns, addrs) in [
            (&pod, vec![Self::POD4, Self::POD6]),
            (
                &peer,
                vec![Self::PEER4, Self::PEER4_B, Self::PEER6, Self::PEER6_B],
            ),
        ] {
            for a in addrs {
                let cidr = match a {
                    IpAddr::V4(_) => format!("{a}/24"),
                    IpAddr::V6(_) => format!("{a}/64"),
                };
                let mut args = vec!["addr", "add", cidr.as_str(), "dev", "eth0"];
                if a.is_ipv6() {
                    args.push("nodad");
                }
                ns.ip(&args);
            }
            ns.ip(&["link", "set", "eth0", "up"]);
        }
        PodPair { pod, peer }
    }
}
