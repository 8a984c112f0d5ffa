//! Removing the capture — exactly what was added, nothing else:
//! - jumps from built-in chains to Istio's chains (found in `iptables-save`, whatever options
//!   added them);
//! - the other rules the options put in built-in chains (interface exclusions, TPROXY marks),
//!   found with `iptables -C` in tables that hold our chains (elsewhere an identical rule is
//!   someone else's; with both present, one copy is removed and the ruleset is as before);
//! - Istio's chains (`ISTIO_INBOUND`, `ISTIO_OUTPUT`, …), flushed and deleted;
//! - the TPROXY policy route and ::6 on lo (`routes::clean`).
//!
//! All of one family's removals are one `iptables-restore` transaction. The same removals
//! open every apply transaction, which is what makes applying twice give the same ruleset.

use crate::error::Error;
use crate::options::Options;
use crate::render::iptables::{spec, table_lines};
use crate::render::layout;
use crate::render::model::{Chain, Family, IstioChain, Plan, Rule, Table, Target};
use crate::xtables::Xtables;
use crate::{exec, routes};
use std::collections::BTreeMap;

const BUILT_IN: [&str; 5] = ["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"];

/// One table as `iptables-save` shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SavedTable {
    /// Istio chains that exist.
    pub ours: Vec<IstioChain>,
    /// Rules in built-in chains that jump to Istio chains, as saved (`PREROUTING -p tcp -j …`).
    pub jumps: Vec<String>,
    /// Nothing but built-in chains with policy ACCEPT and no rules.
    pub pristine: bool,
}

/// One family's ruleset as `iptables-save` shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Saved {
    /// The iptables-nft variant (tables can then be removed with nft).
    pub nf_tables: bool,
    pub tables: BTreeMap<Table, SavedTable>,
}

fn table_named(name: &str) -> Option<Table> {
    Table::ALL.into_iter().find(|t| t.name() == name)
}

/// Reads `iptables-save` output (the tables Istio uses; `filter` and `security` are ignored).
pub fn parse_save(text: &str) -> Saved {
    let mut saved = Saved {
        nf_tables: text
            .lines()
            .take_while(|l| l.starts_with('#'))
            .any(|l| l.contains("nf_tables")),
        ..Saved::default()
    };
    let mut current: Option<Table> = None;
    for line in text.lines() {
        if let Some(name) = line.strip_prefix('*') {
            current = table_named(name.trim());
            if let Some(t) = current {
                saved.tables.insert(
                    t,
                    SavedTable {
                        pristine: true,
                        ..SavedTable::default()
                    },
                );
            }
            continue;
        }
        let Some(t) = current.and_then(|t| saved.tables.get_mut(&t)) else {
            continue;
        };
        if let Some(decl) = line.strip_prefix(':') {
            let mut f = decl.split_whitespace();
            let (name, policy) = (f.next().unwrap_or(""), f.next().unwrap_or(""));
            if !BUILT_IN.contains(&name) || policy != "ACCEPT" {
                t.pristine = false;
            }
            if let Some(c) = IstioChain::from_name(name) {
                t.ours.push(c);
            }
        } else if let Some(rule) = line.strip_prefix("-A ") {
            t.pristine = false;
            let tokens: Vec<&str> = rule.split_whitespace().collect();
            let in_built_in = tokens.first().is_some_and(|c| BUILT_IN.contains(c));
            let to_ours = tokens
                .windows(2)
                .any(|w| (w[0] == "-j" || w[0] == "-g") && IstioChain::from_name(w[1]).is_some());
            if in_built_in && to_ours {
                t.jumps.push(rule.to_string());
            }
        }
    }
    saved
}

/// The removals for one table, as restore lines.
pub fn removal_lines(saved: &SavedTable, present_extras: &[(String, Vec<String>)]) -> Vec<String> {
    let mut lines: Vec<String> = saved.jumps.iter().map(|j| format!("-D {j}")).collect();
    for (chain, spec) in present_extras {
        lines.push(format!("-D {chain} {}", spec.join(" ")));
    }
    lines.extend(saved.ours.iter().map(|c| format!("-F {}", c.name())));
    lines.extend(saved.ours.iter().map(|c| format!("-X {}", c.name())));
    lines
}

/// Rules the options add to built-in chains that do not jump to an Istio chain (so are not
/// recognisable by name): per table, (chain, spec), without duplicates.
pub fn extras(rules: &[Rule]) -> BTreeMap<Table, Vec<(String, Vec<String>)>> {
    let mut out: BTreeMap<Table, Vec<(String, Vec<String>)>> = BTreeMap::new();
    for r in rules {
        if matches!(r.chain, Chain::BuiltIn(_)) && !matches!(r.target, Target::Jump(_)) {
            let item = (r.chain.name().to_string(), spec(r));
            let list = out.entry(r.table).or_default();
            if !list.contains(&item) {
                list.push(item);
            }
        }
    }
    out
}

