//! The iptables tools of one family: `iptables-save`, `iptables-restore --noflush` and
//! `iptables -C`, in the variant chosen with `--force-iptables-binary`.

use crate::error::Error;
use crate::exec;
use crate::render::model::{Family, Table};

pub struct Xtables {
    pub family: Family,
    /// `iptables`, `ip6tables-nft`, `iptables-legacy`…
    base: String,
}

impl Xtables {
    /// `variant` is `iptables`, `iptables-nft` or `iptables-legacy`.
    pub fn new(variant: &str, family: Family) -> Xtables {
        let base = match family {
            Family::V4 => variant.to_string(),
            Family::V6 => variant.replacen("iptables", "ip6tables", 1),
        };
        Xtables { family, base }
    }

    pub fn restore_program(&self) -> String {
        format!("{}-restore", self.base)
    }

    pub fn save_program(&self) -> String {
        format!("{}-save", self.base)
    }

    /// The programs this family needs.
    pub fn programs(&self) -> Vec<String> {
        vec![
            self.base.clone(),
            self.save_program(),
            self.restore_program(),
        ]
    }

    pub fn installed(&self) -> bool {
        self.programs().iter().all(|p| exec::find(p).is_some())
    }

    /// The current ruleset (all tables).
    pub fn save(&self) -> Result<String, Error> {
        exec::run(&self.save_program(), &[], None)
    }

    /// Applies `input` as one transaction per table, keeping everything it does not name.
    pub fn restore(&self, input: &str) -> Result<(), Error> {
        exec::run(&self.restore_program(), &["--noflush"], Some(input)).map(|_| ())
    }

    /// Whether a rule with this spec is in `table`/`chain` (`iptables -C`).
    pub fn present(&self, table: Table, chain: &str, spec: &[String]) -> Result<bool, Error> {
        let mut args = vec!["-t", table.name(), "-C", chain];
        args.extend(spec.iter().map(String::as_str));
        let o = exec::output(&self.base, &args, None)?;
        match o.code {
            Some(0) => Ok(true),
            // 1: no such rule; 2: the rule names something that does not exist.
            Some(1) | Some(2) if !o.stderr.to_lowercase().contains("permission denied") => {
                Ok(false)
            }
            _ => Err(exec::failure(
                &format!("{} {}", self.base, args.join(" ")),
                &o,
            )),
        }
    }
}
