//! Outlier detection: each upstream result is charged to its host; consecutive errors eject a
//! host at once, success rate and failure percentage at each `interval` sweep, which also
//! brings ejected hosts back after `base_ejection_time` × their ejection count.

use super::host::{flag, Host};
use super::outlier_log::{self, Detail};
use super::outlier_rules::{ejection_allowed, success_rate_threshold, Kind};
use super::ClusterRt;
use crate::config::cluster::outlier::OutlierCfg;
use crate::stats::{registry, Counter, Gauge, Scope};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;

/// What an upstream request ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The upstream answered with this status.
    Status(u16),
    /// The connection could not be made (or timed out connecting).
    ConnectFailed,
    /// No response in time.
    Timeout,
    /// The connection was reset before a response.
    Reset,
}

/// One host's counts since the last sweep, and its ejection state.
#[derive(Debug, Default)]
pub struct HostRecord {
    consecutive_5xx: AtomicU32,
    consecutive_gateway: AtomicU32,
    consecutive_local: AtomicU32,
    external_total: AtomicU64,
    external_failed: AtomicU64,
    local_total: AtomicU64,
    local_failed: AtomicU64,
    /// Milliseconds since the detector started at which the host was ejected, 0 if it is not.
    ejected_at: AtomicU64,
    /// When it last came back (ms since the detector started).
    unejected_at: AtomicU64,
    /// The ejection time multiplier: grows with each ejection, decays by one per interval in
    /// service.
    backoff: AtomicU32,
    jitter_ms: AtomicU64,
    pub num_ejections: AtomicU32,
    /// What ejected it last (a [`Kind`]), for the event log.
    last_kind: std::sync::atomic::AtomicU8,
    /// The success rates of the last sweep, in hundredths of a percent (-1 when not computed).
    success_rate: AtomicU64,
    local_success_rate: AtomicU64,
}

impl HostRecord {
    pub fn ejected(&self) -> bool {
        self.ejected_at.load(Relaxed) != 0
    }

    /// The last sweep's success rates (external, local origin) as `/clusters` shows them.
    pub fn success_rates(&self) -> (f64, f64) {
        let r = |a: &AtomicU64| match a.load(Relaxed) {
            0 => -1.0,
            v => (v - 1) as f64 / 100.0,
        };
        (r(&self.success_rate), r(&self.local_success_rate))
    }
}

#[derive(Debug)]
struct Stats {
    active: Gauge,
    overflow: Counter,
    enforced_total: Counter,
    total: Counter,
    detected: Vec<Counter>,
    enforced: Vec<Counter>,
    /// The deprecated `ejections_consecutive_5xx` / `ejections_success_rate`.
    legacy_5xx: Counter,
    legacy_success_rate: Counter,
}

#[derive(Debug)]
pub struct Detector {
    pub cfg: OutlierCfg,
    stats: Stats,
    epoch: Instant,
    /// The last sweep's success-rate average and ejection threshold, in hundredths (+1; 0:
    /// not computed), external then local origin.
    pub sweep: [AtomicU64; 4],
    /// The cluster's name, in the event log.
    name: String,
}

impl Detector {
    pub fn new(cluster: &str, name: &str, cfg: OutlierCfg) -> Detector {
        let r = registry();
        let c = |s: &str| r.counter(Scope::Cluster(cluster), &format!("outlier_detection.{s}"));
        let stats = Stats {
            active: r.gauge(
                Scope::Cluster(cluster),
                "outlier_detection.ejections_active",
            ),
            overflow: c("ejections_overflow"),
            enforced_total: c("ejections_enforced_total"),
            total: c("ejections_total"),
            detected: Kind::ALL
                .iter()
                .map(|k| c(&format!("ejections_detected_{}", k.name())))
                .collect(),
            enforced: Kind::ALL
                .iter()
                .map(|k| c(&format!("ejections_enforced_{}", k.name())))
                .collect(),
            legacy_5xx: c("ejections_consecutive_5xx"),
            legacy_success_rate: c("ejections_success_rate"),
        };
        c("ejections_detected_degradation");
        Detector {
            name: name.to_string(),
            cfg,
            stats,
            epoch: Instant::now(),
            sweep: Default::default(),
        }
    }

