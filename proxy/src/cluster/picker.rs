//! What a pick looks at, rebuilt whenever hosts or their health change: per priority level,
//! the hosts that take traffic (healthy ones, degraded ones, or all in panic) with their
//! weighted round-robin order and cumulative weights, and the priority load.

use super::host::{Health, Host};
pub use super::host_set::Tuning;
use super::host_set::{HostSet, Table};
use super::lb;
use super::priority::{self, Counts, Loads};
use crate::config::cluster::LbPolicy;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

/// The hosts of one level and availability, split by locality when locality-weighted
/// balancing is on: a locality is picked by its effective weight, then a host in it.
#[derive(Debug, Default)]
pub struct Source {
    plain: HostSet,
    localities: Option<Localities>,
}

#[derive(Debug, Default)]
struct Localities {
    sets: Vec<HostSet>,
    schedule: Vec<u32>,
    rr: AtomicUsize,
}

impl Source {
    fn plain(hosts: Vec<Arc<Host>>, policy: LbPolicy, tuning: Tuning) -> Source {
        Source {
            plain: HostSet::new(hosts, policy, tuning),
            localities: None,
        }
    }

    /// `eligible` split by locality, each locality weighted by Envoy's effective weight: its
    /// `load_balancing_weight` × min(1, overprovisioning × eligible / hosts in it). Plain when
    /// no locality has a weight.
    fn by_locality(
        eligible: Vec<Arc<Host>>,
        level: &[Arc<Host>],
        policy: LbPolicy,
        overprovisioning: u32,
        tuning: Tuning,
    ) -> Source {
        let mut groups: Vec<(Arc<crate::config::cluster::Locality>, u32, Vec<Arc<Host>>)> =
            Vec::new();
        for h in &eligible {
            let loc = h.locality();
            match groups.iter_mut().find(|g| g.0 == loc) {
                Some(g) => g.2.push(h.clone()),
                None => groups.push((loc, h.locality_weight(), vec![h.clone()])),
            }
        }
        let weights: Vec<u32> = groups
            .iter()
            .map(|(loc, lw, hosts)| {
                let total = level
                    .iter()
                    .filter(|h| !h.excluded() && h.locality() == *loc)
                    .count();
                if total == 0 {
                    return 0;
                }
                let avail = (f64::from(overprovisioning) / 100.0 * hosts.len() as f64
                    / total as f64)
                    .min(1.0);
                // Thousandths: the schedule works on integers.
                (f64::from(*lw) * avail * 1000.0).round() as u32
            })
            .collect();
        if weights.iter().all(|&w| w == 0) {
            return Source::plain(eligible, policy, tuning);
        }
        let (mut sets, mut kept) = (Vec::new(), Vec::new());
        for ((_, _, hosts), w) in groups.into_iter().zip(weights) {
            if w > 0 {
                sets.push(HostSet::new(hosts, policy, tuning));
                kept.push(w);
            }
        }
        let mut schedule = lb::schedule(&kept);
        if schedule.is_empty() {
            schedule = (0..kept.len() as u32).collect();
        }
        Source {
            plain: HostSet::default(),
            localities: Some(Localities {
                sets,
                schedule,
                rr: AtomicUsize::new(0),
            }),
        }
    }

    fn pick(&self, policy: LbPolicy, hash: u64) -> Option<&Arc<Host>> {
        match &self.localities {
            None => self.plain.pick(policy, hash),
            Some(l) => {
                let k = l.rr.fetch_add(1, Relaxed) % l.schedule.len().max(1);
                l.sets.get(*l.schedule.get(k)? as usize)?.pick(policy, hash)
            }
        }
    }
}

/// Priority 0's healthy hosts by locality, for zone-aware routing.
#[derive(Debug, Default)]
pub struct ZoneSets {
    localities: Vec<Arc<crate::config::cluster::Locality>>,
    sets: Vec<HostSet>,
    counts: Vec<u64>,
}

