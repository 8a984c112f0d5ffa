//! `ferry-iptables`: Istio's `istio-iptables` for Ferry. It redirects a pod's traffic to the
//! sidecar with the same flags, the same environment variables and the same rules, through
//! `iptables-restore` (default) or `nft`.
//!
//! Flow: [`cli`] (flags + environment → [`config::Config`]) → [`host`] (facts Istio reads from
//! the pod) → [`options::Options`] (validated once) → [`render`] (pure: rules as text) →
//! [`apply`] / [`clean`] (the thin I/O around it: [`xtables`], [`routes`], [`exec`]).

pub mod apply;
pub mod clean;
pub mod cli;
pub mod config;
pub mod error;
pub mod exec;
pub mod host;
pub mod options;
pub mod render;
pub mod routes;
pub mod xtables;

use config::Backend;
use error::Error;
use options::Options;
use std::ffi::OsString;

/// Runs the command line `args`: parse, complete from the host, validate, then print
/// (`--dry-run`), remove (`--clean`) or install the capture.
pub fn run(args: impl IntoIterator<Item = OsString>) -> Result<(), Error> {
    let mut inv = cli::parse(args)?;
    if inv.skip_rule_apply {
        eprintln!("ferry-iptables: --skip-rule-apply: no rules changed");
        return Ok(());
    }
    if let Some(ns) = &inv.network_namespace {
        host::enter_netns(ns)?;
    }
    host::fill(&mut inv)?;
    let o = Options::try_from(&inv.config)?;
    match (inv.clean, inv.backend) {
        (true, Backend::Iptables) => clean::clean_iptables(&o, &inv.iptables_binary, inv.dry_run),
        (true, Backend::Nft) => clean::clean_nft(&o, inv.dry_run),
        (false, Backend::Iptables) if inv.dry_run => {
            apply::print_iptables(&o, &inv.iptables_binary);
            Ok(())
        }
        (false, Backend::Nft) if inv.dry_run => {
            apply::print_nft(&o);
            Ok(())
        }
        (false, Backend::Iptables) => apply::apply_iptables(&o, &inv.iptables_binary),
        (false, Backend::Nft) => apply::apply_nft(&o),
    }
}