    fn now_ms(&self) -> u64 {
        (self.epoch.elapsed().as_millis() as u64).max(1)
    }

    /// Charges one result to `host`; a consecutive-error threshold reached ejects it.
    pub fn record(&self, cluster: &ClusterRt, host: &Host, outcome: Outcome) {
        let r = &host.outlier;
        let c = &self.cfg;
        let local = !matches!(outcome, Outcome::Status(_));
        if c.split_external_local_origin_errors && local {
            r.local_total.fetch_add(1, Relaxed);
            r.local_failed.fetch_add(1, Relaxed);
            let n = r.consecutive_local.fetch_add(1, Relaxed) + 1;
            if n == c.consecutive_local_origin_failure {
                self.detected(cluster, host, Kind::ConsecutiveLocal, Detail::Consecutive);
            }
            return;
        }
        // Without the split, local-origin failures count as the upstream answering 503 (504
        // for a timeout).
        let code = match outcome {
            Outcome::Status(s) => s,
            Outcome::Timeout => 504,
            Outcome::ConnectFailed | Outcome::Reset => 503,
        };
        if c.split_external_local_origin_errors {
            // An answer means the connection worked.
            r.local_total.fetch_add(1, Relaxed);
            r.consecutive_local.store(0, Relaxed);
        }
        r.external_total.fetch_add(1, Relaxed);
        if code >= 500 {
            r.external_failed.fetch_add(1, Relaxed);
            if matches!(code, 502..=504) {
                let n = r.consecutive_gateway.fetch_add(1, Relaxed) + 1;
                if n == c.consecutive_gateway_failure {
                    self.detected(cluster, host, Kind::ConsecutiveGateway, Detail::Consecutive);
                }
            } else {
                r.consecutive_gateway.store(0, Relaxed);
            }
            let n = r.consecutive_5xx.fetch_add(1, Relaxed) + 1;
            if n == c.consecutive_5xx {
                self.detected(cluster, host, Kind::Consecutive5xx, Detail::Consecutive);
            }
        } else {
            r.consecutive_5xx.store(0, Relaxed);
            r.consecutive_gateway.store(0, Relaxed);
        }
    }

    /// A detected outlier: ejected if the ejection limit allows and the enforcement roll
    /// says so.
    fn detected(&self, cluster: &ClusterRt, host: &Host, kind: Kind, detail: Detail) {
        let r = &host.outlier;
        if r.ejected() {
            return;
        }
        self.stats.detected[kind as usize].inc();
        match kind {
            Kind::Consecutive5xx => {
                self.stats.legacy_5xx.inc();
                r.consecutive_5xx.store(0, Relaxed);
            }
            Kind::ConsecutiveGateway => r.consecutive_gateway.store(0, Relaxed),
            Kind::ConsecutiveLocal => r.consecutive_local.store(0, Relaxed),
            Kind::SuccessRate => self.stats.legacy_success_rate.inc(),
            _ => {}
        }
        let hosts = cluster.hosts();
        let ejected = hosts.iter().filter(|h| h.outlier.ejected()).count();
        let allowed = ejection_allowed(
            ejected,
            hosts.len(),
            self.cfg.max_ejection_percent,
            self.cfg.always_eject_one_host,
        );
        if !allowed {
            self.stats.overflow.inc();
            return;
        }
        if matches!(kind, Kind::Consecutive5xx | Kind::SuccessRate) {
            self.stats.total.inc();
        }
        let enforcing = kind.enforcing(&self.cfg);
        let enforced = enforcing != 0 && fastrand::u32(0..100) < enforcing;
        if outlier_log::enabled() {
            let back = r.unejected_at.load(Relaxed);
            outlier_log::log(&outlier_log::Event {
                kind,
                cluster: &self.name,
                host: host.addr,
                eject: true,
                num_ejections: r.num_ejections.load(Relaxed) + u32::from(enforced),
                enforced,
                since_last: (back != 0).then(|| (self.now_ms() - back) / 1000),
                detail: Some(detail),
            });
        }
        if !enforced {
            return;
        }
        r.last_kind.store(kind as u8, Relaxed);
        let c = &self.cfg;
        r.ejected_at.store(self.now_ms(), Relaxed);
        r.num_ejections.fetch_add(1, Relaxed);
        let jitter = c.max_ejection_time_jitter.as_millis() as u64;
        r.jitter_ms.store(fastrand::u64(0..=jitter), Relaxed);
        let (base, max) = (c.base_ejection_time, c.max_ejection_time);
        let b = r.backoff.load(Relaxed);
        if base * b < max + base {
            r.backoff.store(b + 1, Relaxed);
        }
        self.stats.active.inc();
        self.stats.enforced_total.inc();
        self.stats.enforced[kind as usize].inc();
        tracing::debug!(cluster = %cluster.cfg.name, host = %host.addr, kind = kind.name(), "outlier ejected");
        host.set_flag(flag::FAILED_OUTLIER_CHECK, true);
        host.pool.drain();
        cluster.refresh();
    }

