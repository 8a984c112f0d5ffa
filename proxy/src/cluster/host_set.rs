//! One set of hosts a pick chooses from, with what its policy needs built once: the weighted
//! round-robin order, cumulative weights, a consistent-hashing table, or an EDF schedule of
//! changing weights (weighted least request, slow start).

use super::host::Host;
use super::{hash, lb};
use crate::config::cluster::{LbPolicy, SlowStart};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

/// A consistent-hashing table over a host set.
#[derive(Debug)]
pub(super) enum Table {
    Ring(hash::Ring),
    Maglev(hash::Maglev),
}

#[derive(Debug, Default)]
pub struct HostSet {
    pub hosts: Vec<Arc<Host>>,
    schedule: Vec<u32>,
    cumulative: Vec<u64>,
    rr: AtomicUsize,
    pub(super) table: Option<Table>,
    /// LEAST_REQUEST over unequal weights, or slow start: the EDF schedule of dynamic weights.
    edf: Option<std::sync::Mutex<lb::Edf>>,
    tuning: Tuning,
}

/// A host's weight now: least request's `weight / (active + 1)^bias`, scaled by slow start.
fn dynamic_weight(h: &Host, policy: LbPolicy, t: Tuning) -> f64 {
    let w = match policy {
        LbPolicy::LeastRequest { bias, .. } => {
            lb::least_request_weight(h.weight(), h.stats.rq_active.load(Relaxed), bias)
        }
        _ => f64::from(h.weight()),
    };
    match t.slow_start {
        Some(s) => w * s.factor(h.in_service()),
        None => w,
    }
}

/// A host's key on a hash table: `envoy.lb` `hash_key`, the hostname
/// (`use_hostname_for_hashing`), else the address.
fn hash_key(h: &Host, use_hostname: bool) -> String {
    match &h.hash_key {
        Some(k) => k.clone(),
        None if use_hostname => h.hostname.clone(),
        None => h.addr.to_string(),
    }
}

/// What shapes a pick besides the policy: slow start.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tuning {
    pub slow_start: Option<SlowStart>,
}

impl HostSet {
    pub(super) fn new(hosts: Vec<Arc<Host>>, policy: LbPolicy, tuning: Tuning) -> HostSet {
        let mut set = HostSet::plain(hosts);
        let keys = |u: bool| -> Vec<String> { set.hosts.iter().map(|h| hash_key(h, u)).collect() };
        let weights: Vec<u32> = set.hosts.iter().map(|h| h.weight()).collect();
        let normalized = hash::normalize_weights(&weights, 1.0);
        set.table = match policy {
            LbPolicy::RingHash {
                min,
                max,
                use_hostname,
            } => {
                let k = keys(use_hostname);
                let k: Vec<&str> = k.iter().map(String::as_str).collect();
                Some(Table::Ring(hash::Ring::build(&k, &normalized, min, max)))
            }
            LbPolicy::Maglev {
                table_size,
                use_hostname,
            } => {
                let k = keys(use_hostname);
                let k: Vec<&str> = k.iter().map(String::as_str).collect();
                hash::Maglev::build(&k, &normalized, table_size)
                    .ok()
                    .map(Table::Maglev)
            }
            _ => None,
        };
        // Unequal least-request weights, or slow start: an EDF schedule of weights that change.
        let unequal = !weights.windows(2).all(|w| w[0] == w[1]);
        let edf = match policy {
            LbPolicy::LeastRequest { .. } => unequal || tuning.slow_start.is_some(),
            LbPolicy::RoundRobin => tuning.slow_start.is_some(),
            _ => false,
        };
        if edf {
            let e = lb::Edf::new(set.hosts.iter().map(|h| dynamic_weight(h, policy, tuning)));
            set.edf = Some(std::sync::Mutex::new(e));
        }
        set.tuning = tuning;
        set
    }

    fn plain(hosts: Vec<Arc<Host>>) -> HostSet {
        let weights: Vec<u32> = hosts.iter().map(|h| h.weight()).collect();
        let cumulative = weights
            .iter()
            .scan(0u64, |acc, &w| {
                *acc += u64::from(w);
                Some(*acc)
            })
            .collect();
        HostSet {
            schedule: lb::schedule(&weights),
            cumulative,
            hosts,
            rr: AtomicUsize::new(0),
            table: None,
            edf: None,
            tuning: Tuning::default(),
        }
    }

    fn random(&self) -> usize {
        match self.cumulative.last() {
            Some(&total) if !self.schedule.is_empty() => {
                lb::weighted_index(&self.cumulative, fastrand::u64(0..total))
            }
            _ => fastrand::usize(0..self.hosts.len()),
        }
    }

    pub(super) fn pick(&self, policy: LbPolicy, hash: u64) -> Option<&Arc<Host>> {
        let n = self.hosts.len();
        if n == 0 {
            return None;
        }
        let i = match policy {
            LbPolicy::RingHash { .. } | LbPolicy::Maglev { .. } => {
                let i = match &self.table {
                    Some(Table::Ring(r)) => r.pick(hash),
                    Some(Table::Maglev(m)) => m.pick(hash),
                    None => None,
                };
                i? as usize
            }
            LbPolicy::Random => self.random(),
            LbPolicy::LeastRequest { .. } | LbPolicy::RoundRobin if self.edf.is_some() => {
                let edf = self.edf.as_ref()?;
                let mut e = edf.lock().unwrap_or_else(|p| p.into_inner());
                let t = self.tuning;
                e.pick(|i| {
                    self.hosts
                        .get(i)
                        .map_or(0.0, |h| dynamic_weight(h, policy, t))
                })?
            }
            LbPolicy::LeastRequest { choices, .. } => {
                let draws = (0..choices).map(|_| self.random());
                lb::least_request(draws, |i| {
                    let h = &self.hosts[i];
                    (h.stats.rq_active.load(Relaxed), h.weight())
                })
                .unwrap_or(0)
            }
            LbPolicy::RoundRobin | LbPolicy::ClusterProvided => {
                let k = self.rr.fetch_add(1, Relaxed);
                if self.schedule.is_empty() {
                    k % n
                } else {
                    self.schedule[k % self.schedule.len()] as usize
                }
            }
        };
        self.hosts.get(i)
    }
}
