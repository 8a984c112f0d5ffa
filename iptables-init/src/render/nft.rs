//! Rules → an `nft -f` script with the same semantics, in one dedicated table so that removing
//! the capture is `delete table inet ferry_capture`.
//!
//! Each iptables chain of each family becomes a regular chain named `<table>_<ip|ip6>_<CHAIN>`
//! (`nat_ip_ISTIO_OUTPUT`); the built-in chains become regular chains too (`nat_ip_OUTPUT`),
//! entered from one base chain per hook (`nat_output`) by `meta nfproto` — so a `return` in them
//! ends the hook's processing as a `RETURN` from a built-in chain does. Base chains use the
//! iptables priorities (raw -300, mangle -150, nat -100) and `type route` for mangle output, so
//! that a mark set there re-routes as in iptables.
//!
//! Two translations are not word for word:
//! - iptables' TPROXY target drops the packet when no transparent socket is found; nft's
//!   `tproxy` only stops matching, so each TPROXY rule is followed by the same matches + `drop`;
//! - `-m owner ! --uid-owner X` also matches packets without a socket; `meta skuid != X` does
//!   not. Only locally generated packets reach those rules, so the difference is confined to
//!   kernel-generated packets (RSTs, ICMP errors), which are never redirected anyway.

use super::model::{
    Chain, CtState, Family, Hook, Match, Op, OwnerKind, Plan, PortSpec, Rule, Table, Target,
};
use std::fmt::Write as _;

/// The table that holds the whole capture.
pub const TABLE: &str = "ferry_capture";
pub const FAMILY: &str = "inet";

/// The script for `nft -f -`: it replaces the table atomically (creating it first so that the
/// delete always succeeds), which makes applying twice give the same ruleset.
pub fn script(plan: &Plan) -> String {
    let mut s = String::new();
    s.push_str("#!/usr/sbin/nft -f\n");
    s.push_str("# ferry-iptables: Istio sidecar traffic capture (nft backend)\n");
    let _ = writeln!(s, "table {FAMILY} {TABLE}");
    let _ = writeln!(s, "delete table {FAMILY} {TABLE}");
    let _ = writeln!(s, "table {FAMILY} {TABLE} {{");
    let mut first = true;
    let mut block = |s: &mut String, name: &str, lines: &[String]| {
        if !first {
            s.push('\n');
        }
        first = false;
        let _ = writeln!(s, "\tchain {name} {{");
        for l in lines {
            let _ = writeln!(s, "\t\t{l}");
        }
        s.push_str("\t}\n");
    };

    // Base chains: one per hook used, dispatching by family.
    for table in Table::ALL {
        for hook in [Hook::Prerouting, Hook::Output] {
            let mut lines = vec![base_chain_spec(table, hook).to_string()];
            for family in plan.families() {
                let used = plan
                    .rules(family)
                    .iter()
                    .any(|r| r.table == table && r.chain == Chain::BuiltIn(hook));
                if used {
                    lines.push(format!(
                        "meta nfproto {} jump {}",
                        nfproto(family),
                        chain_name(table, family, Chain::BuiltIn(hook))
                    ));
                }
            }
            if lines.len() > 1 {
                block(&mut s, &base_chain_name(table, hook), &lines);
            }
        }
    }

    // Regular chains, per family and table, in order of first use.
    for family in plan.families() {
        let rules = plan.rules(family);
        for table in Table::ALL {
            let in_table: Vec<&Rule> = rules.iter().filter(|r| r.table == table).collect();
            for chain in chains(&in_table) {
                let lines: Vec<String> = ordered(&in_table, chain)
                    .into_iter()
                    .flat_map(|r| rule_lines(family, r))
                    .collect();
                block(&mut s, &chain_name(table, family, chain), &lines);
            }
        }
    }
    s.push_str("}\n");
    s
}

fn nfproto(f: Family) -> &'static str {
    match f {
        Family::V4 => "ipv4",
        Family::V6 => "ipv6",
    }
}

fn base_chain_name(table: Table, hook: Hook) -> String {
    let h = match hook {
        Hook::Prerouting => "prerouting",
        Hook::Output => "output",
    };
    format!("{}_{h}", table.name())
}

fn base_chain_spec(table: Table, hook: Hook) -> &'static str {
    match (table, hook) {
        (Table::Mangle, Hook::Prerouting) => {
            "type filter hook prerouting priority mangle; policy accept;"
        }
        (Table::Mangle, Hook::Output) => "type route hook output priority mangle; policy accept;",
        (Table::Nat, Hook::Prerouting) => {
            "type nat hook prerouting priority dstnat; policy accept;"
        }
        (Table::Nat, Hook::Output) => "type nat hook output priority -100; policy accept;",
        (Table::Raw, Hook::Prerouting) => {
            "type filter hook prerouting priority raw; policy accept;"
        }
        (Table::Raw, Hook::Output) => "type filter hook output priority raw; policy accept;",
    }
}

