//! The binary's contract without touching any network: refusals exit 2 with a clear message,
//! --dry-run prints the rules, a missing tool is named, --help works. No root needed.

use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_ferry-iptables");

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("DRY_RUN")
        .output()
        .expect("run ferry-iptables")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn bad_input_exits_2_with_the_reason() {
    let cases: &[(&[&str], &str)] = &[
        (&["--no-such-flag"], "--no-such-flag"),
        (&["-i", "10.0.0.0/33"], "prefix length"),
        (&["-x", "10.0.0.300/8"], "not an IPv4 or IPv6 address"),
        (&["-p", "70000"], "-p/--envoy-port"),
        (&["-b", "80,http"], "-b/--istio-inbound-ports"),
        (&["-m", "NONE"], "expected REDIRECT or TPROXY"),
        (&["-x", "*"], "wildcard"),
        (&["--backend", "pf"], "pf"),
        (&["--run-validation"], "not supported"),
    ];
    for (args, want) in cases {
        let mut a = args.to_vec();
        a.extend(["--ipv6=false", "-n"]);
        let o = run(&a);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains(want),
            "{args:?}: {:?} not in {}",
            want,
            stderr(&o)
        );
        assert!(
            stdout(&o).is_empty(),
            "{args:?}: printed rules although refused"
        );
    }
}

#[test]
fn dry_run_prints_the_restore_input() {
    let o = run(&[
        "-n",
        "--ipv6=false",
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
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    for want in [
        "# iptables-restore --noflush",
        "* nat",
        "-A PREROUTING -p tcp -j ISTIO_INBOUND",
        "-A ISTIO_INBOUND -p tcp --dport 15021 -j RETURN",
        "-A ISTIO_OUTPUT -j ISTIO_REDIRECT",
        "COMMIT",
    ] {
        assert!(out.lines().any(|l| l == want), "{want:?} missing in\n{out}");
    }
    assert!(!out.contains("ip6tables"), "IPv6 off, yet:\n{out}");
}

#[test]
fn dry_run_nft_with_tproxy_lists_the_routes() {
    let o = run(&[
        "-n",
        "--ipv6=true",
        "--backend",
        "nft",
        "-m",
        "TPROXY",
        "-b",
        "*",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("table inet ferry_capture {"), "{out}");
    assert!(
        out.contains("# ip -6 rule add fwmark 1337 lookup 133"),
        "{out}"
    );
    assert!(out.contains("# ip -6 addr add ::6/128 dev lo"), "{out}");
}

#[test]
fn environment_binds_like_istio() {
    let o = Command::new(BIN)
        .args(["-n", "--ipv6=false"])
        .env("ISTIO_INBOUND_PORTS", "8080")
        .env("ISTIO_META_DNS_CAPTURE", "true")
        .env("CAPTURE_ALL_DNS", "true")
        .env("ISTIO_OUTBOUND_OWNER_GROUPS_EXCLUDE", "888")
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    for want in [
        "-A ISTIO_INBOUND -p tcp --dport 8080 -j ISTIO_IN_REDIRECT",
        "-A ISTIO_OUTPUT_DNS -p udp --dport 53 -j REDIRECT --to-port 15053",
        "-A ISTIO_OUTPUT -m owner --gid-owner 888 -j RETURN",
    ] {
        assert!(out.lines().any(|l| l == want), "{want:?} missing in\n{out}");
    }
    // A flag beats the environment.
    let o = Command::new(BIN)
        .args(["-n", "--ipv6=false", "-b", "9090"])
        .env("ISTIO_INBOUND_PORTS", "8080")
        .output()
        .expect("run");
    assert!(stdout(&o).contains("--dport 9090 -j ISTIO_IN_REDIRECT"));
    assert!(!stdout(&o).contains("--dport 8080"));
}

#[test]
fn missing_tools_are_named_and_nothing_runs() {
    let empty = std::env::temp_dir().join(format!("ferry-ipt-empty-{}", std::process::id()));
    std::fs::create_dir_all(&empty).expect("temp dir");
    for (args, tool) in [
        (&["--ipv6=false"][..], "`iptables`"),
        (&["--backend", "nft", "--ipv6=false"], "`nft`"),
    ] {
        let o = Command::new(BIN)
            .args(args)
            .env("PATH", &empty)
            .output()
            .expect("run");
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        assert!(
            stderr(&o).contains(tool) && stderr(&o).contains("not found in PATH"),
            "{}",
            stderr(&o)
        );
    }
    let _ = std::fs::remove_dir(&empty);
}

#[test]
fn help_exits_0() {
    let o = run(&["--help"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains("--istio-inbound-interception-mode"));
}
