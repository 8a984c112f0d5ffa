//! What istio-iptables sets up with netlink besides the rules: for TPROXY, a policy route that
//! delivers marked packets locally (`ip rule add fwmark <mark> lookup <table>` and
//! `ip route add local default dev lo table <table>`, per family); with IPv6, the address ::6
//! on lo that inbound passthrough connections come from (IPv4 has 127.0.0.6 already).
//! Done with the `ip` tool, each step checked first so that running twice changes nothing.

use crate::error::Error;
use crate::exec;
use crate::options::{InboundPorts, Mode, Options};
use crate::render::model::Family;

/// The inbound passthrough source address for IPv6.
const PASSTHROUGH_V6: &str = "::6/128";

/// The routing side of the capture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Routes {
    /// (mark, table) of the TPROXY policy route.
    pub tproxy: Option<(u32, u32)>,
    pub families: Vec<Family>,
    /// Add ::6/128 to lo.
    pub passthrough_v6: bool,
}

/// The routes `o` needs (Istio adds the TPROXY route only when inbound ports are captured).
pub fn plan(o: &Options) -> Routes {
    let mut families = vec![Family::V4];
    if o.ipv6 {
        families.push(Family::V6);
    }
    Routes {
        tproxy: (o.mode == Mode::Tproxy && o.inbound_ports != InboundPorts::None)
            .then_some((o.tproxy_mark, o.tproxy_route_table)),
        families,
        passthrough_v6: o.ipv6,
    }
}

impl Routes {
    pub fn needed(&self) -> bool {
        self.tproxy.is_some() || self.passthrough_v6
    }

    /// The equivalent `ip` commands, for --dry-run.
    pub fn describe(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some((mark, table)) = self.tproxy {
            for f in &self.families {
                out.push(format!(
                    "ip {} rule add fwmark {mark} lookup {table}",
                    flag(*f)
                ));
                out.push(format!(
                    "ip {} route add local default dev lo table {table}",
                    flag(*f)
                ));
            }
        }
        if self.passthrough_v6 {
            out.push(format!("ip -6 addr add {PASSTHROUGH_V6} dev lo"));
        }
        out
    }
}

fn flag(f: Family) -> &'static str {
    match f {
        Family::V4 => "-4",
        Family::V6 => "-6",
    }
}

fn ip(args: &[&str]) -> Result<String, Error> {
    exec::run("ip", args, None)
}

fn rule_present(f: Family, mark: &str, table: &str) -> Result<bool, Error> {
    let out = ip(&[flag(f), "rule", "show", "fwmark", mark, "lookup", table])?;
    Ok(!out.trim().is_empty())
}

fn route_present(f: Family, table: &str) -> Result<bool, Error> {
    let args = [flag(f), "route", "show", "table", table];
    let o = exec::output("ip", &args, None)?;
    if !o.ok() {
        // A table that was never used does not exist yet.
        if o.stderr.contains("does not exist") {
            return Ok(false);
        }
        return Err(exec::failure(&format!("ip {}", args.join(" ")), &o));
    }
    Ok(o.stdout
        .lines()
        .any(|l| l.starts_with("local default dev lo")))
}

fn passthrough_present() -> Result<bool, Error> {
    let out = ip(&["-6", "addr", "show", "dev", "lo"])?;
    Ok(out
        .split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .any(|w| w[0] == "inet6" && w[1] == PASSTHROUGH_V6))
}

/// Something `apply` added, to take back if a later step fails.
#[derive(Debug)]
pub enum Added {
    Rule(Family, u32, u32),
    Route(Family, u32),
    Passthrough,
}

/// Adds what is missing; returns what it added.
pub fn apply(r: &Routes) -> Result<Vec<Added>, Error> {
    let mut added = Vec::new();
    let result = apply_steps(r, &mut added);
    match result {
        Ok(()) => Ok(added),
        Err(e) => {
            undo(&added);
            Err(e)
        }
    }
}

fn apply_steps(r: &Routes, added: &mut Vec<Added>) -> Result<(), Error> {
    if let Some((mark, table)) = r.tproxy {
        let (m, t) = (mark.to_string(), table.to_string());
        for &f in &r.families {
            if !rule_present(f, &m, &t)? {
                ip(&[flag(f), "rule", "add", "fwmark", &m, "lookup", &t])?;
                added.push(Added::Rule(f, mark, table));
            }
            if !route_present(f, &t)? {
                ip(&[
                    flag(f),
                    "route",
                    "add",
                    "local",
                    "default",
                    "dev",
                    "lo",
                    "table",
                    &t,
                ])?;
                added.push(Added::Route(f, table));
            }
        }
    }
    if r.passthrough_v6 && !passthrough_present()? {
        ip(&["-6", "addr", "add", PASSTHROUGH_V6, "dev", "lo"])?;
        added.push(Added::Passthrough);
    }
    Ok(())
}

/// Best effort: removes what [`apply`] reported adding.
pub fn undo(added: &[Added]) {
    for a in added.iter().rev() {
        let _ = match a {
            Added::Rule(f, m, t) => ip(&[
                flag(*f),
                "rule",
                "del",
                "fwmark",
                &m.to_string(),
                "lookup",
                &t.to_string(),
            ]),
            Added::Route(f, t) => ip(&[
                flag(*f),
                "route",
                "del",
                "local",
                "default",
                "dev",
                "lo",
                "table",
                &t.to_string(),
            ]),
            Added::Passthrough => ip(&["-6", "addr", "del", PASSTHROUGH_V6, "dev", "lo"]),
        };
    }
}

/// Removes the TPROXY policy route for (mark, table) in both families and ::6 from lo, when
/// present, whatever the mode: nothing else uses that mark/table pair or that address.
pub fn clean(mark: u32, table: u32) -> Result<(), Error> {
    let (m, t) = (mark.to_string(), table.to_string());
    for f in [Family::V4, Family::V6] {
        // A family the kernel does not run (IPv6 disabled) has nothing to remove.
        if f == Family::V6 && !std::path::Path::new("/proc/net/if_inet6").exists() {
            continue;
        }
        // Duplicates (added by hand, or by older runs) are removed too.
        for _ in 0..64 {
            if !rule_present(f, &m, &t)? {
                break;
            }
            ip(&[flag(f), "rule", "del", "fwmark", &m, "lookup", &t])?;
        }
        if route_present(f, &t)? {
            ip(&[
                flag(f),
                "route",
                "del",
                "local",
                "default",
                "dev",
                "lo",
                "table",
                &t,
            ])?;
        }
    }
    if std::path::Path::new("/proc/net/if_inet6").exists() && passthrough_present()? {
        ip(&["-6", "addr", "del", PASSTHROUGH_V6, "dev", "lo"])?;
    }
    Ok(())
}
