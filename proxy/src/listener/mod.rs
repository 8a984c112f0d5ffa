//! Listener runtime: bind, accept, pick the filter chain, hand the connection to tcp_proxy or
//! the HTTP connection manager.

use crate::config::filters::network::NetFilter;
use crate::config::listener::{ConnInfo, Listener, NetworkFilter};
use crate::io::Stream;
use crate::snapshot::Server;
use crate::stats::{listener_scope, registry, ActiveGuard, Counter, Gauge, Scope};
use crate::tls::SslScope;
use arc_swap::ArcSwap;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::watch;

pub use accept::{bind, bind_listener, spawn};

mod accept;
mod ext_authz;
mod inspect;
pub mod manager;
mod original_dst;

pub struct ListenerStats {
    pub downstream_cx_total: Counter,
    pub downstream_cx_active: Gauge,
    pub no_filter_chain_match: Counter,
    pub listener_filters_timeout: Counter,
    pub downstream_global_cx_overflow: Counter,
    pub downstream_cx_overload_reject: Counter,
    pub downstream_cx_length_ms: Arc<crate::stats::histogram::Lazy>,
    pub connections_accepted_per_socket_event: Arc<crate::stats::histogram::Lazy>,
    scope: String,
}

impl ListenerStats {
    pub fn new(addr: &SocketAddr, tls: bool) -> Self {
        let scope = listener_scope(addr);
        if tls {
            SslScope::Listener(scope.clone()).declare();
        }
        let r = registry();
        ListenerStats {
            downstream_cx_total: r.counter(Scope::Listener(&scope), "downstream_cx_total"),
            downstream_cx_active: r.gauge(Scope::Listener(&scope), "downstream_cx_active"),
            no_filter_chain_match: r.counter(Scope::Listener(&scope), "no_filter_chain_match"),
            listener_filters_timeout: r
                .counter(Scope::Listener(&scope), "downstream_pre_cx_timeout"),
            downstream_global_cx_overflow: r
                .counter(Scope::Listener(&scope), "downstream_global_cx_overflow"),
            downstream_cx_overload_reject: r
                .counter(Scope::Listener(&scope), "downstream_cx_overload_reject"),
            downstream_cx_length_ms: r
                .histogram(Scope::Listener(&scope), "downstream_cx_length_ms"),
            connections_accepted_per_socket_event: r.histogram(
                Scope::Listener(&scope),
                "connections_accepted_per_socket_event",
            ),
            scope,
        }
    }

    /// Records one accepted connection; the returned guard records its length when dropped.
    pub fn accepted(&self) -> impl Drop + '_ {
        self.connections_accepted_per_socket_event.record(
            || {
                format!(
                    "listener.{}.connections_accepted_per_socket_event",
                    self.scope
                )
            },
            1,
        );
        CxLength(self, std::time::Instant::now())
    }
}

struct CxLength<'a>(&'a ListenerStats, std::time::Instant);

impl Drop for CxLength<'_> {
    fn drop(&mut self) {
        self.0.downstream_cx_length_ms.record(
            || format!("listener.{}.downstream_cx_length_ms", self.0.scope),
            self.1.elapsed().as_millis() as u64,
        );
    }
}

/// A listener that connections can be given to: by its own accept loop, or handed off by a
/// `use_original_dst` listener that captured them.
pub struct Target {
    pub cfg: Arc<ArcSwap<Listener>>,
    pub stats: ListenerStats,
    /// Asks the listener's connections to drain.
    pub drain: watch::Receiver<bool>,
}

