//! A cluster's Envoy-named counters and gauges used on the data path, with the
//! `upstream_rq_<code>` counters made on first use.

use super::zone;
use crate::stats::histogram::Lazy;
use crate::stats::{registry, Block, Cell, Counter, Kind, Scope};
use arc_swap::ArcSwap;
use std::sync::Arc;

/// Envoy's per-cluster counters and gauges used on the data path: one block of the cluster's
/// stat scope, kept across updates of the cluster.
#[derive(Debug)]
pub struct ClusterStats {
    pub upstream_cx_total: Cell,
    pub upstream_cx_active: Cell,
    pub upstream_cx_http1_total: Cell,
    pub upstream_cx_http2_total: Cell,
    pub upstream_cx_connect_fail: Cell,
    pub upstream_cx_connect_timeout: Cell,
    pub upstream_cx_destroy: Cell,
    pub upstream_cx_overflow: Cell,
    pub upstream_cx_max_requests: Cell,
    pub upstream_rq_pending_overflow: Cell,
    pub upstream_rq_active_overflow: Cell,
    pub upstream_rq_pending_total: Cell,
    pub upstream_rq_pending_active: Cell,
    pub upstream_cx_none_healthy: Cell,
    pub upstream_cx_rx_bytes_total: Cell,
    pub upstream_cx_tx_bytes_total: Cell,
    pub upstream_rq_total: Cell,
    pub upstream_rq_active: Cell,
    pub upstream_rq_completed: Cell,
    pub upstream_rq_timeout: Cell,
    pub upstream_rq_rx_reset: Cell,
    pub membership_total: Cell,
    pub membership_healthy: Cell,
    pub membership_degraded: Cell,
    pub membership_change: Cell,
    pub lb_healthy_panic: Cell,
    pub update_success: Cell,
    pub upstream_rq_retry: Cell,
    pub upstream_rq_retry_success: Cell,
    pub upstream_rq_retry_overflow: Cell,
    pub upstream_rq_retry_limit_exceeded: Cell,
    pub upstream_rq_retry_backoff_exponential: Cell,
    pub upstream_rq_retry_backoff_ratelimited: Cell,
    pub upstream_rq_per_try_timeout: Cell,
    pub upstream_rq_per_try_idle_timeout: Cell,
    pub retry_or_shadow_abandoned: Cell,
    pub upstream_rq_xx: [Cell; 5],
    /// `lb_zone_routing_all_directly`, `_sampled`, `_cross_zone`, `lb_zone_no_capacity_left`,
    /// `lb_zone_cluster_too_small`, `lb_local_cluster_not_ok`: only while zone-aware routing is
    /// on (a local cluster is named), as those are rarely wanted.
    pub lb_zone: Option<[Cell; 6]>,
    pub upstream_cx_connect_ms: Lazy,
    pub upstream_cx_length_ms: Lazy,
    pub upstream_rq_per_cx: Lazy,
    /// Created by the first routed response, as in Envoy.
    pub upstream_rq_time: Lazy,
    pub external_upstream_rq_time: Lazy,
    name: String,
    /// `upstream_rq_<code>` counters, created on first use; read lock-free.
    codes: ArcSwap<Vec<(u16, Counter)>>,
}

const ZONE_STATS: [&str; 6] = [
    "lb_zone_routing_all_directly",
    "lb_zone_routing_sampled",
    "lb_zone_routing_cross_zone",
    "lb_zone_no_capacity_left",
    "lb_zone_cluster_too_small",
    "lb_local_cluster_not_ok",
];

impl ClusterStats {
    /// The cluster's stats: those it had if it is updated in place.
    /// A cluster's stats for unit tests elsewhere.
    #[cfg(test)]
    pub fn for_test(name: &str) -> Arc<Self> {
        Self::new(name)
    }

