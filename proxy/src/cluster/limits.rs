//! Circuit breakers at run time: a cluster's open connections, pending requests and active
//! requests counted against its thresholds, with Envoy's `circuit_breakers.*` gauges, and the
//! wake-up of requests waiting for a connection.

use crate::config::cluster::limits::{CircuitBreakerCfg, Thresholds};
use crate::stats::{registry, Gauge, Scope};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::Notify;

/// One counted resource: `<gauge>_open` is 1 while the count is at its limit.
#[derive(Debug)]
pub struct Resource {
    max: u64,
    count: AtomicU64,
    open: Gauge,
    remaining: Option<Gauge>,
}

impl Resource {
    fn new(max: u64, open: Gauge, remaining: Option<Gauge>) -> Resource {
        let r = Resource {
            max,
            count: AtomicU64::new(0),
            open,
            remaining,
        };
        r.publish(0);
        r
    }

    fn publish(&self, count: u64) {
        self.open.set(u64::from(count >= self.max));
        if let Some(g) = &self.remaining {
            g.set(self.max.saturating_sub(count));
        }
    }

    pub fn can_create(&self) -> bool {
        self.count.load(Ordering::Relaxed) < self.max
    }

    /// Takes one unit if the limit allows.
    pub fn try_acquire(&self) -> bool {
        let taken = self
            .count
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |c| {
                (c < self.max).then_some(c + 1)
            });
        match taken {
            Ok(c) => {
                self.publish(c + 1);
                true
            }
            Err(_) => false,
        }
    }

    /// Takes one unit whatever the limit (a pool without any connection always opens one).
    pub fn force_acquire(&self) {
        let c = self.count.fetch_add(1, Ordering::AcqRel) + 1;
        self.publish(c);
    }

    pub fn release(&self) {
        let c = self.count.fetch_sub(1, Ordering::AcqRel).saturating_sub(1);
        self.publish(c);
    }
}

/// A cluster's DEFAULT-priority resources (routes of HIGH priority are not supported, so the
/// HIGH gauges only show the configured thresholds).
#[derive(Debug)]
pub struct Limits {
    pub cfg: CircuitBreakerCfg,
    pub connections: Resource,
    pub pending: Resource,
    pub requests: Resource,
    /// Wakes requests waiting for a connection: a request finished or a connection closed.
    notify: Notify,
    waiters: AtomicUsize,
    _high: Vec<Gauge>,
}

impl Limits {
    pub fn new(cluster: &str, cfg: CircuitBreakerCfg) -> Arc<Limits> {
        let r = registry();
        let g = |s: &str| r.gauge(Scope::Cluster(cluster), s);
        let res = |t: &Thresholds, prio: &str, open: &str, remaining: &str, max: u64| {
            Resource::new(
                max,
                g(&format!("circuit_breakers.{prio}.{open}")),
                t.track_remaining
                    .then(|| g(&format!("circuit_breakers.{prio}.{remaining}"))),
            )
        };
        let mut high = Vec::new();
        for prio in ["default", "high"] {
            let t = if prio == "default" {
                &cfg.default
            } else {
                &cfg.high
            };
            // Resources Ferry does not count (pools, retries) still show their gauges.
            high.push(g(&format!("circuit_breakers.{prio}.cx_pool_open")));
            high.push(g(&format!("circuit_breakers.{prio}.rq_retry_open")));
            if t.track_remaining {
                let pools = g(&format!("circuit_breakers.{prio}.remaining_cx_pools"));
                pools.set(u64::MAX);
                let retries = g(&format!("circuit_breakers.{prio}.remaining_retries"));
                retries.set(t.max_retries);
                high.extend([pools, retries]);
            }
            if prio == "high" {
                for (open, rem, max) in [
                    ("cx_open", "remaining_cx", t.max_connections),
                    (
                        "rq_pending_open",
                        "remaining_pending",
                        t.max_pending_requests,
                    ),
                    ("rq_open", "remaining_rq", t.max_requests),
                ] {
                    let o = g(&format!("circuit_breakers.high.{open}"));
                    o.set(u64::from(max == 0));
                    high.push(o);
                    if t.track_remaining {
                        let r = g(&format!("circuit_breakers.high.{rem}"));
                        r.set(max);
                        high.push(r);
                    }
                }
            }
        }
        let d = &cfg.default;
        Arc::new(Limits {
            connections: res(d, "default", "cx_open", "remaining_cx", d.max_connections),
            pending: res(
                d,
                "default",
                "rq_pending_open",
                "remaining_pending",
                d.max_pending_requests,
            ),
            requests: res(d, "default", "rq_open", "remaining_rq", d.max_requests),
            cfg,
            notify: Notify::new(),
            waiters: AtomicUsize::new(0),
            _high: high,
        })
    }

    /// Something a waiting request may use was freed.
    pub fn wake(&self) {
        if self.waiters.load(Ordering::Acquire) > 0 {
            self.notify.notify_waiters();
        }
    }

    /// Waits for [`Limits::wake`], the wait registered before `recheck` looks again so that a
    /// wake in between is not missed. Returns `recheck`'s answer once it has one.
    pub async fn wait_until<T>(&self, mut recheck: impl FnMut() -> Option<T>) -> T {
        self.waiters.fetch_add(1, Ordering::AcqRel);
        let _w = Waiting(&self.waiters);
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(v) = recheck() {
                return v;
            }
            notified.await;
        }
    }
}

struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}