/// One family's removals, per table (empty when there is nothing of ours).
pub struct Removal {
    pub tables: BTreeMap<Table, Vec<String>>,
}

impl Removal {
    pub fn is_empty(&self) -> bool {
        self.tables.values().all(Vec::is_empty)
    }
}

/// Works out what of ours is in place for one family: reads the ruleset and checks the
/// option-dependent built-in rules with `iptables -C`.
pub fn find(x: &Xtables, rules: &[Rule]) -> Result<(Removal, Saved), Error> {
    let saved = parse_save(&x.save()?);
    let mut tables = BTreeMap::new();
    let extras = extras(rules);
    for (table, state) in &saved.tables {
        let mut present = Vec::new();
        // Such a rule is taken for ours only when our chains are in the table: before the
        // first run, an identical rule is someone else's.
        if !state.ours.is_empty() {
            for (chain, spec) in extras.get(table).into_iter().flatten() {
                if x.present(*table, chain, spec)? {
                    present.push((chain.clone(), spec.clone()));
                }
            }
        }
        tables.insert(*table, removal_lines(state, &present));
    }
    Ok((Removal { tables }, saved))
}

/// The restore input: per table, the removals, then the new rules (`body`).
pub fn transaction(removal: &Removal, body: &[Rule]) -> String {
    let mut out = String::new();
    for table in Table::ALL {
        let mut lines = removal.tables.get(&table).cloned().unwrap_or_default();
        lines.extend(table_lines(body, table));
        if lines.is_empty() {
            continue;
        }
        out.push_str(&format!("* {}\n", table.name()));
        for l in lines {
            out.push_str(&l);
            out.push('\n');
        }
        out.push_str("COMMIT\n");
    }
    out
}

/// The rules to look for when removing: those of `o` with IPv6 on, so that what an IPv6 run
/// added is found whatever this run detected.
pub fn removal_plan(o: &Options) -> Plan {
    let mut o = o.clone();
    o.ipv6 = true;
    layout::plan(&o)
}

/// The families to look at when removing: IPv4, and IPv6 when its tools are installed and the
/// kernel runs it.
fn removal_families(variant: &str) -> Vec<Xtables> {
    let mut v = vec![Xtables::new(variant, Family::V4)];
    let v6 = Xtables::new(variant, Family::V6);
    if v6.installed() && std::path::Path::new("/proc/net/if_inet6").exists() {
        v.push(v6);
    }
    v
}

/// Removes the capture of one family; returns the transaction it ran (if any).
pub fn remove_family(x: &Xtables, rules: &[Rule], dry_run: bool) -> Result<Option<String>, Error> {
    let (removal, saved) = find(x, rules)?;
    if removal.is_empty() {
        return Ok(None);
    }
    let input = transaction(&removal, &[]);
    if !dry_run {
        x.restore(&input)?;
        drop_pristine_tables(x, &saved, &removal)?;
    }
    Ok(Some(input))
}

/// With iptables-nft, a table we emptied that holds nothing else (no rules, no chains, ACCEPT
/// policies) is removed, so that a pod where the capture was the table's only user gets back
/// its exact ruleset. Such a table does nothing to packets either way.
fn drop_pristine_tables(x: &Xtables, before: &Saved, removal: &Removal) -> Result<(), Error> {
    if !before.nf_tables || exec::find("nft").is_none() {
        return Ok(());
    }
    let after = parse_save(&x.save()?);
    let family = match x.family {
        Family::V4 => "ip",
        Family::V6 => "ip6",
    };
    for (table, lines) in &removal.tables {
        let emptied = !lines.is_empty();
        if emptied && after.tables.get(table).is_some_and(|t| t.pristine) {
            exec::run("nft", &["delete", "table", family, table.name()], None)?;
        }
    }
    Ok(())
}

/// `--clean` with the iptables backend.
pub fn clean_iptables(o: &Options, variant: &str, dry_run: bool) -> Result<(), Error> {
    let families = removal_families(variant);
    let mut programs: Vec<String> = families.iter().flat_map(Xtables::programs).collect();
    if !dry_run {
        programs.push("ip".into());
    }
    exec::require(&programs, "remove the capture")?;
    let rules = removal_plan(o);
    for x in &families {
        if let Some(input) = remove_family(x, rules.rules(x.family), dry_run)? {
            if dry_run {
                println!("# {} --noflush", x.restore_program());
                print!("{input}");
            }
        }
    }
    if dry_run {
        return Ok(());
    }
    routes::clean(o.tproxy_mark, o.tproxy_route_table)
}

