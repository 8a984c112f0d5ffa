//! Zone-aware routing: with a local cluster (this proxy's own service) named in the bootstrap,
//! requests stay in this proxy's locality as far as the upstream's spread over localities
//! allows, as Envoy routes them: all of them when the upstream has at least as large a share
//! of its hosts here as the local cluster has, a sampled part otherwise, the rest to localities
//! with spare capacity.

use crate::config::cluster::Locality;
use std::sync::OnceLock;

static LOCAL: OnceLock<(String, Locality)> = OnceLock::new();

/// Names the local cluster and this proxy's locality (once, at start).
pub fn set_local(cluster: String, locality: Locality) {
    let _ = LOCAL.set((cluster, locality));
}

/// The local cluster's name and this proxy's locality, when zone-aware routing is on.
pub fn local() -> Option<&'static (String, Locality)> {
    LOCAL.get()
}

/// How a pick was routed (each is an `lb_zone_*` counter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routed {
    AllDirectly,
    Sampled,
    CrossZone,
    NoCapacityLeft,
}

/// The locality index (into `upstream`) for one pick. `upstream` and `local` are healthy host
/// counts per locality, aligned (the local cluster's count in each upstream locality), with
/// `local_total` the local cluster's healthy hosts in all localities; `own` is this proxy's
/// locality; `draw(n)` is a random number below `n`.
pub fn route(
    upstream: &[u64],
    local: &[u64],
    local_total: u64,
    own: usize,
    mut draw: impl FnMut(u64) -> u64,
) -> (usize, Routed) {
    let up_total: u64 = upstream.iter().sum();
    // Shares in 1/10000.
    let pct = |n: u64, total: u64| (n * 10_000).checked_div(total).unwrap_or(0);
    let up_own = pct(upstream[own], up_total);
    let local_own = pct(local[own], local_total);
    if up_own >= local_own {
        return (own, Routed::AllDirectly);
    }
    if draw(10_000) < up_own * 10_000 / local_own.max(1) {
        return (own, Routed::Sampled);
    }
    // The rest goes where the upstream has more than its local share.
    let residual: Vec<u64> = upstream
        .iter()
        .zip(local)
        .enumerate()
        .map(|(i, (&u, &l))| {
            if i == own {
                0
            } else {
                pct(u, up_total).saturating_sub(pct(l, local_total))
            }
        })
        .collect();
    let total: u64 = residual.iter().sum();
    if total == 0 {
        return (draw(upstream.len() as u64) as usize, Routed::NoCapacityLeft);
    }
    let mut r = draw(total);
    for (i, c) in residual.iter().enumerate() {
        if r < *c {
            return (i, Routed::CrossZone);
        }
        r -= c;
    }
    (own, Routed::CrossZone)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direct_sampled_and_cross_zone() {
        // Half the upstream and half the local cluster here: everything stays.
        assert_eq!(
            route(&[3, 3], &[1, 1], 2, 0, |_| 0),
            (0, Routed::AllDirectly)
        );
        // A third of the upstream here against half the local cluster: two thirds sampled.
        assert_eq!(
            route(&[2, 4], &[1, 1], 2, 0, |_| 6_665),
            (0, Routed::Sampled)
        );
        assert_eq!(
            route(&[2, 4], &[1, 1], 2, 0, |n| n - 1),
            (1, Routed::CrossZone)
        );
        // The local cluster's share here counts all its hosts, also where the upstream is not.
        assert_eq!(
            route(&[1, 1], &[6, 4], 10, 0, |n| n - 1),
            (1, Routed::CrossZone),
            "z1: 50% of the upstream against 60% local"
        );
        assert_eq!(
            route(&[1, 1], &[6, 4], 20, 0, |_| 0).1,
            Routed::AllDirectly,
            "z1: 50% of the upstream against 30% local"
        );
    }
}
