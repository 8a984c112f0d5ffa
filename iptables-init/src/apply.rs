//! Installing the capture, all or nothing.
//!
//! iptables: everything is read and planned first (programs present, current ruleset, what of
//! ours is already there); then each family is one `iptables-restore --noflush` transaction
//! that removes the previous capture and adds the new one; then the routes. If a later step
//! fails, the families already changed have the capture removed again, so a failure never
//! leaves a half capture. nft: one `nft -f` transaction replaces the table, then the routes.

use crate::clean;
use crate::error::Error;
use crate::exec;
use crate::options::Options;
use crate::render::model::{Family, Plan};
use crate::render::{self, layout};
use crate::routes::{self, Routes};
use crate::xtables::Xtables;

fn rolled_back(cause: Error, rollback: Result<(), Error>) -> Error {
    match rollback {
        Ok(()) => Error::RolledBack {
            cause: Box::new(cause),
        },
        Err(r) => Error::RollbackFailed {
            cause: Box::new(cause),
            rollback: Box::new(r),
        },
    }
}

/// Prints what would be applied (`--dry-run`): the restore input per family, then the `ip`
/// commands as comments.
pub fn print_iptables(o: &Options, variant: &str) {
    let rules = render::render(o);
    println!("# {}-restore --noflush", variant);
    print!("{}", rules.v4);
    if let Some(v6) = &rules.v6 {
        println!(
            "# {}-restore --noflush",
            variant.replacen("iptables", "ip6tables", 1)
        );
        print!("{v6}");
    }
    for c in routes::plan(o).describe() {
        println!("# {c}");
    }
}

/// Prints the nft script and the `ip` commands (`--dry-run`).
pub fn print_nft(o: &Options) {
    print!("{}", render::render_nft(o));
    for c in routes::plan(o).describe() {
        println!("# {c}");
    }
}

/// Installs the capture with iptables-restore.
pub fn apply_iptables(o: &Options, variant: &str) -> Result<(), Error> {
    let plan = layout::plan(o);
    let routes = routes::plan(o);
    let mut families: Vec<Xtables> = plan
        .families()
        .into_iter()
        .map(|f| Xtables::new(variant, f))
        .collect();
    let mut programs: Vec<String> = families.iter().flat_map(Xtables::programs).collect();
    if routes.needed() {
        programs.push("ip".into());
    }
    exec::require(&programs, "install the capture")?;
    // IPv6 off now: an earlier IPv6 capture is removed (when there are tools to see it).
    let v6 = Xtables::new(variant, Family::V6);
    if !o.ipv6 && v6.installed() && std::path::Path::new("/proc/net/if_inet6").exists() {
        families.push(v6);
    }

    // Plan every transaction before changing anything.
    let removal = clean::removal_plan(o);
    let mut transactions = Vec::new();
    for x in &families {
        let (found, _) = clean::find(x, removal.rules(x.family))?;
        let body = if plan.families().contains(&x.family) {
            plan.rules(x.family)
        } else {
            &[]
        };
        if body.is_empty() && found.is_empty() {
            continue;
        }
        transactions.push((x, clean::transaction(&found, body)));
    }

    let mut done: Vec<&Xtables> = Vec::new();
    for (x, input) in &transactions {
        if let Err(e) = x.restore(input) {
            if done.is_empty() {
                // One restore is one transaction: nothing was changed.
                return Err(e);
            }
            return Err(rolled_back(e, undo_iptables(&done, &removal)));
        }
        done.push(x);
    }
    if let Err(e) = apply_routes(&routes) {
        return Err(rolled_back(e, undo_iptables(&done, &removal)));
    }
    Ok(())
}

fn undo_iptables(done: &[&Xtables], removal: &Plan) -> Result<(), Error> {
    for x in done {
        clean::remove_family(x, removal.rules(x.family), false)?;
    }
    Ok(())
}

fn apply_routes(r: &Routes) -> Result<(), Error> {
    if r.needed() {
        routes::apply(r)?;
    }
    Ok(())
}

/// Installs the capture with nft.
pub fn apply_nft(o: &Options) -> Result<(), Error> {
    let routes = routes::plan(o);
    let mut programs = vec!["nft".to_string()];
    if routes.needed() {
        programs.push("ip".into());
    }
    exec::require(&programs, "install the capture")?;
    exec::run("nft", &["-f", "-"], Some(&render::render_nft(o)))?;
    if let Err(e) = apply_routes(&routes) {
        let undo = exec::run("nft", &["-f", "-"], Some(&clean::nft_removal())).map(|_| ());
        return Err(rolled_back(e, undo));
    }
    Ok(())
}