    /// Brings `host` back into service (its consecutive counts start over).
    fn uneject(&self, host: &Host) {
        let r = &host.outlier;
        let at = r.ejected_at.load(Relaxed);
        if outlier_log::enabled() {
            outlier_log::log(&outlier_log::Event {
                kind: Kind::ALL[usize::from(r.last_kind.load(Relaxed)) % Kind::ALL.len()],
                cluster: &self.name,
                host: host.addr,
                eject: false,
                num_ejections: r.num_ejections.load(Relaxed),
                enforced: false,
                since_last: (at != 0).then(|| (self.now_ms().saturating_sub(at)) / 1000),
                detail: None,
            });
        }
        r.ejected_at.store(0, Relaxed);
        r.unejected_at.store(self.now_ms(), Relaxed);
        r.consecutive_5xx.store(0, Relaxed);
        r.consecutive_gateway.store(0, Relaxed);
        r.consecutive_local.store(0, Relaxed);
        self.stats.active.dec();
        host.set_flag(flag::FAILED_OUTLIER_CHECK, false);
    }

    /// A successful active health check brings an ejected host back (unless disabled).
    pub fn health_check_passed(&self, host: &Host) -> bool {
        if self.cfg.successful_active_health_check_uneject_host && host.outlier.ejected() {
            self.uneject(host);
            return true;
        }
        false
    }

    /// A host leaves the cluster: an ejection it carried is no longer active.
    pub fn forget(&self, host: &Host) {
        if host.outlier.ejected_at.swap(0, Relaxed) != 0 {
            self.stats.active.dec();
        }
    }

    /// One `interval` sweep: un-ejections that are due, ejection counts decaying for hosts
    /// that stayed in service, then success rate and failure percentage over the interval.
    pub fn sweep(&self, cluster: &ClusterRt) {
        let hosts = cluster.hosts();
        let now = self.now_ms();
        let c = &self.cfg;
        let base = c.base_ejection_time.as_millis() as u64;
        let max = (c.max_ejection_time.as_millis() as u64).max(base);
        for h in hosts.iter() {
            let r = &h.outlier;
            let at = r.ejected_at.load(Relaxed);
            let backoff = u64::from(r.backoff.load(Relaxed));
            if at != 0 && (base * backoff).min(max) + r.jitter_ms.load(Relaxed) <= now - at {
                self.uneject(h);
            }
        }
        let take = |h: &Host, local: bool| {
            let r = &h.outlier;
            if local {
                (
                    r.local_total.swap(0, Relaxed),
                    r.local_failed.swap(0, Relaxed),
                )
            } else {
                (
                    r.external_total.swap(0, Relaxed),
                    r.external_failed.swap(0, Relaxed),
                )
            }
        };
        // Ejected hosts take no part in the rates.
        let counts = |local: bool| -> Vec<(u64, u64)> {
            hosts
                .iter()
                .map(|h| {
                    let t = take(h, local);
                    if h.outlier.ejected() {
                        (0, 0)
                    } else {
                        t
                    }
                })
                .collect()
        };
        let (external, local) = (counts(false), counts(true));
        self.rate_checks(cluster, &hosts, &external, false);
        if c.split_external_local_origin_errors {
            self.rate_checks(cluster, &hosts, &local, true);
        }
        // Backoff decays for hosts back in service for at least an interval.
        let interval = c.interval.as_millis() as u64;
        for h in hosts.iter() {
            let r = &h.outlier;
            let back = r.unejected_at.load(Relaxed);
            if !r.ejected() && back != 0 && now - back >= interval {
                let _ = r
                    .backoff
                    .fetch_update(Relaxed, Relaxed, |b| b.checked_sub(1));
            }
        }
        cluster.refresh();
    }