    pub(super) fn new(name: &str) -> Arc<Self> {
        registry().block(Scope::Cluster(name), || ClusterStats {
            upstream_cx_total: Cell::default(),
            upstream_cx_active: Cell::default(),
            upstream_cx_http1_total: Cell::default(),
            upstream_cx_http2_total: Cell::default(),
            upstream_cx_connect_fail: Cell::default(),
            upstream_cx_connect_timeout: Cell::default(),
            upstream_cx_destroy: Cell::default(),
            upstream_cx_overflow: Cell::default(),
            upstream_cx_max_requests: Cell::default(),
            upstream_rq_pending_overflow: Cell::default(),
            upstream_rq_active_overflow: Cell::default(),
            upstream_rq_pending_total: Cell::default(),
            upstream_rq_pending_active: Cell::default(),
            upstream_cx_none_healthy: Cell::default(),
            upstream_cx_rx_bytes_total: Cell::default(),
            upstream_cx_tx_bytes_total: Cell::default(),
            upstream_rq_total: Cell::default(),
            upstream_rq_active: Cell::default(),
            upstream_rq_completed: Cell::default(),
            upstream_rq_timeout: Cell::default(),
            upstream_rq_rx_reset: Cell::default(),
            membership_total: Cell::default(),
            membership_healthy: Cell::default(),
            membership_degraded: Cell::default(),
            membership_change: Cell::default(),
            lb_healthy_panic: Cell::default(),
            update_success: Cell::default(),
            upstream_rq_retry: Cell::default(),
            upstream_rq_retry_success: Cell::default(),
            upstream_rq_retry_overflow: Cell::default(),
            upstream_rq_retry_limit_exceeded: Cell::default(),
            upstream_rq_retry_backoff_exponential: Cell::default(),
            upstream_rq_retry_backoff_ratelimited: Cell::default(),
            upstream_rq_per_try_timeout: Cell::default(),
            upstream_rq_per_try_idle_timeout: Cell::default(),
            retry_or_shadow_abandoned: Cell::default(),
            upstream_rq_xx: Default::default(),
            lb_zone: zone::local().map(|_| Default::default()),
            upstream_cx_connect_ms: Lazy::default(),
            upstream_cx_length_ms: Lazy::default(),
            upstream_rq_per_cx: Lazy::default(),
            upstream_rq_time: Lazy::default(),
            external_upstream_rq_time: Lazy::default(),
            name: name.to_string(),
            codes: ArcSwap::from_pointee(Vec::new()),
        })
    }
}

impl ClusterStats {
    fn record(&self, h: &Lazy, stat: &str, v: u64) {
        h.record(|| format!("cluster.{}.{stat}", self.name), v);
    }

    pub fn connected(&self, since: std::time::Instant) {
        let ms = since.elapsed().as_millis() as u64;
        self.record(&self.upstream_cx_connect_ms, "upstream_cx_connect_ms", ms);
    }

    /// A connection closed after `since`, having carried `requests` (when known).
    pub fn closed(&self, since: std::time::Instant, requests: Option<u64>) {
        let ms = since.elapsed().as_millis() as u64;
        self.record(&self.upstream_cx_length_ms, "upstream_cx_length_ms", ms);
        if let Some(n) = requests {
            self.record(&self.upstream_rq_per_cx, "upstream_rq_per_cx", n);
        }
    }

    /// A routed response's time (from the request's start to its response headers).
    pub fn rq_time(&self, since: std::time::Instant) {
        let ms = since.elapsed().as_millis() as u64;
        self.record(&self.upstream_rq_time, "upstream_rq_time", ms);
        self.record(
            &self.external_upstream_rq_time,
            "external.upstream_rq_time",
            ms,
        );
    }
}

impl Block for ClusterStats {
    fn histograms(&self, f: &mut dyn FnMut(&str, Option<&crate::stats::histogram::Histogram>)) {
        f("upstream_cx_connect_ms", self.upstream_cx_connect_ms.get());
        f("upstream_cx_length_ms", self.upstream_cx_length_ms.get());
        f("upstream_rq_per_cx", self.upstream_rq_per_cx.get());
        if let Some(h) = self.upstream_rq_time.get() {
            f("upstream_rq_time", Some(h));
        }
        if let Some(h) = self.external_upstream_rq_time.get() {
            f("external.upstream_rq_time", Some(h));
        }
    }

