//! Cluster runtime: the hosts a cluster currently has (static or resolved by DNS), round-robin
//! picking, per-host stats, and the upstream connection pools.

pub mod connect;
mod dns;
pub mod hash;
mod health;
mod health_probe;
pub mod host;
mod host_set;
pub mod lb;
pub mod limits;
mod original_dst;
pub mod outlier;
pub mod outlier_log;
mod outlier_rules;
mod picker;
pub mod pool;
mod priority;
mod stats;
pub mod zone;

pub use host::{Host, HostStats};
pub use stats::ClusterStats;

pub use original_dst::LbContext;

use crate::config::cluster::{Cluster, Discovery, EndpointCfg, LbPolicy, UpstreamProtocol};
use crate::stats::{registry, Gauge, Scope};
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::sync::Arc;

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
    /// The transport sockets of upstream connections: one per `transport_socket_matches`
    /// entry, then the cluster's own `transport_socket` (TLS, or none for plaintext).
    sockets: Vec<Socket>,
    /// RING_HASH: `ring_hash_lb.{size,min_hashes_per_host,max_hashes_per_host}`; MAGLEV:
    /// `maglev_lb.{min,max}_entries_per_host` (no size).
    table_gauges: Option<[Option<Gauge>; 3]>,
}

impl ClusterRt {
    /// Builds the cluster; DNS clusters start empty until [`ClusterRt::start_dns`] resolves them.
    pub fn new(cfg: Cluster) -> Arc<ClusterRt> {
        let stats = ClusterStats::new(&cfg.stat_name);
        let limits = limits::Limits::new(&cfg.stat_name, cfg.circuit_breakers);
        let overprovisioning = cfg.overprovisioning;
        let g = |s: &str| Some(registry().gauge(Scope::Cluster(&cfg.stat_name), s));
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
            .map(|h| health::Checker::new(&cfg.stat_name, h));
        let outlier = cfg
            .outlier
            .clone()
            .map(|o| outlier::Detector::new(&cfg.stat_name, &cfg.name, o));
        let sockets = Socket::all(&cfg);
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
            sockets,
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
                let socket = self.socket_of(e);
                match old.iter().find(|o| {
                    o.addr == addr
                        && o.hostname == e.hostname
                        && o.hash_key == e.hash_key
                        && o.socket == socket
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

    /// Which of [`ClusterRt::sockets`] an endpoint's connections use.
    fn socket_of(&self, e: &EndpointCfg) -> usize {
        crate::config::cluster::socket_match::resolve(
            &self.cfg.socket_matches,
            e.socket_labels.as_ref(),
            e.locality_socket_labels.as_ref(),
        )
        .unwrap_or(self.cfg.socket_matches.len())
    }

    pub(crate) fn new_host(&self, addr: SocketAddr, e: &EndpointCfg) -> Arc<Host> {
        let socket = self.socket_of(e);
        let s = &self.sockets[socket];
        s.matched.inc();
        let pool = Arc::new(pool::HostPool::new(
            addr,
            &self.cfg,
            self.stats.clone(),
            self.limits.clone(),
            s.tls.clone(),
        ));
        let h = Host::new(addr, e, pool, socket);
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

/// One transport socket of a cluster and how many hosts took it.
#[derive(Debug)]
struct Socket {
    tls: Option<Arc<crate::tls::client::ClientTls>>,
    /// `cluster.<name>.<match name | default>.total_match_count`.
    matched: crate::stats::Counter,
}

impl Socket {
    fn all(cfg: &Cluster) -> Vec<Socket> {
        let alpn: Vec<Vec<u8>> = match cfg.protocol {
            UpstreamProtocol::Http2 => vec![b"h2".to_vec()],
            UpstreamProtocol::Http1 => vec![b"http/1.1".to_vec()],
            UpstreamProtocol::Downstream => Vec::new(),
            UpstreamProtocol::Auto => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        };
        let socket = |name: &str, tls: &Option<crate::config::tls::UpstreamTls>| Socket {
            tls: tls.clone().map(|t| {
                Arc::new(crate::tls::client::ClientTls::new(
                    t,
                    alpn.clone(),
                    &cfg.stat_name,
                ))
            }),
            matched: registry().counter(
                Scope::Cluster(&cfg.stat_name),
                &format!("{name}.total_match_count"),
            ),
        };
        cfg.socket_matches
            .iter()
            .map(|m| socket(&m.name, &m.tls))
            .chain(std::iter::once(socket("default", &cfg.tls)))
            .collect()
    }
}

/// An upstream request in flight, until its response has been sent on (or dropped): counted
/// in the cluster's and host's active requests and against `max_requests`.
#[derive(Debug)]
pub struct ActiveRequest {
    host: Arc<Host>,
    limits: Arc<limits::Limits>,
    stats: Arc<ClusterStats>,
    /// The HTTP/2 stream it holds on its connection.
    pub(crate) stream: Option<pool::StreamSlot>,
    /// The upstream connection that carries it.
    pub conn: Option<Arc<UpstreamConn>>,
}

/// What an upstream connection says of itself (access logs, Istio's principals).
#[derive(Debug, Default)]
pub struct UpstreamConn {
    pub local: Option<std::net::SocketAddr>,
    /// The first URI SAN of the upstream's TLS certificate.
    pub peer_san: Option<Arc<str>>,
    /// Requests it carried (`upstream_rq_per_cx`).
    pub requests: std::sync::atomic::AtomicU64,
}

impl UpstreamConn {
    pub fn of(stream: &crate::io::Stream) -> Arc<UpstreamConn> {
        Arc::new(UpstreamConn {
            local: stream.local_addr(),
            peer_san: stream.upstream_peer_uri().map(Arc::from),
            requests: Default::default(),
        })
    }
}

impl ActiveRequest {
    /// Admits a request to `host` under the cluster's `max_requests` (none: overflow).
    pub fn admit(
        limits: &Arc<limits::Limits>,
        stats: &Arc<ClusterStats>,
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
            stats: stats.clone(),
            stream: None,
            conn: None,
        })
    }
}

impl Drop for ActiveRequest {
    fn drop(&mut self) {
        self.stats.upstream_rq_active.dec();
        self.host.stats.rq_active.fetch_sub(1, Relaxed);
        self.limits.requests.release();
        self.limits.wake();
    }
}