    fn rate_checks(
        &self,
        cluster: &ClusterRt,
        hosts: &[Arc<Host>],
        counts: &[(u64, u64)],
        local: bool,
    ) {
        let c = &self.cfg;
        let rates: Vec<Option<f64>> = counts
            .iter()
            .map(|&(total, failed)| {
                (total >= u64::from(c.success_rate_request_volume) && total > 0)
                    .then(|| 100.0 * (total - failed) as f64 / total as f64)
            })
            .collect();
        let (kind_sr, kind_fp, slot) = if local {
            (Kind::LocalSuccessRate, Kind::LocalFailurePercentage, 2)
        } else {
            (Kind::SuccessRate, Kind::FailurePercentage, 0)
        };
        for (h, r) in hosts.iter().zip(&rates) {
            let store = if local {
                &h.outlier.local_success_rate
            } else {
                &h.outlier.success_rate
            };
            store.store(r.map_or(0, |v| (v * 100.0) as u64 + 1), Relaxed);
        }
        match success_rate_threshold(
            &rates,
            c.success_rate_minimum_hosts,
            c.success_rate_stdev_factor,
        ) {
            Some((mean, threshold)) => {
                self.sweep[slot].store((mean * 100.0) as u64 + 1, Relaxed);
                self.sweep[slot + 1].store((threshold.max(0.0) * 100.0) as u64 + 1, Relaxed);
                for (h, r) in hosts.iter().zip(&rates) {
                    if r.is_some_and(|v| v < threshold) {
                        let detail = Detail::SuccessRate {
                            host: r.unwrap_or(0.0) as u32,
                            average: mean as u32,
                            threshold: threshold.max(0.0) as u32,
                        };
                        self.detected(cluster, h, kind_sr, detail);
                    }
                }
            }
            None => {
                self.sweep[slot].store(0, Relaxed);
                self.sweep[slot + 1].store(0, Relaxed);
            }
        }
        let eligible: Vec<Option<f64>> = counts
            .iter()
            .map(|&(total, failed)| {
                (total >= u64::from(c.failure_percentage_request_volume) && total > 0)
                    .then(|| 100.0 * failed as f64 / total as f64)
            })
            .collect();
        if eligible.iter().flatten().count() >= c.failure_percentage_minimum_hosts as usize {
            for (h, f) in hosts.iter().zip(&eligible) {
                if f.is_some_and(|f| f >= f64::from(c.failure_percentage_threshold)) {
                    let detail = Detail::FailurePercentage {
                        host: (100.0 - f.unwrap_or(0.0)) as u32,
                    };
                    self.detected(cluster, h, kind_fp, detail);
                }
            }
        }
    }

    pub fn spawn(cluster: &Arc<ClusterRt>) {
        let Some(d) = &cluster.outlier else { return };
        let interval = d.cfg.interval;
        let weak = Arc::downgrade(cluster);
        crate::util::every(interval, move || {
            let Some(c) = weak.upgrade() else {
                return false;
            };
            if let Some(d) = &c.outlier {
                d.sweep(&c);
            }
            true
        });
    }
}
