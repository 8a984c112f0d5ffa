//! A cluster's Envoy-named counters and gauges used on the data path, with the
//! `upstream_rq_<code>` counters made on first use.

use super::zone;
use crate::stats::{registry, Counter, Gauge, Scope};
use arc_swap::ArcSwap;

/// Envoy's per-cluster counters and gauges used on the data path.
#[derive(Debug)]
pub struct ClusterStats {
    pub upstream_cx_total: Counter,
    pub upstream_cx_active: Gauge,
    pub upstream_cx_http1_total: Counter,
    pub upstream_cx_http2_total: Counter,
    pub upstream_cx_connect_fail: Counter,
    pub upstream_cx_connect_timeout: Counter,
    pub upstream_cx_destroy: Counter,
    pub upstream_cx_overflow: Counter,
    pub upstream_cx_max_requests: Counter,
    pub upstream_rq_pending_overflow: Counter,
    pub upstream_rq_active_overflow: Counter,
    pub upstream_rq_pending_total: Counter,
    pub upstream_rq_pending_active: Gauge,
    pub upstream_cx_none_healthy: Counter,
    pub upstream_cx_rx_bytes_total: Counter,
    pub upstream_cx_tx_bytes_total: Counter,
    pub upstream_rq_total: Counter,
    pub upstream_rq_active: Gauge,
    pub upstream_rq_completed: Counter,
    pub upstream_rq_timeout: Counter,
    pub upstream_rq_rx_reset: Counter,
    pub upstream_rq_xx: [Counter; 5],
    pub membership_total: Gauge,
    name: String,
    /// `upstream_rq_<code>` counters, created on first use; read lock-free.
    codes: ArcSwap<Vec<(u16, Counter)>>,
    pub membership_healthy: Gauge,
    pub membership_degraded: Gauge,
    pub membership_change: Counter,
    pub lb_healthy_panic: Counter,
    /// `lb_zone_routing_all_directly`, `_sampled`, `_cross_zone`, `lb_zone_no_capacity_left`,
    /// `lb_zone_cluster_too_small`, `lb_local_cluster_not_ok`: only while zone-aware routing is
    /// on (a local cluster is named), which keeps 10,000 clusters lighter.
    pub lb_zone: Option<[Counter; 6]>,
    pub update_success: Counter,
}

impl ClusterStats {
    pub(super) fn new(name: &str) -> Self {
        let r = registry();
        let c = |s: &str| r.counter(Scope::Cluster(name), s);
        let g = |s: &str| r.gauge(Scope::Cluster(name), s);
        ClusterStats {
            upstream_cx_total: c("upstream_cx_total"),
            upstream_cx_active: g("upstream_cx_active"),
            upstream_cx_http1_total: c("upstream_cx_http1_total"),
            upstream_cx_http2_total: c("upstream_cx_http2_total"),
            upstream_cx_connect_fail: c("upstream_cx_connect_fail"),
            upstream_cx_connect_timeout: c("upstream_cx_connect_timeout"),
            upstream_cx_destroy: c("upstream_cx_destroy"),
            upstream_cx_overflow: c("upstream_cx_overflow"),
            upstream_cx_max_requests: c("upstream_cx_max_requests"),
            upstream_rq_pending_overflow: c("upstream_rq_pending_overflow"),
            upstream_rq_active_overflow: c("upstream_rq_active_overflow"),
            upstream_rq_pending_total: c("upstream_rq_pending_total"),
            upstream_rq_pending_active: g("upstream_rq_pending_active"),
            upstream_cx_none_healthy: c("upstream_cx_none_healthy"),
            upstream_cx_rx_bytes_total: c("upstream_cx_rx_bytes_total"),
            upstream_cx_tx_bytes_total: c("upstream_cx_tx_bytes_total"),
            upstream_rq_total: c("upstream_rq_total"),
            upstream_rq_active: g("upstream_rq_active"),
            upstream_rq_completed: c("upstream_rq_completed"),
            upstream_rq_timeout: c("upstream_rq_timeout"),
            upstream_rq_rx_reset: c("upstream_rq_rx_reset"),
            upstream_rq_xx: [
                c("upstream_rq_1xx"),
                c("upstream_rq_2xx"),
                c("upstream_rq_3xx"),
                c("upstream_rq_4xx"),
                c("upstream_rq_5xx"),
            ],
            membership_total: g("membership_total"),
            membership_healthy: g("membership_healthy"),
            membership_degraded: g("membership_degraded"),
            membership_change: c("membership_change"),
            lb_healthy_panic: c("lb_healthy_panic"),
            lb_zone: zone::local().map(|_| {
                [
                    c("lb_zone_routing_all_directly"),
                    c("lb_zone_routing_sampled"),
                    c("lb_zone_routing_cross_zone"),
                    c("lb_zone_no_capacity_left"),
                    c("lb_zone_cluster_too_small"),
                    c("lb_local_cluster_not_ok"),
                ]
            }),
            update_success: c("update_success"),
            name: name.to_string(),
            codes: ArcSwap::from_pointee(Vec::new()),
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
