//! Pure rendering: options → rules → `iptables-restore` text or an `nft` script. No I/O.

pub mod iptables;
pub mod layout;
pub mod model;
pub mod nft;

use crate::options::Options;

/// The `iptables-restore` input per family.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rules {
    /// For `iptables-restore --noflush`.
    pub v4: String,
    /// For `ip6tables-restore --noflush`; `None` when IPv6 is off.
    pub v6: Option<String>,
}

/// Istio's rule layout for `o`, as `iptables-restore` input.
pub fn render(o: &Options) -> Rules {
    let plan = layout::plan(o);
    Rules {
        v4: iptables::restore(&plan.v4),
        v6: plan.ipv6.then(|| iptables::restore(&plan.v6)),
    }
}

/// The same capture as an `nft -f` script.
pub fn render_nft(o: &Options) -> String {
    nft::script(&layout::plan(o))
}
