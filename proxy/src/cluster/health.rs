//! Active health checking: one session per host checks it (HTTP, TCP or gRPC) every interval
//! and moves it between healthy and `failed_active_hc` as Envoy does: hosts start failed, the
//! first success ever makes a host healthy, a non-retriable HTTP failure fails it at once, and
//! other failures count towards `unhealthy_threshold`.

use super::host::{flag, Host};
use super::ClusterRt;
use crate::config::cluster::health::HealthCheckCfg;
use crate::stats::{registry, Counter, Gauge, Scope};
use std::sync::{Arc, Weak};
use std::time::Duration;

#[derive(Debug)]
pub struct Checker {
    pub cfg: HealthCheckCfg,
    attempt: Counter,
    success: Counter,
    failure: Counter,
    network_failure: Counter,
    pub healthy: Gauge,
    degraded: Gauge,
    /// Wakes the supervisor: the host set changed.
    changed: Arc<tokio::sync::Notify>,
}

/// What one check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    Healthy,
    Degraded,
    /// An answer that fails the check at once.
    Failed,
    /// An answer that counts towards `unhealthy_threshold` (a retriable status).
    Retriable,
    /// Connect failure, reset or close.
    Network,
    Timeout,
}

impl Checker {
    pub fn new(cluster: &str, cfg: HealthCheckCfg) -> Checker {
        let r = registry();
        let c = |s: &str| r.counter(Scope::Cluster(cluster), &format!("health_check.{s}"));
        let g = |s: &str| r.gauge(Scope::Cluster(cluster), &format!("health_check.{s}"));
        c("passive_failure");
        c("verify_cluster");
        Checker {
            cfg,
            attempt: c("attempt"),
            success: c("success"),
            failure: c("failure"),
            network_failure: c("network_failure"),
            healthy: g("healthy"),
            degraded: g("degraded"),
            changed: Arc::new(tokio::sync::Notify::new()),
        }
    }

    /// The host set changed: new hosts need sessions.
    pub fn hosts_changed(&self) {
        self.changed.notify_one();
    }

    /// Starts a session for every host, now and as hosts are added.
    pub fn spawn(cluster: &Arc<ClusterRt>) {
        if cluster.health.is_none() {
            return;
        }
        let weak = Arc::downgrade(cluster);
        tokio::spawn(async move {
            loop {
                let Some(c) = weak.upgrade() else { return };
                let Some(hc) = &c.health else { return };
                // A change while this round runs leaves a permit: no wake-up is lost.
                let changed = hc.changed.clone();
                for h in c.hosts().iter() {
                    if !h
                        .hc_session
                        .swap(true, std::sync::atomic::Ordering::Relaxed)
                    {
                        tokio::spawn(session(weak.clone(), h.clone()));
                    }
                }
                drop(c);
                changed.notified().await;
            }
        });
    }

    fn publish(&self, cluster: &ClusterRt) {
        let hosts = cluster.hosts();
        let count =
            |f: u32, set: bool| hosts.iter().filter(|h| (h.flags() & f != 0) == set).count() as u64;
        self.healthy.set(count(flag::FAILED_ACTIVE_HC, false));
        self.degraded.set(count(flag::DEGRADED_ACTIVE_HC, true));
    }
}

async fn session(cluster: Weak<ClusterRt>, host: Arc<Host>) {
    let jitter = match cluster
        .upgrade()
        .and_then(|c| c.health.as_ref().map(|h| h.cfg.initial_jitter))
    {
        Some(j) if !j.is_zero() => fastrand::u64(0..j.as_millis() as u64),
        _ => 0,
    };
    tokio::time::sleep(Duration::from_millis(jitter)).await;
    let mut conn: Option<super::health_probe::Conn> = None;
    let (mut first, mut ok_streak, mut fail_streak) = (true, 0u32, 0u32);
    loop {
        let Some(c) = cluster.upgrade() else { return };
        if !c.hosts().iter().any(|h| Arc::ptr_eq(h, &host)) {
            return;
        }
        let Some(hc) = &c.health else { return };
        let cfg = &hc.cfg;
        hc.attempt.inc();
        let verdict = match tokio::time::timeout(
            cfg.timeout,
            super::health_probe::check(&c, &host, &mut conn),
        )
        .await
        {
            Ok(v) => v,
            Err(_) => Verdict::Timeout,
        };
        if !cfg.reuse_connection || matches!(verdict, Verdict::Network | Verdict::Timeout) {
            conn = None;
        }
        let failed = host.flags() & flag::FAILED_ACTIVE_HC != 0;
        let mut changed = host.set_flag(flag::PENDING_ACTIVE_HC, false);
        match verdict {
            Verdict::Healthy | Verdict::Degraded => {
                hc.success.inc();
                fail_streak = 0;
                if failed {
                    ok_streak += 1;
                    if first || ok_streak >= cfg.healthy_threshold {
                        host.set_flag(flag::FAILED_ACTIVE_HC, false);
                        host.set_flag(flag::ACTIVE_HC_TIMEOUT, false);
                        if !first {
                            host.restart_slow_start();
                        }
                        ok_streak = 0;
                        changed = true;
                    }
                } else if let Some(d) = &c.outlier {
                    changed |= d.health_check_passed(&host);
                }
                changed |= host.set_flag(flag::DEGRADED_ACTIVE_HC, verdict == Verdict::Degraded);
            }
            _ => {
                hc.failure.inc();
                if matches!(verdict, Verdict::Network | Verdict::Timeout) {
                    hc.network_failure.inc();
                }
                ok_streak = 0;
                if failed {
                    host.set_flag(flag::ACTIVE_HC_TIMEOUT, verdict == Verdict::Timeout);
                } else {
                    fail_streak += 1;
                    if verdict == Verdict::Failed || fail_streak >= cfg.unhealthy_threshold {
                        host.set_flag(flag::FAILED_ACTIVE_HC, true);
                        host.pool.drain();
                        fail_streak = 0;
                        changed = true;
                    }
                }
            }
        }
        host.hc_checked
            .store(true, std::sync::atomic::Ordering::Relaxed);
        if changed {
            c.refresh();
        }
        hc.publish(&c);
        let now_failed = host.flags() & flag::FAILED_ACTIVE_HC != 0;
        let pending = if now_failed {
            ok_streak > 0
        } else {
            fail_streak > 0
        };
        let next = next_interval(
            cfg,
            now_failed,
            pending,
            c.stats.upstream_cx_total.get() > 0,
        );
        first = false;
        drop(c);
        tokio::time::sleep(next).await;
    }
}

/// The wait before the next check, with jitter.
fn next_interval(cfg: &HealthCheckCfg, unhealthy: bool, pending: bool, traffic: bool) -> Duration {
    let base = match (traffic, unhealthy, pending) {
        (true, true, true) => cfg.unhealthy_edge_interval,
        (true, true, false) => cfg.unhealthy_interval,
        (true, false, true) => cfg.healthy_edge_interval,
        (true, false, false) => cfg.interval,
        (false, false, false) => cfg.no_traffic_healthy_interval,
        (false, _, _) => cfg.no_traffic_interval,
    };
    let mut ms = base.as_millis() as u64;
    let pct = u64::from(cfg.interval_jitter_percent) * ms / 100;
    if pct > 0 {
        ms += fastrand::u64(0..pct);
    }
    let j = cfg.interval_jitter.as_millis() as u64;
    if j > 0 {
        ms += fastrand::u64(0..j);
    }
    Duration::from_millis(ms.max(1))
}
