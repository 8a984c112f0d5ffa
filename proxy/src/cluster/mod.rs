//! Cluster runtime: the hosts a cluster currently has (static or resolved by DNS), round-robin
//! picking, per-host stats, and the upstream connection pools.

pub mod connect;
mod dns;
pub mod hash;
mod health;
pub mod host;
pub mod lb;
pub mod limits;
mod original_dst;
pub mod outlier;
mod picker;
pub mod pool;
mod priority;
pub mod zone;

pub use host::{Host, HostStats};

pub use original_dst::LbContext;

use crate::config::cluster::{Cluster, Discovery, EndpointCfg, LbPolicy, UpstreamProtocol};
use crate::stats::{registry, Counter, Gauge, Scope};
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::sync::Arc;

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
    fn new(name: &str) -> Self {
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

#[derive(Debug)]
pub struct ClusterRt {
    pub cfg: Cluster,
    hosts: ArcSwap<Vec<Arc<Host>>>,
    picker: ArcSwap<picker::Picker>,
    /// The load assignment's `overprovisioning_factor` (percent).
    overprovisioning: AtomicU32,
    pub stats: Arc<ClusterStats>,
    pub outlier: Option<outlier::Detector>,
    pub health: Option<health::Checker>,
    /// Circuit breakers.
    pub limits: Arc<limits::Limits>,
    /// ORIGINAL_DST: hosts by address, read lock-free.
    dst_hosts: ArcSwap<HashMap<SocketAddr, Arc<Host>>>,
    /// The TLS transport socket of upstream connections.
    pub tls: Option<Arc<crate::tls::client::ClientTls>>,
    /// RING_HASH: `ring_hash_lb.{size,min_hashes_per_host,max_hashes_per_host}`; MAGLEV:
    /// `maglev_lb.{min,max}_entries_per_host` (no size).
    table_gauges: Option<[Option<Gauge>; 3]>,
}

impl ClusterRt {
    /// Builds the cluster; DNS clusters start empty until [`ClusterRt::start_dns`] resolves them.
    pub fn new(cfg: Cluster) -> Arc<ClusterRt> {
        let stats = Arc::new(ClusterStats::new(&cfg.name));
        let limits = limits::Limits::new(&cfg.name, cfg.circuit_breakers);
        let overprovisioning = cfg.overprovisioning;
        let g = |s: &str| Some(registry().gauge(Scope::Cluster(&cfg.name), s));
        let table_gauges = match cfg.lb {
            LbPolicy::RingHash { .. } => Some([
                g("ring_hash_lb.size"),
                g("ring_hash_lb.min_hashes_per_host"),
                g("ring_hash_lb.max_hashes_per_host"),
            ]),
            LbPolicy::Maglev { .. } => Some([
                None,
                g("maglev_lb.min_entries_per_host"),
                g("maglev_lb.max_entries_per_host"),
            ]),
            _ => None,
        };
        let health = cfg
            .health_check
            .clone()
            .map(|h| health::Checker::new(&cfg.name, h));
        let outlier = cfg
            .outlier
            .clone()
            .map(|o| outlier::Detector::new(&cfg.name, o));
        let tls = cfg.tls.clone().map(|t| {
            let alpn: Vec<Vec<u8>> = match cfg.protocol {
                UpstreamProtocol::Http2 => vec![b"h2".to_vec()],
                UpstreamProtocol::Http1 => vec![b"http/1.1".to_vec()],
                UpstreamProtocol::Downstream => Vec::new(),
                UpstreamProtocol::Auto => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            };
            Arc::new(crate::tls::client::ClientTls::new(t, alpn, &cfg.name))
        });
        let rt = Arc::new(ClusterRt {
            cfg,
            hosts: ArcSwap::from_pointee(Vec::new()),
            picker: ArcSwap::default(),
            overprovisioning: AtomicU32::new(overprovisioning),
            outlier,
            table_gauges,
            health,
            stats,
            limits,
            dst_hosts: ArcSwap::default(),
            tls,
        });
        let endpoints = rt.cfg.endpoints.clone();
        rt.set_endpoints(&endpoints, rt.cfg.overprovisioning);
        rt
    }

    pub fn hosts(&self) -> Arc<Vec<Arc<Host>>> {
        self.hosts.load_full()
    }

    /// Replaces the host set with hosts at `addrs` described by their endpoints: a host
    /// already present at that address keeps its stats, pool and health state.
    pub fn set_hosts(&self, new: Vec<(SocketAddr, &EndpointCfg)>) {
        let old = self.hosts.load();
        let merged: Vec<Arc<Host>> = new
            .into_iter()
            .map(|(addr, e)| {
                match old.iter().find(|o| {
                    o.addr == addr && o.hostname == e.hostname && o.hash_key == e.hash_key
                }) {
                    Some(o) => {
                        o.update(e);
                        o.clone()
                    }
                    None => self.new_host(addr, e),
                }
            })
            .collect();
        self.install(merged);
    }

    /// Makes `merged` the host set.
    pub(crate) fn install(&self, merged: Vec<Arc<Host>>) {
        let old = self.hosts.load();
        if let Some(d) = &self.outlier {
            for gone in old
                .iter()
                .filter(|o| !merged.iter().any(|m| Arc::ptr_eq(m, o)))
            {
                d.forget(gone);
            }
        }
        if old.len() != merged.len() || old.iter().zip(&merged).any(|(a, b)| !Arc::ptr_eq(a, b)) {
            self.stats.membership_change.inc();
        }
        self.hosts.store(Arc::new(merged));
        self.refresh();
        if let Some(h) = &self.health {
            h.hosts_changed();
        }
    }

    /// Rebuilds what picks look at from the hosts' current health and weights.
    pub fn refresh(&self) {
        let hosts = self.hosts.load();
        let p = picker::Picker::new(
            &hosts,
            self.cfg.lb,
            self.overprovisioning.load(Relaxed),
            self.cfg.panic_threshold,
            self.cfg.locality_weighted,
            picker::Tuning {
                slow_start: self.cfg.slow_start,
            },
        );
        self.stats.membership_total.set(hosts.len() as u64);
        self.stats.membership_healthy.set(p.healthy_count);
        self.stats.membership_degraded.set(p.degraded_count);
        if let (Some(gauges), Some((size, min, max))) = (&self.table_gauges, p.table_sizes()) {
            for (g, v) in gauges.iter().zip([size, min, max]) {
                if let Some(g) = g {
                    g.set(v);
                }
            }
        }
        if p.zone
            .as_ref()
            .is_some_and(|z| z.too_small(self.cfg.zone_aware.min_cluster_size))
        {
            if let Some(z) = &self.stats.lb_zone {
                z[4].inc();
            }
        }
        self.picker.store(Arc::new(p));
    }

    /// The host for a connection or request: the cluster's own choice for ORIGINAL_DST, else
    /// by priority load and `lb_policy`.
    pub fn pick(&self, lb: &LbContext<'_>) -> Option<Arc<Host>> {
        let h = if self.cfg.discovery == Discovery::OriginalDst {
            self.pick_original_dst(lb)
        } else {
            let zone = lb
                .local_cluster
                .filter(|l| !std::ptr::eq(*l, self))
                .and_then(|l| {
                    let (_, own) = zone::local()?;
                    Some(picker::ZoneCtx {
                        local: l.picker.load_full(),
                        own,
                        cfg: self.cfg.zone_aware,
                        stats: self.stats.lb_zone.as_ref()?,
                    })
                });
            self.picker
                .load()
                .pick(self.cfg.lb, lb.hash, &self.stats.lb_healthy_panic, zone)
        };
        if h.is_none() {
            self.stats.upstream_cx_none_healthy.inc();
        }
        h
    }

    /// Every host has had its first active health check (true without health checking).
    pub fn health_warmed(&self) -> bool {
        self.health.is_none()
            || self
                .hosts()
                .iter()
                .all(|h| h.hc_checked.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Charges an upstream result to its host's outlier record.
    pub fn report(&self, host: &Host, outcome: outlier::Outcome) {
        if let Some(d) = &self.outlier {
            d.record(self, host, outcome);
        }
    }

    /// The hosts of a load assignment (STATIC or EDS; existing hosts keep their state).
    pub fn set_endpoints(&self, endpoints: &[EndpointCfg], overprovisioning: u32) {
        self.overprovisioning.store(overprovisioning, Relaxed);
        let hosts = endpoints
            .iter()
            .filter_map(|e| e.addr.map(|a| (a, e)))
            .collect();
        self.set_hosts(hosts);
    }

    fn uses_dns(&self) -> bool {
        matches!(
            self.cfg.discovery,
            Discovery::StrictDns | Discovery::LogicalDns
        )
    }

    /// Starts what keeps the host set current: DNS refresh, or the ORIGINAL_DST cleanup sweep.
    pub fn start(self: &Arc<Self>) {
        if self.uses_dns() {
            dns::spawn(self.clone());
        }
        if self.cfg.discovery == Discovery::OriginalDst {
            original_dst::spawn_cleanup(self);
        }
        outlier::Detector::spawn(self);
        health::Checker::spawn(self);
    }

    pub(crate) fn new_host(&self, addr: SocketAddr, e: &EndpointCfg) -> Arc<Host> {
        let pool = Arc::new(pool::HostPool::new(
            addr,
            &self.cfg,
            self.stats.clone(),
            self.limits.clone(),
            self.tls.clone(),
        ));
        let h = Host::new(addr, e, pool);
        if self.health.is_some() {
            // Health-checked hosts start failed until their first check passes.
            h.set_flag(host::flag::FAILED_ACTIVE_HC, true);
        }
        Arc::new(h)
    }

    pub async fn resolve_once(self: &Arc<Self>) {
        if self.uses_dns() {
            dns::resolve(self).await;
        }
    }
}

/// An upstream request in flight, until its response has been sent on (or dropped): counted
/// in the cluster's and host's active requests and against `max_requests`.
#[derive(Debug)]
pub struct ActiveRequest {
    host: Arc<Host>,
    limits: Arc<limits::Limits>,
    gauge: Gauge,
    /// The HTTP/2 stream it holds on its connection.
    pub(crate) stream: Option<pool::StreamSlot>,
}

impl ActiveRequest {
    /// Admits a request to `host` under the cluster's `max_requests` (none: overflow).
    pub fn admit(
        limits: &Arc<limits::Limits>,
        stats: &ClusterStats,
        host: &Arc<Host>,
    ) -> Option<ActiveRequest> {
        if !limits.requests.try_acquire() {
            return None;
        }
        stats.upstream_rq_active.inc();
        host.stats.rq_active.fetch_add(1, Relaxed);
        Some(ActiveRequest {
            host: host.clone(),
            limits: limits.clone(),
            gauge: stats.upstream_rq_active.clone(),
            stream: None,
        })
    }
}

impl Drop for ActiveRequest {
    fn drop(&mut self) {
        self.gauge.dec();
        self.host.stats.rq_active.fetch_sub(1, Relaxed);
        self.limits.requests.release();
        self.limits.wake();
    }
}