/// The nft script that removes the capture table (creating it first makes the delete succeed
/// when it is absent).
pub fn nft_removal() -> String {
    use crate::render::nft::{FAMILY, TABLE};
    format!("table {FAMILY} {TABLE}\ndelete table {FAMILY} {TABLE}\n")
}

/// `--clean` with the nft backend.
pub fn clean_nft(o: &Options, dry_run: bool) -> Result<(), Error> {
    if dry_run {
        print!("{}", nft_removal());
        return Ok(());
    }
    exec::require(&["nft".into(), "ip".into()], "remove the capture")?;
    exec::run("nft", &["-f", "-"], Some(&nft_removal()))?;
    routes::clean(o.tproxy_mark, o.tproxy_route_table)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAVE: &str = "# Generated by iptables-save v1.8.9 (nf_tables) on Tue\n\
*filter\n:INPUT ACCEPT [0:0]\n:ISTIO_OUTPUT - [0:0]\n-A INPUT -j ISTIO_OUTPUT\nCOMMIT\n\
*nat\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [3:180]\n:ISTIO_INBOUND - [0:0]\n:ISTIO_OUTPUT - [0:0]\n:MINE - [0:0]\n\
-A PREROUTING -p tcp -j ISTIO_INBOUND\n-A OUTPUT -d 10.9.9.9/32 -j RETURN\n-A OUTPUT -j ISTIO_OUTPUT\n\
-A ISTIO_OUTPUT -j RETURN\n-A MINE -j RETURN\nCOMMIT\n\
*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n";

    #[test]
    fn finds_our_chains_and_jumps_only() {
        let s = parse_save(SAVE);
        assert!(s.nf_tables);
        assert!(!s.tables.contains_key(&Table::Mangle));
        let nat = &s.tables[&Table::Nat];
        assert_eq!(nat.ours, vec![IstioChain::Inbound, IstioChain::Output]);
        assert_eq!(
            nat.jumps,
            vec![
                "PREROUTING -p tcp -j ISTIO_INBOUND",
                "OUTPUT -j ISTIO_OUTPUT"
            ]
        );
        assert!(!nat.pristine);
        assert!(s.tables[&Table::Raw].pristine);
    }

    #[test]
    fn removal_deletes_jumps_then_chains() {
        let s = parse_save(SAVE);
        let extra = vec![(
            "OUTPUT".to_string(),
            vec![
                "-o".to_string(),
                "eth9".into(),
                "-j".into(),
                "RETURN".into(),
            ],
        )];
        let lines = removal_lines(&s.tables[&Table::Nat], &extra);
        assert_eq!(
            lines,
            vec![
                "-D PREROUTING -p tcp -j ISTIO_INBOUND",
                "-D OUTPUT -j ISTIO_OUTPUT",
                "-D OUTPUT -o eth9 -j RETURN",
                "-F ISTIO_INBOUND",
                "-F ISTIO_OUTPUT",
                "-X ISTIO_INBOUND",
                "-X ISTIO_OUTPUT",
            ]
        );
    }

    #[test]
    fn transaction_puts_removals_before_new_rules() {
        let s = parse_save(SAVE);
        let mut tables = BTreeMap::new();
        tables.insert(Table::Nat, removal_lines(&s.tables[&Table::Nat], &[]));
        let c = crate::config::Config {
            proxy_uid: "1337".into(),
            proxy_gid: "1337".into(),
            ..crate::config::Config::default()
        };
        let o = Options::try_from(&c).expect("valid");
        let plan = layout::plan(&o);
        let t = transaction(&Removal { tables }, &plan.v4);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "* nat");
        assert_eq!(lines[1], "-D PREROUTING -p tcp -j ISTIO_INBOUND");
        let x = lines
            .iter()
            .position(|l| *l == "-X ISTIO_OUTPUT")
            .expect("-X");
        let n = lines
            .iter()
            .position(|l| *l == "-N ISTIO_INBOUND")
            .expect("-N");
        assert!(x < n);
        assert_eq!(lines.last(), Some(&"COMMIT"));
    }

    #[test]
    fn extras_are_the_non_jump_built_in_rules() {
        let c = crate::config::Config {
            proxy_uid: "1337".into(),
            proxy_gid: "1337".into(),
            exclude_interfaces: "eth9".into(),
            reroute_virtual_interfaces: "eth9".into(),
            ..crate::config::Config::default()
        };
        let o = Options::try_from(&c).expect("valid");
        let e = extras(&layout::plan(&o).v4);
        // -k and -c both give "-i eth9 -j RETURN": listed once.
        let nat: Vec<String> = e[&Table::Nat]
            .iter()
            .map(|(c, s)| format!("{c} {}", s.join(" ")))
            .collect();
        assert_eq!(
            nat,
            vec!["PREROUTING -i eth9 -j RETURN", "OUTPUT -o eth9 -j RETURN"]
        );
    }
}
