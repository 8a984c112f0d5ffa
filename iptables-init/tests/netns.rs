//! The binary against a real kernel, each test in a throwaway network namespace
//! (`ferry-ipt-<pid>-<n>`, deleted when the guard drops, also on panic): rules land as
//! expected, applying twice changes nothing, `--clean` gives back the exact ruleset it found
//! (foreign rules included), TPROXY policy routes and IPv6 come and go, the nft backend does
//! the same, a failure part way leaves nothing applied, and a missing CAP_NET_ADMIN is named.
//!
//! Needs root: elsewhere each test says why it did not run; with `CI` set it fails instead.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

const BIN: &str = env!("CARGO_BIN_EXE_ferry-iptables");

fn root_or_skip(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{test}: needs root (network namespaces, iptables); CI must run it as root");
    }
    eprintln!("SKIP {test}: needs root to create network namespaces and change iptables");
    false
}

/// A network namespace, deleted on drop.
struct Ns {
    name: String,
}

impl Ns {
    fn new() -> Ns {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "ferry-ipt-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let o = Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .expect("run ip netns add");
        assert!(
            o.status.success(),
            "ip netns add {name}: {}",
            text(&o.stderr)
        );
        let ns = Ns { name };
        ns.ok(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// A pod interface with addresses of the given families (IPv6 turns auto-detection on).
    fn with_pod_addresses(v6: bool) -> Ns {
        let ns = Ns::new();
        ns.ok(&[
            "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p",
        ]);
        ns.ok(&["ip", "addr", "add", "10.77.0.1/24", "dev", "eth0"]);
        if v6 {
            ns.ok(&["ip", "addr", "add", "fd00:77::1/64", "dev", "eth0", "nodad"]);
        }
        ns.ok(&["ip", "link", "set", "eth0", "up"]);
        ns
    }

    fn exec(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("run {args:?} in {}: {e}", self.name))
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.exec(args);
        assert!(
            o.status.success(),
            "{args:?} in {} failed: {}{}",
            self.name,
            text(&o.stdout),
            text(&o.stderr)
        );
        text(&o.stdout)
    }

    /// Runs ferry-iptables in the namespace.
    fn ferry(&self, args: &[&str]) -> Output {
        let mut all = vec![BIN];
        all.extend_from_slice(args);
        self.exec(&all)
    }

    fn ferry_ok(&self, args: &[&str]) {
        let o = self.ferry(args);
        assert!(
            o.status.success(),
            "ferry-iptables {args:?} failed ({:?}): {}",
            o.status.code(),
            text(&o.stderr)
        );
    }

    /// Both families' rulesets (without comments and counters) and both policy-rule lists.
    fn state(&self) -> String {
        format!(
            "{}\n--- v6\n{}\n--- ip rule\n{}--- ip -6 rule\n{}",
            saved(&self.ok(&["iptables-save"])),
            saved(&self.ok(&["ip6tables-save"])),
            self.ok(&["ip", "-4", "rule", "show"]),
            self.ok(&["ip", "-6", "rule", "show"])
        )
    }

    fn has_passthrough_v6(&self) -> bool {
        self.ok(&["ip", "-6", "addr", "show", "dev", "lo"])
            .contains("inet6 ::6/128")
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// iptables-save output without its timestamps and packet counters.
fn saved(s: &str) -> String {
    s.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| match l.strip_prefix(':') {
            Some(_) => l.split(" [").next().unwrap_or(l).to_string(),
            None => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn has_line(save: &str, line: &str) -> bool {
    save.lines().any(|l| l == line)
}

/// Rules that are not ours, in the tables the capture uses and in one it does not.
fn add_foreign_rules(ns: &Ns) {
    ns.ok(&[
        "iptables",
        "-t",
        "nat",
        "-A",
        "OUTPUT",
        "-d",
        "10.9.9.9/32",
        "-j",
        "RETURN",
    ]);
    ns.ok(&[
        "iptables",
        "-t",
        "nat",
        "-A",
        "PREROUTING",
        "-i",
        "eth9",
        "-j",
        "RETURN",
    ]);
    ns.ok(&[
        "iptables", "-A", "INPUT", "-p", "tcp", "--dport", "22", "-j", "ACCEPT",
    ]);
    ns.ok(&[
        "ip6tables",
        "-t",
        "nat",
        "-A",
        "OUTPUT",
        "-d",
        "fd00:9::9/128",
        "-j",
        "RETURN",
    ]);
}

const SIDECAR: &[&str] = &[
    "-p",
    "15001",
    "-z",
    "15006",
    "-u",
    "1337",
    "-m",
    "REDIRECT",
    "-i",
    "*",
    "-x",
    "",
    "-b",
    "*",
    "-d",
    "15090,15021,15020",
];

fn args(extra: &[&'static str]) -> Vec<&'static str> {
    let mut v = SIDECAR.to_vec();
    v.extend_from_slice(extra);
    v
}

#[test]
fn redirect_applies_reruns_and_cleans_exactly() {
    if !root_or_skip("redirect_applies_reruns_and_cleans_exactly") {
        return;
    }
    let ns = Ns::with_pod_addresses(false);
    add_foreign_rules(&ns);
    let before = ns.state();
    // -c eth9 adds a rule identical to a foreign one: both must be there after, one after clean.
    let a = args(&["-c", "eth9"]);

    ns.ferry_ok(&a);
    let applied = ns.state();
    let v4 = saved(&ns.ok(&["iptables-save", "-t", "nat"]));
    for want in [
        ":ISTIO_INBOUND -",
        ":ISTIO_OUTPUT -",
        "-A PREROUTING -p tcp -j ISTIO_INBOUND",
        "-A OUTPUT -j ISTIO_OUTPUT",
        "-A ISTIO_INBOUND -p tcp -m tcp --dport 15090 -j RETURN",
        "-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT",
        "-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006",
        "-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001",
        "-A ISTIO_OUTPUT -s 127.0.0.6/32 -o lo -j RETURN",
        "-A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN",
        "-A ISTIO_OUTPUT -j ISTIO_REDIRECT",
        "-A OUTPUT -d 10.9.9.9/32 -j RETURN",
    ] {
        assert!(
            v4.lines().any(|l| l.starts_with(want)),
            "{want:?} missing:\n{v4}"
        );
    }
    assert_eq!(
        v4.lines()
            .filter(|l| *l == "-A PREROUTING -i eth9 -j RETURN")
            .count(),
        2,
        "the foreign rule and ours:\n{v4}"
    );
    // No IPv6 address in the pod: no IPv6 capture.
    assert!(
        !applied
            .split("--- v6")
            .nth(1)
            .unwrap_or("")
            .contains("ISTIO"),
        "{applied}"
    );

    ns.ferry_ok(&a);
    assert_eq!(ns.state(), applied, "a second run changed the ruleset");

    let mut clean = a.clone();
    clean.push("--clean");
    ns.ferry_ok(&clean);
    assert_eq!(ns.state(), before, "--clean did not restore the ruleset");
    ns.ferry_ok(&clean);
    assert_eq!(ns.state(), before, "a second --clean changed something");
}

#[test]
fn tproxy_ipv6_routes_come_and_go() {
    if !root_or_skip("tproxy_ipv6_routes_come_and_go") {
        return;
    }
    let ns = Ns::with_pod_addresses(true);
    add_foreign_rules(&ns);
    let before = ns.state();
    let a = args(&[
        "-m",
        "TPROXY",
        "--redirect-dns",
        "--capture-all-dns",
        "--drop-invalid",
    ]);

    ns.ferry_ok(&a);
    let applied = ns.state();
    for (save, lo) in [
        (ns.ok(&["iptables-save", "-t", "mangle"]), "127.0.0.1/32"),
        (ns.ok(&["ip6tables-save", "-t", "mangle"]), "::1/128"),
    ] {
        let save = saved(&save);
        for want in [
            format!("-A ISTIO_TPROXY ! -d {lo} -p tcp -j TPROXY --on-port 15006"),
            "-A PREROUTING -p tcp -j ISTIO_INBOUND".to_string(),
            "-A PREROUTING -m conntrack --ctstate INVALID -j ISTIO_DROP".to_string(),
            "-A ISTIO_DIVERT -j ACCEPT".to_string(),
        ] {
            assert!(
                save.lines().any(|l| l.starts_with(&want)),
                "{want:?} missing:\n{save}"
            );
        }
    }
    let raw6 = saved(&ns.ok(&["ip6tables-save", "-t", "raw"]));
    assert!(
        has_line(
            &raw6,
            "-A ISTIO_INBOUND -p udp -m udp --sport 53 -j CT --zone 1"
        ),
        "{raw6}"
    );
    for fam in ["-4", "-6"] {
        let rules = ns.ok(&["ip", fam, "rule", "show"]);
        assert_eq!(
            rules.matches("fwmark 0x539 lookup 133").count(),
            1,
            "{fam}: {rules}"
        );
        let routes = ns.ok(&["ip", fam, "route", "show", "table", "133"]);
        assert!(routes.contains("local default dev lo"), "{fam}: {routes}");
    }
    assert!(ns.has_passthrough_v6(), "::6 not on lo");

    ns.ferry_ok(&a);
    assert_eq!(
        ns.state(),
        applied,
        "a second run changed the ruleset or the routes"
    );

    let mut clean = a.clone();
    clean.push("--clean");
    ns.ferry_ok(&clean);
    assert_eq!(
        ns.state(),
        before,
        "--clean did not restore the ruleset and routes"
    );
    assert!(!ns.has_passthrough_v6(), "::6 left on lo");
    for fam in ["-4", "-6"] {
        let o = ns.exec(&["ip", fam, "route", "show", "table", "133"]);
        assert!(
            !text(&o.stdout).contains("local default"),
            "{fam} route left"
        );
    }
}

/// A namespace nothing else uses: after --clean, `iptables-save` prints what it printed before
/// (nothing), so the tables the capture created are gone too.
#[test]
fn clean_in_a_fresh_namespace_leaves_no_tables() {
    if !root_or_skip("clean_in_a_fresh_namespace_leaves_no_tables") {
        return;
    }
    let ns = Ns::with_pod_addresses(true);
    let before = ns.state();
    let a = args(&[
        "-m",
        "TPROXY",
        "--redirect-dns",
        "--capture-all-dns",
        "--drop-invalid",
    ]);
    ns.ferry_ok(&a);
    assert_ne!(ns.state(), before);
    let mut clean = a.clone();
    clean.push("--clean");
    ns.ferry_ok(&clean);
    assert_eq!(ns.state(), before);
}

#[test]
fn ipv6_follows_the_pod_or_the_flag() {
    if !root_or_skip("ipv6_follows_the_pod_or_the_flag") {
        return;
    }
    let chains6 =
        |ns: &Ns| saved(&ns.ok(&["ip6tables-save", "-t", "nat"])).contains(":ISTIO_OUTPUT");
    let dual = Ns::with_pod_addresses(true);
    dual.ferry_ok(SIDECAR);
    assert!(chains6(&dual), "dual-stack pod without IPv6 rules");
    let v4 = Ns::with_pod_addresses(false);
    v4.ferry_ok(SIDECAR);
    assert!(!chains6(&v4), "IPv4 pod with IPv6 rules");
    v4.ferry_ok(&args(&["--ipv6=true"]));
    assert!(chains6(&v4), "--ipv6=true ignored");
    // Turning IPv6 off removes the earlier IPv6 capture.
    v4.ferry_ok(&args(&["--ipv6=false"]));
    assert!(!chains6(&v4), "IPv6 rules left after --ipv6=false");
}

#[test]
fn nft_backend_applies_reruns_and_cleans() {
    if !root_or_skip("nft_backend_applies_reruns_and_cleans") {
        return;
    }
    let ns = Ns::with_pod_addresses(true);
    add_foreign_rules(&ns);
    let before = ns.state();
    let nft_before = ns.ok(&["nft", "list", "ruleset"]);
    let a = args(&[
        "--backend",
        "nft",
        "-m",
        "TPROXY",
        "--redirect-dns",
        "--capture-all-dns",
        "-o",
        "9001",
        "-x",
        "10.1.0.0/16,fd00:1::/32",
    ]);

    ns.ferry_ok(&a);
    let table = ns.ok(&["nft", "list", "table", "inet", "ferry_capture"]);
    for want in [
        "type nat hook output priority",
        "chain nat_ip_ISTIO_OUTPUT",
        "chain mangle_ip6_ISTIO_TPROXY",
        "tproxy ip6 to :15006",
        "redirect to :15001",
        "ip daddr 10.1.0.0/16 return",
    ] {
        assert!(table.contains(want), "{want:?} missing:\n{table}");
    }
    let rules = ns.ok(&["ip", "-6", "rule", "show"]);
    assert!(rules.contains("fwmark 0x539 lookup 133"), "{rules}");
    // The iptables side is untouched.
    let with_nft = ns.state();
    assert_eq!(
        with_nft.split("--- ip rule").next(),
        before.split("--- ip rule").next(),
        "nft backend changed the iptables rules"
    );
    let ruleset = ns.ok(&["nft", "list", "ruleset"]);

    ns.ferry_ok(&a);
    assert_eq!(
        ns.ok(&["nft", "list", "ruleset"]),
        ruleset,
        "a second run changed the ruleset"
    );
    assert_eq!(ns.state(), with_nft, "a second run changed the routes");

    let mut clean = a.clone();
    clean.push("--clean");
    ns.ferry_ok(&clean);
    assert_eq!(
        ns.ok(&["nft", "list", "ruleset"]),
        nft_before,
        "--clean left nft rules"
    );
    assert_eq!(ns.state(), before, "--clean did not restore the routes");
    assert!(!ns.has_passthrough_v6());
    ns.ferry_ok(&clean);
}

#[test]
fn nft_goldens_load() {
    if !root_or_skip("nft_goldens_load") {
        return;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/nft");
    let ns = Ns::new();
    let mut n = 0;
    for e in std::fs::read_dir(&dir).expect("golden dir").flatten() {
        let p = e.path();
        let o = ns.exec(&["nft", "-c", "-f", p.to_str().expect("utf-8 path")]);
        assert!(
            o.status.success(),
            "nft refuses {}: {}",
            p.display(),
            text(&o.stderr)
        );
        n += 1;
    }
    assert!(n >= 5, "only {n} nft goldens");
}

#[test]
fn a_failure_part_way_leaves_nothing_applied() {
    if !root_or_skip("a_failure_part_way_leaves_nothing_applied") {
        return;
    }
    let ns = Ns::with_pod_addresses(true);
    add_foreign_rules(&ns);
    // A foreign chain that jumps to ISTIO_OUTPUT: the IPv6 transaction cannot delete the chain.
    ns.ok(&["ip6tables", "-t", "nat", "-N", "ISTIO_OUTPUT"]);
    ns.ok(&["ip6tables", "-t", "nat", "-N", "FOREIGN"]);
    ns.ok(&[
        "ip6tables",
        "-t",
        "nat",
        "-A",
        "FOREIGN",
        "-j",
        "ISTIO_OUTPUT",
    ]);
    let before = ns.state();

    let o = ns.ferry(SIDECAR);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("ip6tables-restore"),
        "{}",
        text(&o.stderr)
    );
    assert!(
        text(&o.stderr).contains("nothing was left applied"),
        "{}",
        text(&o.stderr)
    );
    assert_eq!(ns.state(), before, "the IPv4 half stayed applied");
}

#[test]
fn without_cap_net_admin_the_error_says_so() {
    if !root_or_skip("without_cap_net_admin_the_error_says_so") {
        return;
    }
    if Command::new("setpriv").arg("--help").output().is_err() {
        assert!(std::env::var_os("CI").is_none(), "setpriv missing in CI");
        eprintln!("SKIP without_cap_net_admin_the_error_says_so: setpriv not installed");
        return;
    }
    // A copy of the binary that an unprivileged user can run.
    let dir = std::env::temp_dir().join(format!("ferry-ipt-nocap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let bin = dir.join("ferry-iptables");
    std::fs::copy(BIN, &bin).expect("copy binary");
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755));
        let _ = std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755));
    }
    let ns = Ns::new();
    let before = ns.state();
    let bin_s = bin.to_str().expect("utf-8 path");
    for backend in ["iptables", "nft"] {
        let o = ns.exec(&[
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            bin_s,
            "--ipv6=false",
            "-b",
            "*",
            "-i",
            "*",
            "--backend",
            backend,
        ]);
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{backend}: {err}");
        assert!(err.contains("CAP_NET_ADMIN"), "{backend}: {err}");
    }
    assert_eq!(ns.state(), before);
    let _ = std::fs::remove_dir_all(&dir);
}
