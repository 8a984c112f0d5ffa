//! Circuit breakers at run time: a cluster's open connections, pending requests and active
//! requests counted against its thresholds, with Envoy's `circuit_breakers.*` gauges, and the
//! wake-up of requests waiting for a connection.

use crate::config::cluster::limits::{CircuitBreakerCfg, Thresholds};
use crate::stats::{registry, Block, Cell, Kind, Scope};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::Notify;

/// The resources of one priority, in the order of [`PrioStats::cells`].
#[derive(Debug, Clone, Copy)]
pub enum Which {
    Connections = 0,
    Pending = 1,
    Requests = 2,
    Retries = 3,
    Pools = 4,
}

/// One priority's `circuit_breakers.<priority>.*` gauges.
#[derive(Debug, Default)]
struct PrioStats {
    track_remaining: AtomicBool,
    /// `<resource>_open` and `remaining_<resource>` per [`Which`].
    open: [Cell; 5],
    remaining: [Cell; 5],
}

const OPEN: [&str; 5] = [
    "cx_open",
    "rq_pending_open",
    "rq_open",
    "rq_retry_open",
    "cx_pool_open",
];
const REMAINING: [&str; 5] = [
    "remaining_cx",
    "remaining_pending",
    "remaining_rq",
    "remaining_retries",
    "remaining_cx_pools",
];

/// A cluster's circuit breaker gauges: one block of its stat scope, kept across updates.
#[derive(Debug, Default)]
pub struct BreakerStats {
    prio: [PrioStats; 2],
}

impl Block for BreakerStats {
    fn visit(&self, f: &mut dyn FnMut(&str, Kind, u64)) {
        for (p, name) in self.prio.iter().zip(["default", "high"]) {
            for (c, n) in p.open.iter().zip(OPEN) {
                f(
                    &format!("circuit_breakers.{name}.{n}"),
                    Kind::Gauge,
                    c.get(),
                );
            }
            if p.track_remaining.load(Ordering::Relaxed) {
                for (c, n) in p.remaining.iter().zip(REMAINING) {
                    f(
                        &format!("circuit_breakers.{name}.{n}"),
                        Kind::Gauge,
                        c.get(),
                    );
                }
            }
        }
    }
}

/// One counted resource of the DEFAULT priority: `<resource>_open` is 1 while the count is
/// at its limit.
#[derive(Debug)]
pub struct Resource {
    max: u64,
    count: AtomicU64,
    which: Which,
    stats: Arc<BreakerStats>,
}

impl Resource {
    fn new(max: u64, which: Which, stats: &Arc<BreakerStats>) -> Resource {
        let r = Resource {
            max,
            count: AtomicU64::new(0),
            which,
            stats: stats.clone(),
        };
        r.publish(0);
        r
    }

    fn publish(&self, count: u64) {
        let p = &self.stats.prio[0];
        p.open[self.which as usize].set(u64::from(count >= self.max));
        p.remaining[self.which as usize].set(self.max.saturating_sub(count));
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
    pub retries: Resource,
    /// Wakes requests waiting for a connection: a request finished or a connection closed.
    notify: Notify,
    waiters: AtomicUsize,
}

impl Limits {
    pub fn new(cluster: &str, cfg: CircuitBreakerCfg) -> Arc<Limits> {
        let stats = registry().block(Scope::Cluster(cluster), BreakerStats::default);
        let (d, h) = (&cfg.default, &cfg.high);
        let max = |t: &Thresholds| {
            [
                t.max_connections,
                t.max_pending_requests,
                t.max_requests,
                t.max_retries,
                u64::MAX,
            ]
        };
        for (p, t) in stats.prio.iter().zip([d, h]) {
            p.track_remaining
                .store(t.track_remaining, Ordering::Relaxed);
        }
        // HIGH is never used: its gauges show the thresholds with nothing taken. Pools are
        // not limited.
        let high = &stats.prio[1];
        for (i, m) in max(h).into_iter().enumerate() {
            high.open[i].set(u64::from(m == 0));
            high.remaining[i].set(m);
        }
        stats.prio[0].open[Which::Pools as usize].set(0);
        stats.prio[0].remaining[Which::Pools as usize].set(u64::MAX);
        Arc::new(Limits {
            connections: Resource::new(d.max_connections, Which::Connections, &stats),
            pending: Resource::new(d.max_pending_requests, Which::Pending, &stats),
            requests: Resource::new(d.max_requests, Which::Requests, &stats),
            retries: Resource::new(d.max_retries, Which::Retries, &stats),
            cfg,
            notify: Notify::new(),
            waiters: AtomicUsize::new(0),
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