impl ZoneSets {
    fn new(healthy: &[Arc<Host>], policy: LbPolicy, tuning: Tuning) -> ZoneSets {
        let mut groups: Vec<(Arc<crate::config::cluster::Locality>, Vec<Arc<Host>>)> = Vec::new();
        for h in healthy {
            let loc = h.locality();
            match groups.iter_mut().find(|g| g.0 == loc) {
                Some(g) => g.1.push(h.clone()),
                None => groups.push((loc, vec![h.clone()])),
            }
        }
        let mut z = ZoneSets::default();
        for (loc, hosts) in groups {
            z.localities.push(loc);
            z.counts.push(hosts.len() as u64);
            z.sets.push(HostSet::new(hosts, policy, tuning));
        }
        z
    }

    /// Zone-aware routing would apply but the cluster has fewer than `min` healthy hosts.
    pub fn too_small(&self, min: u64) -> bool {
        self.sets.len() >= 2 && self.counts.iter().sum::<u64>() < min
    }

    fn count(&self, loc: &crate::config::cluster::Locality) -> u64 {
        self.localities
            .iter()
            .position(|l| **l == *loc)
            .map_or(0, |i| self.counts[i])
    }
}

/// What zone-aware routing looks at for one pick.
pub struct ZoneCtx<'a> {
    /// The local cluster's picker (its healthy hosts by locality).
    pub local: Arc<Picker>,
    pub own: &'a crate::config::cluster::Locality,
    pub cfg: crate::config::cluster::ZoneAware,
    pub stats: &'a [crate::stats::Cell; 6],
}

#[derive(Debug, Default)]
pub struct Picker {
    /// Priority 0 by locality (only while zone-aware routing is on).
    pub zone: Option<ZoneSets>,
    pub loads: Loads,
    /// Per level: its healthy hosts (all of its hosts when it is in panic).
    pub healthy: Vec<Source>,
    pub degraded: Vec<Source>,
    /// One level taking all the load: no priority draw.
    single: bool,
    pub healthy_count: u64,
    pub degraded_count: u64,
}

impl Picker {
    /// The consistent-hashing table of priority 0's healthy hosts: (ring size or table size,
    /// fewest and most entries of a host), for the `ring_hash_lb` / `maglev_lb` gauges.
    pub fn table_sizes(&self) -> Option<(u64, u64, u64)> {
        match self.healthy.first()?.plain.table.as_ref()? {
            Table::Ring(r) => {
                let (min, max) = r.hashes_per_host();
                Some((r.size(), min, max))
            }
            Table::Maglev(m) => {
                let (min, max) = m.entries_per_host();
                Some((m.table().len() as u64, min, max))
            }
        }
    }

    pub fn new(
        hosts: &[Arc<Host>],
        policy: LbPolicy,
        overprovisioning: u32,
        panic_threshold: f64,
        locality_weighted: bool,
        tuning: Tuning,
    ) -> Picker {
        let levels = hosts
            .iter()
            .map(|h| h.priority() as usize + 1)
            .max()
            .unwrap_or(0);
        let mut counts = vec![Counts::default(); levels];
        // Per level: healthy, degraded, all.
        type Level = (Vec<Arc<Host>>, Vec<Arc<Host>>, Vec<Arc<Host>>);
        let mut by_level: Vec<Level> = (0..levels).map(|_| Default::default()).collect();
        let (mut healthy_count, mut degraded_count) = (0, 0);
        for h in hosts {
            let p = h.priority() as usize;
            let c = &mut counts[p];
            let (healthy, degraded, all) = &mut by_level[p];
            all.push(h.clone());
            if h.excluded() {
                continue;
            }
            c.total += 1;
            match h.health() {
                Health::Healthy => {
                    c.healthy += 1;
                    healthy_count += 1;
                    healthy.push(h.clone());
                }
                Health::Degraded => {
                    c.degraded += 1;
                    degraded_count += 1;
                    degraded.push(h.clone());
                }
                Health::Unhealthy => {}
            }
        }
        let loads = priority::loads(&counts, overprovisioning, panic_threshold);
        let mut healthy = Vec::with_capacity(levels);
        let mut degraded = Vec::with_capacity(levels);
        for (i, (h, d, all)) in by_level.into_iter().enumerate() {
            if loads.panic[i] {
                // Panic takes precedence over localities.
                healthy.push(Source::plain(all, policy, tuning));
                degraded.push(Source::default());
            } else if locality_weighted {
                healthy.push(Source::by_locality(
                    h,
                    &all,
                    policy,
                    overprovisioning,
                    tuning,
                ));
                degraded.push(Source::by_locality(
                    d,
                    &all,
                    policy,
                    overprovisioning,
                    tuning,
                ));
            } else {
                healthy.push(Source::plain(h, policy, tuning));
                degraded.push(Source::plain(d, policy, tuning));
            }
        }
        let single = loads.healthy.first() == Some(&100);
        let zone = (super::zone::local().is_some()
            && !policy.hashes()
            && !loads.panic.first().copied().unwrap_or(true))
        .then(|| {
            let p0: Vec<Arc<Host>> = hosts
                .iter()
                .filter(|h| h.priority() == 0 && !h.excluded() && h.health() == Health::Healthy)
                .cloned()
                .collect();
            ZoneSets::new(&p0, policy, tuning)
        });
        Picker {
            zone,
            loads,
            healthy,
            degraded,
            single,
            healthy_count,
            degraded_count,
        }
    }

