//! Listener runtime: bind, accept, pick the filter chain, hand the connection to tcp_proxy or
//! the HTTP connection manager.

use crate::config::listener::{ConnInfo, Listener, NetworkFilter};
use crate::snapshot::Server;
use crate::stats::{listener_scope, registry, ActiveGuard, Counter, Gauge, Scope};
use arc_swap::ArcSwap;
use socket2::{Domain, Protocol, Socket, Type};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;

mod inspect;
pub mod manager;

pub struct ListenerStats {
    pub downstream_cx_total: Counter,
    pub downstream_cx_active: Gauge,
    pub no_filter_chain_match: Counter,
    pub listener_filters_timeout: Counter,
}

impl ListenerStats {
    fn new(addr: &SocketAddr) -> Self {
        let scope = listener_scope(addr);
        let r = registry();
        ListenerStats {
            downstream_cx_total: r.counter(Scope::Listener(&scope), "downstream_cx_total"),
            downstream_cx_active: r.gauge(Scope::Listener(&scope), "downstream_cx_active"),
            no_filter_chain_match: r.counter(Scope::Listener(&scope), "no_filter_chain_match"),
            listener_filters_timeout: r
                .counter(Scope::Listener(&scope), "downstream_pre_cx_timeout"),
        }
    }
}

/// Binds a listener socket the way Envoy does: SO_REUSEADDR, IPv6 sockets IPv6-only.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let domain = if addr.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let socket = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

/// Runs the accept loop of one listener until it is stopped (by the listener manager, or by
/// `/drain_listeners` and shutdown). Each connection takes the listener's config current at
/// accept time: an update never touches connections already accepted.
pub fn spawn(
    server: Arc<Server>,
    cfg: Arc<ArcSwap<Listener>>,
    tcp: TcpListener,
    mut removed: watch::Receiver<bool>,
    drain: watch::Receiver<bool>,
) {
    let first = cfg.load_full();
    let local = tcp.local_addr().unwrap_or(first.address);
    let stats = Arc::new(ListenerStats::new(&first.address));
    server.stats.listener_added.inc();
    server.stats.total_listeners_active.inc();
    let mut stop = server.stop_listeners.subscribe();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                accepted = tcp.accept() => match accepted {
                    Ok((stream, remote)) => on_accept(&server, &cfg.load_full(), &stats, stream, local, remote, &drain),
                    Err(e) => {
                        tracing::warn!(listener = %first.name, "accept failed: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    }
                },
                changed = removed.changed() => {
                    if changed.is_err() || *removed.borrow() {
                        break;
                    }
                }
                changed = stop.changed() => {
                    let Ok(()) = changed else { break };
                    let req = *stop.borrow();
                    if let Some((_, inbound_only)) = req {
                        if !inbound_only || cfg.load().inbound {
                            break;
                        }
                    }
                }
            }
        }
        server.stats.total_listeners_active.dec();
        tracing::info!(listener = %first.name, "listener closed");
    });
}

fn on_accept(
    server: &Arc<Server>,
    cfg: &Arc<Listener>,
    stats: &Arc<ListenerStats>,
    stream: tokio::net::TcpStream,
    local: SocketAddr,
    remote: SocketAddr,
    drain: &watch::Receiver<bool>,
) {
    stats.downstream_cx_total.inc();
    let _ = stream.set_nodelay(true);
    let guards = (
        ActiveGuard::new(&stats.downstream_cx_active),
        ActiveGuard::new(&server.stats.total_connections),
    );
    let (server, cfg, stats, drain) = (server.clone(), cfg.clone(), stats.clone(), drain.clone());
    tokio::spawn(async move {
        let ins = cfg.inspectors;
        let seen = if ins.any() {
            inspect::inspect(&stream, ins.tls, ins.http, ins.timeout).await
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
            return;
        };
        tracing::trace!(listener = %cfg.name, chain = %chain.name, %remote, "accepted");
        match chain.filter.clone() {
            NetworkFilter::TcpProxy(t) => crate::tcp_proxy::handle(&server, &t, stream).await,
            NetworkFilter::Http(h) => {
                crate::http::serve(server, h, stream, local, remote, drain).await
            }
        }
        drop(guards);
    });
}
