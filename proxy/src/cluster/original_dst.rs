//! ORIGINAL_DST clusters: the host is the destination a connection had before capture (or the
//! address an HTTP header names), made on first use and dropped by the cleanup sweep once it
//! carried no traffic for a whole `cleanup_interval`.

use super::{ClusterRt, Host};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

/// What an ORIGINAL_DST cluster picks from: the downstream connection and the request.
#[derive(Clone, Copy, Default)]
pub struct LbContext<'a> {
    /// The restored original destination of the downstream connection.
    pub original_dst: Option<SocketAddr>,
    pub headers: Option<&'a http::HeaderMap>,
    /// The request hash (RING_HASH, MAGLEV); none: a random one.
    pub hash: Option<u64>,
    /// The local cluster (zone-aware routing).
    pub local_cluster: Option<&'a ClusterRt>,
}

impl ClusterRt {
    /// The host for this connection or request: the header's address when the cluster takes
    /// one and the request has it, else the original destination; `upstream_port_override`
    /// replaces the port. `None` when there is neither.
    pub(super) fn pick_original_dst(&self, lb: &LbContext<'_>) -> Option<Arc<Host>> {
        let od = &self.cfg.original_dst;
        let from_header = od.header.as_ref().and_then(|name| {
            let v = lb.headers?.get(name)?;
            let parsed = v.to_str().ok()?.trim().parse::<SocketAddr>().ok();
            if parsed.is_none() {
                tracing::debug!(cluster = %self.cfg.name, "original_dst: bad address in {name}");
            }
            parsed
        });
        let mut addr = from_header.or(lb.original_dst)?;
        if let Some(p) = od.port {
            addr.set_port(p);
        }
        if let Some(h) = self.dst_hosts.load().get(&addr) {
            h.used.store(true, Relaxed);
            return Some(h.clone());
        }
        let host = self.new_host(addr, &crate::config::cluster::EndpointCfg::default());
        host.used.store(true, Relaxed);
        let mut inserted = host.clone();
        self.dst_hosts.rcu(|m| {
            let mut m = HashMap::clone(m);
            inserted = m.entry(addr).or_insert_with(|| host.clone()).clone();
            m
        });
        self.publish_dst_hosts();
        Some(inserted)
    }

    /// Drops the hosts that were not picked since the previous sweep.
    fn sweep_original_dst(&self) {
        self.dst_hosts.rcu(|m| {
            m.iter()
                .filter(|(_, h)| h.used.swap(false, Relaxed))
                .map(|(a, h)| (*a, h.clone()))
                .collect::<HashMap<_, _>>()
        });
        self.publish_dst_hosts();
    }

    /// Mirrors the host map into the host list that `/clusters` and the stats show.
    fn publish_dst_hosts(&self) {
        let hosts: Vec<Arc<Host>> = self.dst_hosts.load().values().cloned().collect();
        self.install(hosts);
    }
}

/// Sweeps every `cleanup_interval` until the cluster is gone.
pub fn spawn_cleanup(c: &Arc<ClusterRt>) {
    let every = c.cfg.cleanup_interval;
    let weak = Arc::downgrade(c);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            let Some(c) = weak.upgrade() else { return };
            c.sweep_original_dst();
        }
    });
}
