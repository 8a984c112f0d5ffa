//! `tcp_proxy`: pick a cluster (by weight) and a host, connect (up to `max_connect_attempts`),
//! then copy bytes both ways with half-close and an idle timeout ([`copy`]).

mod copy;

use crate::config::filters::network::NetFilter;
use crate::config::tcp_proxy::TcpProxy;
use crate::io::Stream;
use crate::snapshot::Server;
use crate::stats::{registry, Scope};
use crate::stream_info::{Flag, LogType, StreamInfo};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

pub async fn handle(
    server: &Arc<Server>,
    cfg: &TcpProxy,
    net: &[NetFilter],
    downstream: Stream,
    down: crate::listener::Downstream,
) {
    let istio = net.iter().find_map(|f| match f {
        NetFilter::IstioStats(s) => Some(s.clone()),
        _ => None,
    });
    // Istio's exchange with the downstream, when the handshake chose its protocol.
    let mx_down = net.iter().any(|f| {
        matches!(f, NetFilter::MetadataExchange(m) if downstream.alpn() == Some(m.protocol.as_slice()))
    });
    let mut log = (!cfg.access_logs.is_empty() || istio.is_some())
        .then(|| Logged::start(cfg, &down, &downstream, istio.clone()));
    let r = registry();
    let scope = || Scope::Tcp(&cfg.stat_prefix);
    r.counter(scope(), "downstream_cx_total").inc();
    let snapshot = server.snapshot.load_full();
    let name = pick_weighted(&cfg.clusters, cfg.total_weight);
    let Some(cluster) = snapshot.cluster(name) else {
        r.counter(scope(), "downstream_cx_no_route").inc();
        tracing::debug!(cluster = name, "tcp_proxy: unknown cluster; closing");
        if let Some(l) = log.as_mut() {
            l.info.flag(Flag::NoClusterFound);
        }
        return;
    };
    if let Some(l) = log.as_mut() {
        l.info.upstream.cluster = Some((
            Arc::from(cluster.cfg.name.as_str()),
            Arc::from(cluster.cfg.stat_name.as_str()),
        ));
    }
    let mut upstream = None;
    let mut local_san = None;
    for _ in 0..cfg.max_connect_attempts {
        let lb = crate::cluster::LbContext {
            original_dst: down.original_dst,
            headers: None,
            hash: None,
            local_cluster: crate::cluster::zone::local()
                .and_then(|(n, _)| snapshot.cluster(n))
                .map(|c| &**c),
        };
        let Some(host) = cluster.pick(&lb) else {
            if let Some(l) = log.as_mut() {
                l.info.flag(Flag::NoHealthyUpstream);
            }
            break;
        };
        if let Some(l) = log.as_mut() {
            l.info.attempts += 1;
            l.info.upstream.host = Some(host.addr);
        }
        // Every attempt is an upstream connection in Envoy's count.
        cluster.stats.upstream_cx_total.inc();
        let connecting = std::time::Instant::now();
        host.stats.cx_total.fetch_add(1, Relaxed);
        match tokio::time::timeout(
            cluster.cfg.connect_timeout,
            crate::cluster::connect::open(
                host.addr,
                cluster.cfg.dial(),
                host.pool.tls().map(|t| &**t),
                None,
            ),
        )
        .await
        {
            Ok(Ok(s)) => {
                cluster.stats.connected(connecting);
                local_san = host.pool.tls().and_then(|t| t.local_uri_cached());
                upstream = Some(s);
                break;
            }
            Ok(Err(e)) => {
                cluster.stats.upstream_cx_connect_fail.inc();
                host.stats.cx_connect_fail.fetch_add(1, Relaxed);
                if let Some(l) = log.as_mut() {
                    l.info.flag(Flag::UpstreamConnectFailure);
                    l.info.upstream.failure = Some(crate::stream_info::connect_failure(&e));
                }
            }
            Err(_) => {
                cluster.stats.upstream_cx_connect_fail.inc();
                host.stats.cx_connect_fail.fetch_add(1, Relaxed);
                if let Some(l) = log.as_mut() {
                    l.info.flag(Flag::UpstreamConnectFailure);
                }
            }
        }
    }
    let Some(upstream) = upstream else {
        r.counter(
            Scope::Cluster(&cluster.cfg.stat_name),
            "upstream_cx_connect_attempts_exceeded",
        )
        .inc();
        if let Some(l) = log.as_mut() {
            if l.info.flags.contains(&Flag::UpstreamConnectFailure) {
                l.info.flag(Flag::UpstreamRetryLimitExceeded);
            }
        }
        return;
    };
    if let Some(l) = log.as_mut() {
        l.info.upstream.local = upstream.local_addr();
        if istio.is_some() {
            l.info.upstream.service = cluster.cfg.istio_service.clone();
            l.info.upstream.peer_san = upstream.upstream_peer_uri().map(Arc::from);
            l.info.upstream.local_san = local_san;
        }
    }
    let _active = crate::stats::ActiveGuard::of(&cluster.stats, |s| &s.upstream_cx_active);
    let opened = std::time::Instant::now();
    let mx_up = cluster
        .cfg
        .metadata_exchange
        .as_ref()
        .is_some_and(|m| upstream.alpn() == Some(m.protocol.as_slice()));
    let slot = || Arc::new(std::sync::Mutex::new(None));
    let exchange = copy::Exchange {
        downstream: mx_down.then(slot),
        upstream: mx_up.then(slot),
        moved: istio
            .as_ref()
            .map(|_| Arc::new([AtomicU64::new(0), AtomicU64::new(0)])),
    };
    // `istio.stats`: the peer this side reports is the downstream one inbound, else the
    // upstream one.
    let report = match (&istio, log.as_mut(), &exchange.moved) {
        (Some(cfg), Some(l), Some(moved)) => {
            l.istio = None;
            let peer = if down.inbound {
                exchange.downstream.clone().map(|s| (s, true))
            } else {
                exchange.upstream.clone().map(|s| (s, false))
            };
            let report = Arc::new(std::sync::Mutex::new(crate::istio::tcp::TcpReport::new(
                cfg.clone(),
                l.info.clone(),
                peer,
                moved.clone(),
            )));
            let ticker = crate::istio::tcp::spawn_ticker(report.clone(), cfg.tcp_interval);
            Some((report, ticker))
        }
        _ => None,
    };
    let (rx, tx, idled) =
        copy::bidirectional(downstream, upstream, cfg.idle_timeout, exchange).await;
    if let Some((report, ticker)) = report {
        ticker.abort();
        report.lock().unwrap_or_else(|p| p.into_inner()).close(&[]);
    }
    if idled {
        r.counter(scope(), "idle_timeout").inc();
    }
    r.counter(scope(), "downstream_cx_rx_bytes_total").add(rx);
    r.counter(scope(), "downstream_cx_tx_bytes_total").add(tx);
    cluster.stats.upstream_cx_tx_bytes_total.add(rx);
    cluster.stats.upstream_cx_rx_bytes_total.add(tx);
    cluster.stats.upstream_cx_destroy.inc();
    cluster.stats.closed(opened, None);
    if let Some(l) = log.as_mut() {
        l.info.bytes_received = rx;
        l.info.bytes_sent = tx;
    }
}

