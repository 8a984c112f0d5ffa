//! The nft backend's own goldens (`tests/golden/nft/<case>.nft`): the script `nft -f -` gets
//! for a set of option combinations. `UPDATE_GOLDEN=1` rewrites them; review the diff.
//! (The root tests check that nft accepts every one of them.)

use ferry_iptables::config::Config;
use ferry_iptables::options::Options;
use ferry_iptables::render::render_nft;
use std::path::PathBuf;

/// Istio's defaults with the proxy's UID/GID, as the injector passes them.
fn base() -> Config {
    Config {
        proxy_uid: "1337".into(),
        proxy_gid: "1337".into(),
        ..Config::default()
    }
}

/// The injector's usual flags: all inbound but the agent's ports, all outbound.
fn sidecar() -> Config {
    Config {
        inbound_ports_include: "*".into(),
        inbound_ports_exclude: "15090,15021,15020".into(),
        outbound_ip_ranges_include: "*".into(),
        ..base()
    }
}

pub fn cases() -> Vec<(&'static str, Config)> {
    vec![
        ("redirect", sidecar()),
        (
            "tproxy",
            Config {
                inbound_interception_mode: "TPROXY".into(),
                ..sidecar()
            },
        ),
        (
            "ipv6",
            Config {
                enable_ipv6: true,
                ..sidecar()
            },
        ),
        (
            "tproxy-ipv6",
            Config {
                inbound_interception_mode: "TPROXY".into(),
                enable_ipv6: true,
                exclude_interfaces: "eth9".into(),
                drop_invalid: true,
                ..sidecar()
            },
        ),
        (
            "dns",
            Config {
                redirect_dns: true,
                dns_servers_v4: vec!["10.96.0.10".into()],
                dns_servers_v6: vec!["fd00::a".into()],
                enable_ipv6: true,
                ..sidecar()
            },
        ),
        (
            "dns-capture-all",
            Config {
                redirect_dns: true,
                capture_all_dns: true,
                ..sidecar()
            },
        ),
        (
            "cidrs-ports",
            Config {
                inbound_ports_include: "8080,9090:9099".into(),
                outbound_ip_ranges_include: "10.0.0.0/8,fd00::/8".into(),
                outbound_ip_ranges_exclude: "10.1.0.0/16,fd00:1::/32".into(),
                outbound_ports_include: "7777".into(),
                outbound_ports_exclude: "9001,9002".into(),
                reroute_virtual_interfaces: "eth1".into(),
                exclude_interfaces: "eth2".into(),
                enable_ipv6: true,
                ..base()
            },
        ),
        (
            "owner-groups",
            Config {
                owner_groups_include: "1000,2000".into(),
                proxy_uid: "1337,1338".into(),
                ..sidecar()
            },
        ),
    ]
}

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/nft")
}

#[test]
fn nft_goldens() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1");
    let dir = golden_dir();
    let mut failures = Vec::new();
    for (name, cfg) in cases() {
        let o = Options::try_from(&cfg).unwrap_or_else(|e| panic!("{name}: {e}"));
        let got = render_nft(&o);
        let path = dir.join(format!("{name}.nft"));
        if update {
            std::fs::create_dir_all(&dir).expect("create golden dir");
            std::fs::write(&path, &got).expect("write golden");
            continue;
        }
        match std::fs::read_to_string(&path) {
            Ok(want) if want == got => {}
            Ok(want) => {
                let at = want
                    .lines()
                    .zip(got.lines())
                    .position(|(a, b)| a != b)
                    .unwrap_or(want.lines().count().min(got.lines().count()));
                failures.push(format!(
                    "{name}: differs from {} at line {} (UPDATE_GOLDEN=1 rewrites)\n  golden: {:?}\n  now:    {:?}",
                    path.display(),
                    at + 1,
                    want.lines().nth(at),
                    got.lines().nth(at)
                ));
            }
            Err(e) => failures.push(format!(
                "{name}: cannot read {} ({e}); run with UPDATE_GOLDEN=1 to create it",
                path.display()
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Every golden file belongs to a case (no stale files).
#[test]
fn no_stale_goldens() {
    let names: Vec<String> = cases().iter().map(|(n, _)| format!("{n}.nft")).collect();
    let Ok(entries) = std::fs::read_dir(golden_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let f = e.file_name().to_string_lossy().into_owned();
        assert!(names.contains(&f), "stale golden {f}: no case renders it");
    }
}