    fn visit(&self, f: &mut dyn FnMut(&str, Kind, u64)) {
        use Kind::{Counter as C, Gauge as G};
        f("upstream_cx_total", C, self.upstream_cx_total.get());
        f("upstream_cx_active", G, self.upstream_cx_active.get());
        f(
            "upstream_cx_http1_total",
            C,
            self.upstream_cx_http1_total.get(),
        );
        f(
            "upstream_cx_http2_total",
            C,
            self.upstream_cx_http2_total.get(),
        );
        f(
            "upstream_cx_connect_fail",
            C,
            self.upstream_cx_connect_fail.get(),
        );
        f(
            "upstream_cx_connect_timeout",
            C,
            self.upstream_cx_connect_timeout.get(),
        );
        f("upstream_cx_destroy", C, self.upstream_cx_destroy.get());
        f("upstream_cx_overflow", C, self.upstream_cx_overflow.get());
        f(
            "upstream_cx_max_requests",
            C,
            self.upstream_cx_max_requests.get(),
        );
        f(
            "upstream_rq_pending_overflow",
            C,
            self.upstream_rq_pending_overflow.get(),
        );
        f(
            "upstream_rq_active_overflow",
            C,
            self.upstream_rq_active_overflow.get(),
        );
        f(
            "upstream_rq_pending_total",
            C,
            self.upstream_rq_pending_total.get(),
        );
        f(
            "upstream_rq_pending_active",
            G,
            self.upstream_rq_pending_active.get(),
        );
        f(
            "upstream_cx_none_healthy",
            C,
            self.upstream_cx_none_healthy.get(),
        );
        f(
            "upstream_cx_rx_bytes_total",
            C,
            self.upstream_cx_rx_bytes_total.get(),
        );
        f(
            "upstream_cx_tx_bytes_total",
            C,
            self.upstream_cx_tx_bytes_total.get(),
        );
        f("upstream_rq_total", C, self.upstream_rq_total.get());
        f("upstream_rq_active", G, self.upstream_rq_active.get());
        f("upstream_rq_completed", C, self.upstream_rq_completed.get());
        f("upstream_rq_timeout", C, self.upstream_rq_timeout.get());
        f("upstream_rq_rx_reset", C, self.upstream_rq_rx_reset.get());
        f("membership_total", G, self.membership_total.get());
        f("membership_healthy", G, self.membership_healthy.get());
        f("membership_degraded", G, self.membership_degraded.get());
        f("membership_change", C, self.membership_change.get());
        f("lb_healthy_panic", C, self.lb_healthy_panic.get());
        f("update_success", C, self.update_success.get());
        f("upstream_rq_retry", C, self.upstream_rq_retry.get());
        f(
            "upstream_rq_retry_success",
            C,
            self.upstream_rq_retry_success.get(),
        );
        f(
            "upstream_rq_retry_overflow",
            C,
            self.upstream_rq_retry_overflow.get(),
        );
        f(
            "upstream_rq_retry_limit_exceeded",
            C,
            self.upstream_rq_retry_limit_exceeded.get(),
        );
        f(
            "upstream_rq_retry_backoff_exponential",
            C,
            self.upstream_rq_retry_backoff_exponential.get(),
        );
        f(
            "upstream_rq_retry_backoff_ratelimited",
            C,
            self.upstream_rq_retry_backoff_ratelimited.get(),
        );
        f(
            "upstream_rq_per_try_timeout",
            C,
            self.upstream_rq_per_try_timeout.get(),
        );
        f(
            "upstream_rq_per_try_idle_timeout",
            C,
            self.upstream_rq_per_try_idle_timeout.get(),
        );
        f(
            "retry_or_shadow_abandoned",
            C,
            self.retry_or_shadow_abandoned.get(),
        );
        for (i, c) in self.upstream_rq_xx.iter().enumerate() {
            f(
                [
                    "upstream_rq_1xx",
                    "upstream_rq_2xx",
                    "upstream_rq_3xx",
                    "upstream_rq_4xx",
                    "upstream_rq_5xx",
                ][i],
                C,
                c.get(),
            );
        }
        for (n, c) in ZONE_STATS.iter().zip(self.lb_zone.iter().flatten()) {
            f(n, C, c.get());
        }
    }
}

impl ClusterStats {
    /// Charges a response code: `upstream_rq_<class>xx` and `upstream_rq_<code>`.
    pub fn charge(&self, code: u16) {
        let class = usize::from(code / 100);
        if (1..=5).contains(&class) {
            self.upstream_rq_xx[class - 1].inc();
        }
        if let Some((_, c)) = self.codes.load().iter().find(|(k, _)| *k == code) {
            c.inc();
            return;
        }
        let c = registry().counter(Scope::Cluster(&self.name), &format!("upstream_rq_{code}"));
        c.inc();
        self.codes.rcu(|v| {
            let mut v = (**v).clone();
            if !v.iter().any(|(k, _)| *k == code) {
                v.push((code, c.clone()));
            }
            v
        });
    }
}
