//! Cluster runtime: the hosts a cluster currently has (static or resolved by DNS), round-robin
//! picking, per-host stats, and the upstream connection pools.

pub mod connect;
mod dns;
pub mod lb;
pub mod limits;
mod original_dst;
pub mod pool;

pub use original_dst::LbContext;

use crate::config::cluster::{Cluster, Discovery, EndpointCfg, LbPolicy, UpstreamProtocol};
use crate::stats::{registry, Counter, Gauge, Scope};
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

#[derive(Debug, Default)]
pub struct HostStats {
    pub cx_total: AtomicU64,
    pub cx_active: AtomicU64,
    pub cx_connect_fail: AtomicU64,
    pub rq_total: AtomicU64,
    pub rq_active: AtomicU64,
    pub rq_success: AtomicU64,
    pub rq_error: AtomicU64,
    pub rq_timeout: AtomicU64,
    pub rq_pending_active: AtomicU64,
}

#[derive(Debug)]
pub struct Host {
    pub addr: SocketAddr,
    pub hostname: String,
    pub healthy: bool,
    /// `load_balancing_weight`.
    pub weight: u32,
    pub stats: HostStats,
    pub pool: Arc<pool::HostPool>,
    /// ORIGINAL_DST: picked since the last cleanup sweep.
    used: AtomicBool,
}

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

/// What a pick looks at, rebuilt when the host set changes: the healthy hosts, the weighted
/// round-robin order, and the cumulative weights for weighted random.
#[derive(Debug, Default)]
struct Picker {
    healthy: Vec<Arc<Host>>,
    schedule: Vec<u32>,
    cumulative: Vec<u64>,
}

impl Picker {
    fn new(hosts: &[Arc<Host>]) -> Picker {
        let healthy: Vec<Arc<Host>> = hosts.iter().filter(|h| h.healthy).cloned().collect();
        let weights: Vec<u32> = healthy.iter().map(|h| h.weight).collect();
        let cumulative = weights
            .iter()
            .scan(0u64, |acc, &w| {
                *acc += u64::from(w);
                Some(*acc)
            })
            .collect();
        Picker {
            schedule: lb::schedule(&weights),
            cumulative,
            healthy,
        }
    }

    fn random(&self) -> usize {
        match self.cumulative.last() {
            Some(&total) if !self.schedule.is_empty() => {
                lb::weighted_index(&self.cumulative, fastrand::u64(0..total))
            }
            _ => fastrand::usize(0..self.healthy.len()),
        }
    }
}

#[derive(Debug)]
pub struct ClusterRt {
    pub cfg: Cluster,
    hosts: ArcSwap<Vec<Arc<Host>>>,
    picker: ArcSwap<Picker>,
    rr: AtomicUsize,
    pub stats: Arc<ClusterStats>,
    /// Circuit breakers.
    pub limits: Arc<limits::Limits>,
    /// ORIGINAL_DST: hosts by address, read lock-free.
    dst_hosts: ArcSwap<HashMap<SocketAddr, Arc<Host>>>,
    /// The TLS transport socket of upstream connections.
    pub tls: Option<Arc<crate::tls::client::ClientTls>>,
}

impl ClusterRt {
    /// Builds the cluster; DNS clusters start empty until [`ClusterRt::start_dns`] resolves them.
    pub fn new(cfg: Cluster) -> Arc<ClusterRt> {
        let stats = Arc::new(ClusterStats::new(&cfg.name));
        let limits = limits::Limits::new(&cfg.name, cfg.circuit_breakers);
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
            rr: AtomicUsize::new(0),
            stats,
            limits,
            dst_hosts: ArcSwap::default(),
            tls,
        });
        let hosts: Vec<Arc<Host>> = rt
            .cfg
            .endpoints
            .iter()
            .filter_map(|e| {
                e.addr
                    .map(|a| rt.new_host(a, e.hostname.clone(), e.healthy, e.weight))
            })
            .collect();
        rt.set_hosts(hosts);
        rt
    }

    pub fn hosts(&self) -> Arc<Vec<Arc<Host>>> {
        self.hosts.load_full()
    }

    /// Replaces the host set, keeping existing hosts (and their pools) that are still present.
    pub fn set_hosts(&self, new: Vec<Arc<Host>>) {
        let old = self.hosts.load();
        let merged: Vec<Arc<Host>> = new
            .into_iter()
            .map(|h| {
                old.iter()
                    .find(|o| o.addr == h.addr && o.healthy == h.healthy && o.weight == h.weight)
                    .cloned()
                    .unwrap_or(h)
            })
            .collect();
        self.stats.membership_total.set(merged.len() as u64);
        self.stats
            .membership_healthy
            .set(merged.iter().filter(|h| h.healthy).count() as u64);
        self.picker.store(Arc::new(Picker::new(&merged)));
        self.hosts.store(Arc::new(merged));
    }

    /// The host for a connection or request: the cluster's own choice for ORIGINAL_DST, round
    /// robin over healthy hosts otherwise.
    pub fn pick(&self, lb: &LbContext<'_>) -> Option<Arc<Host>> {
        if self.cfg.discovery == Discovery::OriginalDst {
            let h = self.pick_original_dst(lb);
            if h.is_none() {
                self.stats.upstream_cx_none_healthy.inc();
            }
            return h;
        }
        let p = self.picker.load();
        let n = p.healthy.len();
        if n == 0 {
            self.stats.upstream_cx_none_healthy.inc();
            return None;
        }
        let i = match self.cfg.lb {
            LbPolicy::Random => p.random(),
            LbPolicy::LeastRequest { choices } => {
                let draws = (0..choices).map(|_| p.random());
                lb::least_request(draws, |i| {
                    let h = &p.healthy[i];
                    (h.stats.rq_active.load(Relaxed), h.weight)
                })
                .unwrap_or(0)
            }
            LbPolicy::RoundRobin | LbPolicy::ClusterProvided => {
                let k = self.rr.fetch_add(1, Relaxed);
                if p.schedule.is_empty() {
                    k % n
                } else {
                    p.schedule[k % p.schedule.len()] as usize
                }
            }
        };
        p.healthy.get(i).cloned()
    }

    /// EDS: the hosts of a load assignment (existing hosts keep their pools).
    pub fn set_endpoints(&self, endpoints: &[EndpointCfg]) {
        let hosts = endpoints
            .iter()
            .filter_map(|e| {
                e.addr
                    .map(|a| self.new_host(a, e.hostname.clone(), e.healthy, e.weight))
            })
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
    }

    pub(crate) fn new_host(
        &self,
        addr: SocketAddr,
        hostname: String,
        healthy: bool,
        weight: u32,
    ) -> Arc<Host> {
        Arc::new(Host {
            addr,
            hostname,
            healthy,
            weight,
            stats: HostStats::default(),
            pool: Arc::new(pool::HostPool::new(
                addr,
                &self.cfg,
                self.stats.clone(),
                self.limits.clone(),
                self.tls.clone(),
            )),
            used: AtomicBool::new(false),
        })
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