/// One accepted connection: restore its original destination (and hand it to the listener of
/// that destination), run the inspectors, pick the filter chain, run it.
async fn handle(
    server: Arc<Server>,
    mut target: Arc<Target>,
    stream: tokio::net::TcpStream,
    mut local: SocketAddr,
    remote: SocketAddr,
    _permit: crate::overload::CxPermit,
) {
    let mut cfg = target.cfg.load_full();
    // A wildcard (or transparent) listener's connection has its own local address: the one
    // destination IP matching and TPROXY's original destination need.
    if local.ip().is_unspecified() || cfg.transparent {
        if let Ok(a) = stream.local_addr() {
            local = a;
        }
    }
    let mut restored = None;
    if cfg.inspectors.original_dst {
        if let Some(dst) = original_dst::original_dst(&stream, local, cfg.transparent) {
            restored = Some(dst);
            local = dst;
            if cfg.use_original_dst {
                if let Some(t) = server.listeners.handoff(dst) {
                    if !Arc::ptr_eq(&t, &target) {
                        target = t;
                        cfg = target.cfg.load_full();
                    }
                }
            }
        }
    }
    let stats = &target.stats;
    stats.downstream_cx_total.inc();
    let _guards = (
        ActiveGuard::new(&stats.downstream_cx_active),
        ActiveGuard::new(&server.stats.total_connections),
        stats.accepted(),
    );
    // When the listener may go on after a timeout anyway and the chains that fit the
    // connection's addresses do not look at SNI, transport or ALPN, waiting for the client to
    // speak first would only stall server-first protocols (MySQL, SMTP): Ferry skips the wait.
    let ins = &cfg.inspectors;
    let (tls, http) = (
        ins.tls.enabled_for(local.port()),
        ins.http.enabled_for(local.port()),
    );
    let seen = if (tls || http) && (!ins.continue_on_timeout || cfg.depends_on_inspection(local)) {
        inspect::inspect(&stream, tls, http, ins.timeout).await
    } else {
        inspect::Inspected {
            transport: "raw_buffer",
            ..Default::default()
        }
    };
    if seen.timed_out && !ins.continue_on_timeout {
        stats.listener_filters_timeout.inc();
        tracing::debug!(listener = %cfg.name, %remote, "listener filters timed out; closing");
        return;
    }
    let info = ConnInfo {
        local,
        remote,
        server_name: &seen.server_name,
        transport_protocol: seen.transport,
        application_protocols: &seen.alpn,
    };
    let Some(chain) = cfg.select(&info) else {
        stats.no_filter_chain_match.inc();
        tracing::debug!(listener = %cfg.name, %remote, "no filter chain matched; closing");
        if !cfg.access_logs.is_empty() {
            log_no_chain(&cfg.access_logs, local, remote, &seen.server_name);
        }
        return;
    };
    tracing::trace!(listener = %cfg.name, chain = %chain.name, %remote, "accepted");
    let mut _slots = Vec::new();
    for f in &chain.network {
        if let NetFilter::ConnectionLimit(limit) = f {
            match limit.acquire() {
                Some(slot) => _slots.push(slot),
                None => {
                    tracing::debug!(listener = %cfg.name, %remote, "connection limit reached; closing");
                    if let Some(d) = limit.delay {
                        tokio::time::sleep(d).await;
                    }
                    return;
                }
            }
        }
    }
    if !network_filters_admit(&chain.network, None) {
        return;
    }
    let stream = match &chain.tls {
        None => Stream::Plain(stream),
        Some(tls) => {
            let scope = SslScope::Listener(crate::stats::listener_scope(&cfg.address));
            match tls.accept(stream, &scope).await {
                Some(s) => Stream::Server(Box::new(s)),
                None => return,
            }
        }
    };
    if chain
        .network
        .iter()
        .any(|f| matches!(f, NetFilter::Rbac(..)))
    {
        let peer = stream.peer();
        if !network_filters_admit(&chain.network, Some((local, remote, peer.as_ref()))) {
            tracing::debug!(listener = %cfg.name, %remote, "RBAC: connection denied");
            return;
        }
    }
    if chain
        .network
        .iter()
        .any(|f| matches!(f, NetFilter::ExtAuthz(..)))
    {
        let peer = stream.peer();
        let local_uri = chain.tls.as_ref().and_then(|t| t.local_uri());
        if !ext_authz::admit(
            &server,
            &chain.network,
            local,
            remote,
            peer.as_ref(),
            local_uri.as_deref(),
        )
        .await
        {
            tracing::debug!(listener = %cfg.name, %remote, "ext_authz: connection denied");
            return;
        }
    }
    let down = Downstream {
        local,
        remote,
        original_dst: restored,
        connection_id: crate::stream_info::next_connection_id(),
        inbound: cfg.inbound,
        outbound: cfg.outbound,
        local_uri: chain.tls.as_ref().and_then(|t| t.local_uri()),
        bypass_overload: cfg.bypass_overload,
        buffer_limit: cfg.buffer_limit,
    };
    match chain.filter.clone() {
        NetworkFilter::TcpProxy(t) => {
            crate::tcp_proxy::handle(&server, &t, &chain.network, stream, down).await
        }
        NetworkFilter::Http(h) => {
            crate::http::serve(server.clone(), h, stream, down, target.drain.clone()).await
        }
    }
}

/// Runs the chain's network filters: the rate limits on a new connection (`conn` none), RBAC
/// once the connection (and its TLS peer) is known. `false`: close it.
fn network_filters_admit(
    filters: &[NetFilter],
    conn: Option<(SocketAddr, SocketAddr, Option<&crate::io::Peer>)>,
) -> bool {
    for f in filters {
        match (f, conn) {
            (NetFilter::LocalRateLimit(bucket, limited), None) if !bucket.take().allowed => {
                limited.inc();
                tracing::debug!("local rate limit: connection closed");
                return false;
            }
            (NetFilter::Rbac(cfg, stats), Some((local, remote, peer))) => {
                let subject = crate::http::filters::rbac::Subject::connection(local, remote, peer);
                if !crate::http::filters::rbac::check(cfg, stats, &subject) {
                    return false;
                }
            }
            _ => {}
        }
    }
    true
}

/// Where a downstream connection came from and went to.
#[derive(Debug, Clone)]
pub struct Downstream {
    /// The local address, restored to the original destination when `original_dst` ran.
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// The restored original destination (what an ORIGINAL_DST cluster connects to).
    pub original_dst: Option<SocketAddr>,
    /// Envoy's connection id, counting up.
    pub connection_id: u64,
    /// The listener's traffic direction is INBOUND.
    pub inbound: bool,
    /// The listener's traffic direction is OUTBOUND.
    pub outbound: bool,
    /// Ferry's own identity on a TLS connection (its certificate's first URI SAN).
    pub local_uri: Option<String>,
    /// The listener's `bypass_overload_manager`.
    pub bypass_overload: bool,
    /// The listener's `per_connection_buffer_limit_bytes`.
    pub buffer_limit: u32,
}

/// The listener's access log line for a connection no filter chain took (`NR`,
/// `filter_chain_not_found`).
fn log_no_chain(
    logs: &[crate::access_log::AccessLog],
    local: SocketAddr,
    remote: SocketAddr,
    sni: &str,
) {
    use crate::stream_info::{Downstream as D, Flag, LogType, StreamInfo};
    let peer = (!sni.is_empty()).then(|| {
        std::sync::Arc::new(crate::io::Peer {
            sni: Some(sni.to_string()),
            ..Default::default()
        })
    });
    let mut info = StreamInfo::new(
        LogType::NotSet,
        D {
            local,
            remote,
            peer,
            connection_id: 0,
            inbound: false,
        },
    );
    info.flag(Flag::NoRoute);
    info.details = Some(std::borrow::Cow::Borrowed("filter_chain_not_found"));
    info.ended = Some(std::time::Instant::now());
    crate::access_log::log_all(logs, &info);
}