/// A proxied connection's access log line, written when it ends however it ends.
struct Logged<'a> {
    info: StreamInfo,
    logs: &'a [crate::access_log::AccessLog],
    /// `istio.stats` of a connection that ends before its bytes are copied (its metrics are
    /// then reported with the connection's flags when it is dropped).
    istio: Option<Arc<crate::istio::stats::IstioStats>>,
}

impl<'a> Logged<'a> {
    fn start(
        cfg: &'a TcpProxy,
        down: &crate::listener::Downstream,
        s: &Stream,
        istio: Option<Arc<crate::istio::stats::IstioStats>>,
    ) -> Logged<'a> {
        let info = StreamInfo::new(
            LogType::TcpConnectionEnd,
            crate::stream_info::Downstream {
                local: down.local,
                remote: down.remote,
                peer: s
                    .peer()
                    .map(|mut p| {
                        p.local_uri = down.local_uri.clone();
                        p
                    })
                    .map(Arc::new),
                connection_id: down.connection_id,
                inbound: down.inbound,
            },
        );
        Logged {
            info,
            logs: &cfg.access_logs,
            istio,
        }
    }
}

impl Drop for Logged<'_> {
    fn drop(&mut self) {
        self.info.ended = Some(std::time::Instant::now());
        crate::access_log::log_all(self.logs, &self.info);
        if let Some(cfg) = self.istio.take() {
            let moved = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
            let flags = self.info.flags.clone();
            crate::istio::tcp::TcpReport::new(cfg, self.info.clone(), None, moved).close(&flags);
        }
    }
}

pub fn pick_weighted(clusters: &[(String, u32)], total: u64) -> &str {
    if clusters.len() == 1 {
        return &clusters[0].0;
    }
    let mut n = fastrand::u64(0..total.max(1));
    for (name, w) in clusters {
        if n < u64::from(*w) {
            return name;
        }
        n -= u64::from(*w);
    }
    &clusters[clusters.len() - 1].0
}
