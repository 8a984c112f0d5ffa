//! Rules → `iptables-restore` input, laid out as istio-iptables writes it: tables in name
//! order, then per table the new chains (`-N`), then the rules in the order they were built.

use super::model::{Chain, CtState, Match, Op, OwnerKind, Rule, Table, Target};

/// The restore input for one family's rules ("" when there are none).
pub fn restore(rules: &[Rule]) -> String {
    let mut out = String::new();
    for table in Table::ALL {
        let lines = table_lines(rules, table);
        if lines.is_empty() {
            continue;
        }
        out.push_str("* ");
        out.push_str(table.name());
        out.push('\n');
        for l in lines {
            out.push_str(&l);
            out.push('\n');
        }
        out.push_str("COMMIT\n");
    }
    out
}

/// The lines of one table's section: `-N` for the new chains, then the rules.
pub fn table_lines(rules: &[Rule], table: Table) -> Vec<String> {
    let in_table: Vec<&Rule> = rules.iter().filter(|r| r.table == table).collect();
    let mut lines: Vec<String> = new_chains(&in_table)
        .into_iter()
        .map(|c| format!("-N {c}"))
        .collect();
    lines.extend(in_table.into_iter().map(line));
    lines
}

/// Chains to create: those that get rules, in order of their first rule, then any chain
/// only jumped to.
pub fn new_chains(rules: &[&Rule]) -> Vec<&'static str> {
    let mut chains: Vec<&'static str> = Vec::new();
    let mut add = |name: &'static str| {
        if !chains.contains(&name) {
            chains.push(name);
        }
    };
    for r in rules {
        if let Chain::Istio(c) = r.chain {
            add(c.name());
        }
    }
    for r in rules {
        if let Target::Jump(c) = r.target {
            add(c.name());
        }
    }
    chains
}

/// One rule as a restore line (`-A CHAIN …` or `-I CHAIN N …`).
pub fn line(r: &Rule) -> String {
    let head = match r.op {
        Op::Append => format!("-A {}", r.chain.name()),
        Op::Insert(n) => format!("-I {} {n}", r.chain.name()),
    };
    format!("{head} {}", spec(r).join(" "))
}

/// The rule without its position: matches and target, as `-C`/`-D` take them.
pub fn spec(r: &Rule) -> Vec<String> {
    let mut t: Vec<String> = Vec::new();
    let mut push = |parts: &[&str]| t.extend(parts.iter().map(|s| s.to_string()));
    for m in &r.matches {
        match m {
            Match::Proto(p) => push(&["-p", p.name()]),
            Match::InIface(n) => push(&["-i", n]),
            Match::OutIface(n) => push(&["-o", n]),
            Match::Src(a) => push(&["-s", a]),
            Match::Dst { neg, addr } => {
                if *neg {
                    push(&["!"]);
                }
                push(&["-d", addr]);
            }
            Match::DPort { neg, port } => {
                if *neg {
                    push(&["!"]);
                }
                push(&["--dport", &port.to_string()]);
            }
            Match::SPort(p) => push(&["--sport", &p.to_string()]),
            Match::DPorts { neg, ports } => {
                push(&["-m", "multiport"]);
                if *neg {
                    push(&["!"]);
                }
                let list: Vec<String> = ports.iter().map(|p| p.to_string()).collect();
                push(&["--dports", &list.join(",")]);
            }
            Match::Owner { neg, kind, id } => {
                push(&["-m", "owner"]);
                if *neg {
                    push(&["!"]);
                }
                let flag = match kind {
                    OwnerKind::Uid => "--uid-owner",
                    OwnerKind::Gid => "--gid-owner",
                };
                push(&[flag, id]);
            }
            Match::Mark { neg, mark } => {
                push(&["-m", "mark"]);
                if *neg {
                    push(&["!"]);
                }
                push(&["--mark", &mark.to_string()]);
            }
            Match::ConnMark(m) => push(&["-m", "connmark", "--mark", &m.to_string()]),
            Match::CtState(s) => {
                let states = match s {
                    CtState::RelatedEstablished => "RELATED,ESTABLISHED",
                    CtState::Invalid => "INVALID",
                };
                push(&["-m", "conntrack", "--ctstate", states]);
            }
        }
    }
    match &r.target {
        Target::Jump(c) => push(&["-j", c.name()]),
        Target::Return => push(&["-j", "RETURN"]),
        Target::Accept => push(&["-j", "ACCEPT"]),
        Target::Drop => push(&["-j", "DROP"]),
        Target::Redirect { port, singular } => {
            let flag = if *singular { "--to-port" } else { "--to-ports" };
            push(&["-j", "REDIRECT", flag, &port.to_string()]);
        }
        Target::Tproxy { mark, port } => push(&[
            "-j",
            "TPROXY",
            "--tproxy-mark",
            &format!("{mark}/0xffffffff"),
            "--on-port",
            &port.to_string(),
        ]),
        Target::SetMark(m) => push(&["-j", "MARK", "--set-mark", &m.to_string()]),
        Target::SaveMark => push(&["-j", "CONNMARK", "--save-mark"]),
        Target::RestoreMark => push(&["-j", "CONNMARK", "--restore-mark"]),
        Target::CtZone(z) => push(&["-j", "CT", "--zone", &z.to_string()]),
    }
    t
}
