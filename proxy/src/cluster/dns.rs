//! STRICT_DNS (every address of every name) and LOGICAL_DNS (the first address) resolution,
//! refreshed every `dns_refresh_rate`.

use super::ClusterRt;
use crate::config::cluster::{Discovery, DnsFamily};
use std::net::SocketAddr;
use std::sync::Arc;

/// Refreshes until the cluster is gone (removed by CDS and no request holds it).
pub fn spawn(c: Arc<ClusterRt>) {
    let refresh = c.cfg.dns_refresh;
    let weak = Arc::downgrade(&c);
    drop(c);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(refresh).await;
            let Some(c) = weak.upgrade() else { return };
            resolve(&c).await;
        }
    });
}

pub async fn resolve(c: &Arc<ClusterRt>) {
    let mut hosts: Vec<(SocketAddr, &crate::config::cluster::EndpointCfg)> = Vec::new();
    for e in &c.cfg.endpoints {
        let addrs = match tokio::net::lookup_host((e.host.as_str(), e.port)).await {
            Ok(a) => pick_family(a.collect(), c.cfg.dns_family),
            Err(err) => {
                tracing::warn!(cluster = %c.cfg.name, host = %e.host, "DNS resolution failed: {err}");
                continue;
            }
        };
        let addrs = if c.cfg.discovery == Discovery::LogicalDns {
            addrs.into_iter().take(1).collect()
        } else {
            addrs
        };
        for a in addrs {
            if !hosts.iter().any(|(h, _)| *h == a) {
                hosts.push((a, e));
            }
        }
    }
    c.set_hosts(hosts);
    c.stats.update_success.inc();
}

/// Envoy's lookup families: AUTO prefers IPv6 and falls back to IPv4; V4_PREFERRED the reverse.
fn pick_family(all: Vec<SocketAddr>, fam: DnsFamily) -> Vec<SocketAddr> {
    let v4: Vec<SocketAddr> = all.iter().copied().filter(SocketAddr::is_ipv4).collect();
    let v6: Vec<SocketAddr> = all.iter().copied().filter(SocketAddr::is_ipv6).collect();
    match fam {
        DnsFamily::V4Only => v4,
        DnsFamily::V6Only => v6,
        DnsFamily::Auto => {
            if v6.is_empty() {
                v4
            } else {
                v6
            }
        }
        DnsFamily::V4Preferred => {
            if v4.is_empty() {
                v6
            } else {
                v4
            }
        }
        DnsFamily::All => all,
    }
}
