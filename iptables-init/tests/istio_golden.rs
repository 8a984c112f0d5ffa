//! Istio's own capture goldens: for every case of the fixture index, the configuration is built
//! as Istio's test builds it (base_config + overrides, other fields at their zero value), and
//! the rendered `iptables-restore` input must be the golden's, line for line.
//!
//! Normalisation, and only this: the golden's `iptables-save` / `ip6tables-save` lines are the
//! state probes Istio's configurator runs around the restore, not restore input, so they are
//! dropped before comparing (the last probe still tells whether IPv6 was on, which is checked);
//! blank lines and surrounding whitespace are ignored.
//!
//! The fixtures are read from `<workspace>/../shared/fixtures/istio/iptables`, or from
//! `$FERRY_FIXTURES/istio/iptables` (FERRY_FIXTURES is the `fixtures` directory). Missing
//! fixtures fail the test under CI and skip it, saying why, elsewhere.

use ferry_iptables::config::Config;
use ferry_iptables::options::Options;
use ferry_iptables::render::render;
use serde_yaml_ng::{Mapping, Value};
use std::path::PathBuf;

fn fixtures_dir() -> Option<PathBuf> {
    let root = match std::env::var_os("FERRY_FIXTURES") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures"),
    };
    let dir = root.join("istio/iptables");
    if dir.join("index.yaml").is_file() {
        return Some(dir);
    }
    let why = format!(
        "Istio iptables fixtures not found at {} (set FERRY_FIXTURES to the fixtures directory)",
        dir.display()
    );
    if std::env::var_os("CI").is_some() {
        panic!("{why}");
    }
    eprintln!("SKIP istio goldens: {why}");
    None
}

/// Istio's test starts from the zero value of every field.
fn zero() -> Config {
    Config {
        proxy_port: String::new(),
        inbound_capture_port: String::new(),
        inbound_tunnel_port: String::new(),
        inbound_tproxy_mark: String::new(),
        inbound_tproxy_route_table: String::new(),
        owner_groups_include: String::new(),
        host_ipv4_loopback_cidr: String::new(),
        ..Config::default()
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => String::new(),
        other => panic!("expected a scalar, got {other:?}"),
    }
}

fn list(v: &Value) -> Vec<String> {
    match v {
        Value::Sequence(s) => s.iter().map(text).collect(),
        other => panic!("expected a list, got {other:?}"),
    }
}

fn flag(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        other => panic!("expected a boolean, got {other:?}"),
    }
}

/// Sets the field Istio names `key`.
fn set(c: &mut Config, key: &str, v: &Value) {
    match key {
        "ProxyPort" => c.proxy_port = text(v),
        "InboundCapturePort" => c.inbound_capture_port = text(v),
        "InboundTunnelPort" => c.inbound_tunnel_port = text(v),
        "ProxyUID" => c.proxy_uid = text(v),
        "ProxyGID" => c.proxy_gid = text(v),
        "InboundInterceptionMode" => c.inbound_interception_mode = text(v),
        "InboundTProxyMark" => c.inbound_tproxy_mark = text(v),
        "InboundTProxyRouteTable" => c.inbound_tproxy_route_table = text(v),
        "InboundPortsInclude" => c.inbound_ports_include = text(v),
        "InboundPortsExclude" => c.inbound_ports_exclude = text(v),
        "OwnerGroupsInclude" => c.owner_groups_include = text(v),
        "OwnerGroupsExclude" => c.owner_groups_exclude = text(v),
        "OutboundPortsInclude" => c.outbound_ports_include = text(v),
        "OutboundPortsExclude" => c.outbound_ports_exclude = text(v),
        "OutboundIPRangesInclude" => c.outbound_ip_ranges_include = text(v),
        "OutboundIPRangesExclude" => c.outbound_ip_ranges_exclude = text(v),
        "RerouteVirtualInterfaces" => c.reroute_virtual_interfaces = text(v),
        "ExcludeInterfaces" => c.exclude_interfaces = text(v),
        "HostIPv4LoopbackCidr" => c.host_ipv4_loopback_cidr = text(v),
        "RedirectDNS" => c.redirect_dns = flag(v),
        "CaptureAllDNS" => c.capture_all_dns = flag(v),
        "DropInvalid" => c.drop_invalid = flag(v),
        "DualStack" => c.dual_stack = flag(v),
        "EnableIPv6" => c.enable_ipv6 = flag(v),
        "DryRun" => c.dry_run = flag(v),
        "DNSServersV4" => c.dns_servers_v4 = list(v),
        "DNSServersV6" => c.dns_servers_v6 = list(v),
        other => panic!("fixture field {other} is not mapped to a ferry-iptables option"),
    }
}

fn apply(c: &mut Config, m: &Mapping) {
    for (k, v) in m {
        set(c, &text(k), v);
    }
}

fn restore_lines(s: &str) -> Vec<String> {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

fn is_probe(l: &str) -> bool {
    l == "iptables-save" || l == "ip6tables-save"
}

#[test]
fn istio_capture_goldens() {
    let Some(dir) = fixtures_dir() else {
        return;
    };
    let index = std::fs::read_to_string(dir.join("index.yaml")).expect("read index.yaml");
    let index: Value = serde_yaml_ng::from_str(&index).expect("parse index.yaml");
    let base = index["base_config"].as_mapping().expect("base_config");
    let cases = index["cases"].as_sequence().expect("cases");
    assert!(
        cases.len() >= 15,
        "expected the full case list, got {}",
        cases.len()
    );

    let mut failures = Vec::new();
    for case in cases {
        let name = text(&case["name"]);
        let mut cfg = zero();
        apply(&mut cfg, base);
        if let Some(o) = case["overrides"].as_mapping() {
            apply(&mut cfg, o);
        }
        let opts = match Options::try_from(&cfg) {
            Ok(o) => o,
            Err(e) => {
                failures.push(format!("{name}: options refused: {e}"));
                continue;
            }
        };
        let golden_path = dir.join(text(&case["golden"]));
        let golden = std::fs::read_to_string(&golden_path)
            .unwrap_or_else(|e| panic!("read {}: {e}", golden_path.display()));
        let golden_lines = restore_lines(&golden);
        let want: Vec<String> = golden_lines
            .iter()
            .filter(|l| !is_probe(l))
            .cloned()
            .collect();
        let rules = render(&opts);
        let mut got = restore_lines(&rules.v4);
        if let Some(v6) = &rules.v6 {
            got.extend(restore_lines(v6));
        }
        if got != want {
            let at = got
                .iter()
                .zip(&want)
                .position(|(a, b)| a != b)
                .unwrap_or(got.len().min(want.len()));
            failures.push(format!(
                "{name}: first difference at restore line {}\n  golden: {:?}\n  ferry:  {:?}\n--- ferry output\n{}{}",
                at + 1,
                want.get(at),
                got.get(at),
                rules.v4,
                rules.v6.clone().unwrap_or_default()
            ));
            continue;
        }
        // Istio's final probe is ip6tables-save exactly when IPv6 is on.
        let last_probe_v6 = golden_lines.last().is_some_and(|l| l == "ip6tables-save");
        if last_probe_v6 != rules.v6.is_some() {
            failures.push(format!("{name}: IPv6 on in ferry = {}", rules.v6.is_some()));
        }
    }
    let matched = cases.len() - failures.len();
    eprintln!("istio goldens: {matched}/{} match exactly", cases.len());
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