    /// A host by `policy`: a priority level drawn by the priority load, then a host of it.
    /// A pick from a level in panic counts in `panic`.
    /// Consistent-hashing policies draw the level and the host with the request `hash` (a
    /// random one without).
    /// Zone-aware routing's choice of a priority-0 locality, when it applies.
    fn zone_pick(&self, z: &ZoneCtx<'_>, policy: LbPolicy, h: u64) -> Option<Arc<Host>> {
        use super::zone::Routed;
        let up = self.zone.as_ref()?;
        let local = z.local.zone.as_ref()?;
        if up.sets.len() < 2 {
            return None;
        }
        if up.counts.iter().sum::<u64>() < z.cfg.min_cluster_size {
            // Counted when the picker is built (`too_small`), as Envoy counts it.
            return None;
        }
        if local.count(z.own) == 0 {
            z.stats[5].inc();
            return None;
        }
        if local.localities.len() < 2 || f64::from(fastrand::u32(0..100)) >= z.cfg.routing_enabled {
            return None;
        }
        let own = up.localities.iter().position(|l| **l == *z.own);
        let mut counts = up.counts.clone();
        let mut local_counts: Vec<u64> = up.localities.iter().map(|l| local.count(l)).collect();
        let own = own.unwrap_or_else(|| {
            counts.push(0);
            local_counts.push(local.count(z.own));
            counts.len() - 1
        });
        let local_total = local.counts.iter().sum();
        let (i, how) = super::zone::route(&counts, &local_counts, local_total, own, |n| {
            fastrand::u64(0..n.max(1))
        });
        z.stats[match how {
            Routed::AllDirectly => 0,
            Routed::Sampled => 1,
            Routed::CrossZone => 2,
            Routed::NoCapacityLeft => 3,
        }]
        .inc();
        up.sets.get(i)?.pick(policy, h).cloned()
    }

    pub fn pick(
        &self,
        policy: LbPolicy,
        hash: Option<u64>,
        panic: &crate::stats::Cell,
        zone: Option<ZoneCtx<'_>>,
    ) -> Option<Arc<Host>> {
        let h = if policy.hashes() {
            hash.unwrap_or_else(|| fastrand::u64(..))
        } else {
            0
        };
        let (level, deg) = if self.single {
            (0, false)
        } else if policy.hashes() {
            priority::choose(&self.loads, (h % 100) as u32)
        } else {
            priority::choose(&self.loads, fastrand::u32(0..100))
        };
        let set = if deg {
            self.degraded.get(level)?
        } else {
            self.healthy.get(level)?
        };
        if self.loads.panic.get(level) == Some(&true) {
            panic.inc();
        }
        if let (0, false, Some(z)) = (level, deg, &zone) {
            if let Some(host) = self.zone_pick(z, policy, h) {
                return Some(host);
            }
        }
        set.pick(policy, h).cloned()
    }
}
