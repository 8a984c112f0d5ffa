//! `tcp_proxy`: pick a cluster (by weight) and a host, connect (up to `max_connect_attempts`),
//! then copy bytes both ways with half-close and an idle timeout.

use crate::config::tcp_proxy::TcpProxy;
use crate::io::Stream;
use crate::snapshot::Server;
use crate::stats::{registry, Scope};
use crate::stream_info::{Flag, LogType, StreamInfo};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub async fn handle(
    server: &Arc<Server>,
    cfg: &TcpProxy,
    downstream: Stream,
    down: crate::listener::Downstream,
) {
    let mut log = (!cfg.access_logs.is_empty()).then(|| Logged::start(cfg, &down, &downstream));
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
            crate::cluster::connect::open(host.addr, cluster.cfg.dial(), cluster.tls.as_deref()),
        )
        .await
        {
            Ok(Ok(s)) => {
                cluster.stats.connected(connecting);
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
    }
    let _active = crate::stats::ActiveGuard::of(&cluster.stats, |s| &s.upstream_cx_active);
    let opened = std::time::Instant::now();
    let (rx, tx, idled) = copy_bidirectional(downstream, upstream, cfg.idle_timeout).await;
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
}

impl<'a> Logged<'a> {
    fn start(cfg: &'a TcpProxy, down: &crate::listener::Downstream, s: &Stream) -> Logged<'a> {
        let info = StreamInfo::new(
            LogType::TcpConnectionEnd,
            crate::stream_info::Downstream {
                local: down.local,
                remote: down.remote,
                peer: s.peer().map(Arc::new),
                connection_id: down.connection_id,
                inbound: down.inbound,
            },
        );
        Logged {
            info,
            logs: &cfg.access_logs,
        }
    }
}

impl Drop for Logged<'_> {
    fn drop(&mut self) {
        self.info.ended = Some(std::time::Instant::now());
        crate::access_log::log_all(self.logs, &self.info);
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

/// Copies both directions until both are done; a read EOF on one side becomes a write
/// shutdown on the other (half-close). With an idle timeout, the connection closes when no
/// byte has moved for that long. Returns (downstream→upstream bytes, upstream→downstream
/// bytes, closed for idleness).
pub async fn copy_bidirectional(a: Stream, b: Stream, idle: Option<Duration>) -> (u64, u64, bool) {
    match (a, b) {
        // Plain TCP both ways: owned halves, no lock between the directions.
        (Stream::Plain(a), Stream::Plain(b)) => {
            let (ar, aw) = a.into_split();
            let (br, bw) = b.into_split();
            copy_halves(ar, aw, br, bw, idle).await
        }
        (a, b) => {
            let (ar, aw) = tokio::io::split(a);
            let (br, bw) = tokio::io::split(b);
            copy_halves(ar, aw, br, bw, idle).await
        }
    }
}

async fn copy_halves<AR, AW, BR, BW>(
    ar: AR,
    aw: AW,
    br: BR,
    bw: BW,
    idle: Option<Duration>,
) -> (u64, u64, bool)
where
    AR: AsyncRead + Unpin + Send + 'static,
    AW: AsyncWrite + Unpin + Send + 'static,
    BR: AsyncRead + Unpin + Send + 'static,
    BW: AsyncWrite + Unpin + Send + 'static,
{
    let last = Arc::new(AtomicU64::new(crate::util::coarse_ms()));
    let up = tokio::spawn(pump(ar, bw, last.clone()));
    let down = tokio::spawn(pump(br, aw, last.clone()));
    let (ua, da) = (up.abort_handle(), down.abort_handle());
    let both = async { (up.await.unwrap_or(0), down.await.unwrap_or(0)) };
    let Some(idle) = idle else {
        let (x, y) = both.await;
        return (x, y, false);
    };
    let watchdog = async {
        loop {
            let since =
                Duration::from_millis(crate::util::coarse_ms().saturating_sub(last.load(Relaxed)));
            match idle.checked_sub(since).filter(|d| !d.is_zero()) {
                Some(left) => tokio::time::sleep(left).await,
                None => return,
            }
        }
    };
    tokio::select! {
        (x, y) = both => (x, y, false),
        () = watchdog => {
            ua.abort();
            da.abort();
            (0, 0, true)
        }
    }
}

async fn pump<R, W>(mut r: R, mut w: W, last: Arc<AtomicU64>) -> u64
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    // Large reads keep the syscall count per byte low on bulk streams.
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        match r.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => {
                last.store(crate::util::coarse_ms(), Relaxed);
                if w.write_all(&buf[..n]).await.is_err() {
                    return total;
                }
                total += n as u64;
            }
            Err(_) => break,
        }
    }
    let _ = w.shutdown().await;
    total
}