fn chain_name(table: Table, family: Family, chain: Chain) -> String {
    let fam = match family {
        Family::V4 => "ip",
        Family::V6 => "ip6",
    };
    format!("{}_{fam}_{}", table.name(), chain.name())
}

/// Chains of one table: with rules, in order of first rule; then those only jumped to.
fn chains(rules: &[&Rule]) -> Vec<Chain> {
    let mut out: Vec<Chain> = Vec::new();
    for r in rules {
        if !out.contains(&r.chain) {
            out.push(r.chain);
        }
    }
    for r in rules {
        if let Target::Jump(c) = r.target {
            if !out.contains(&Chain::Istio(c)) {
                out.push(Chain::Istio(c));
            }
        }
    }
    out
}

/// The rules of `chain` in their final order (inserts applied as iptables would).
fn ordered<'a>(rules: &[&'a Rule], chain: Chain) -> Vec<&'a Rule> {
    let mut out: Vec<&Rule> = Vec::new();
    for r in rules.iter().filter(|r| r.chain == chain) {
        match r.op {
            Op::Append => out.push(r),
            Op::Insert(n) => {
                let at = (n.saturating_sub(1) as usize).min(out.len());
                out.insert(at, r);
            }
        }
    }
    out
}

fn rule_lines(family: Family, r: &Rule) -> Vec<String> {
    let matches: Vec<String> = r.matches.iter().map(|m| expr(family, m)).collect();
    let table = r.table;
    let with = |verdict: String| {
        let mut parts = matches.clone();
        parts.push(verdict);
        parts.join(" ")
    };
    match &r.target {
        Target::Jump(c) => vec![with(format!(
            "jump {}",
            chain_name(table, family, Chain::Istio(*c))
        ))],
        Target::Return => vec![with("return".into())],
        Target::Accept => vec![with("accept".into())],
        Target::Drop => vec![with("drop".into())],
        Target::Redirect { port, .. } => vec![with(format!("redirect to :{port}"))],
        Target::Tproxy { mark, port } => {
            let fam = match family {
                Family::V4 => "ip",
                Family::V6 => "ip6",
            };
            vec![
                with(format!(
                    "tproxy {fam} to :{port} meta mark set {mark} accept"
                )),
                // No transparent socket: iptables' TPROXY drops.
                with("drop".into()),
            ]
        }
        Target::SetMark(m) => vec![with(format!("meta mark set {m}"))],
        Target::SaveMark => vec![with("ct mark set meta mark".into())],
        Target::RestoreMark => vec![with("meta mark set ct mark".into())],
        Target::CtZone(z) => vec![with(format!("ct zone set {z}"))],
    }
}

fn neq(neg: bool) -> &'static str {
    if neg {
        "!= "
    } else {
        ""
    }
}

fn ports(p: &PortSpec) -> String {
    match p.last {
        Some(last) => format!("{}-{last}", p.first),
        None => p.first.to_string(),
    }
}

/// An interface name; iptables' `eth+` wildcard is nft's `eth*`.
fn ifname(n: &str) -> String {
    match n.strip_suffix('+') {
        Some(prefix) => format!("\"{prefix}*\""),
        None => format!("\"{n}\""),
    }
}

/// A user or group: numbers bare, names quoted (nft resolves them).
fn owner_id(id: &str) -> String {
    if id.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
        id.to_string()
    } else {
        format!("\"{id}\"")
    }
}

fn expr(family: Family, m: &Match) -> String {
    let ip = match family {
        Family::V4 => "ip",
        Family::V6 => "ip6",
    };
    match m {
        Match::Proto(p) => format!("meta l4proto {}", p.name()),
        Match::InIface(n) => format!("iifname {}", ifname(n)),
        Match::OutIface(n) => format!("oifname {}", ifname(n)),
        Match::Src(a) => format!("{ip} saddr {a}"),
        Match::Dst { neg, addr } => format!("{ip} daddr {}{addr}", neq(*neg)),
        Match::DPort { neg, port } => format!("th dport {}{}", neq(*neg), ports(port)),
        Match::SPort(p) => format!("th sport {p}"),
        Match::DPorts { neg, ports: list } => {
            let items: Vec<String> = list.iter().map(ports).collect();
            format!("th dport {}{{ {} }}", neq(*neg), items.join(", "))
        }
        Match::Owner { neg, kind, id } => {
            let key = match kind {
                OwnerKind::Uid => "skuid",
                OwnerKind::Gid => "skgid",
            };
            format!("meta {key} {}{}", neq(*neg), owner_id(id))
        }
        Match::Mark { neg, mark } => format!("meta mark {}{mark}", neq(*neg)),
        Match::ConnMark(m) => format!("ct mark {m}"),
        Match::CtState(CtState::RelatedEstablished) => "ct state related,established".into(),
        Match::CtState(CtState::Invalid) => "ct state invalid".into(),
    }
}
