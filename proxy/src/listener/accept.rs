//! Listener sockets and accept loops: bind as Envoy does, accept (one loop per address), let
//! the overload manager admit each connection, hand it to [`super::handle`].

use super::{handle, Target};
use crate::config::listener::Listener;
use crate::snapshot::Server;
use socket2::{Domain, Protocol, Socket, Type};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Binds a listener socket the way Envoy does: SO_REUSEADDR, IPv6 sockets IPv6-only;
/// `transparent` (IP_TRANSPARENT, for TPROXY) and `freebind` when the listener asks.
pub fn bind_listener(l: &Listener, addr: SocketAddr) -> std::io::Result<TcpListener> {
    bind_with(addr, l.transparent, l.freebind)
}

/// Binds a plain listening socket (the admin listener).
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    bind_with(addr, false, false)
}

fn bind_with(addr: SocketAddr, transparent: bool, freebind: bool) -> std::io::Result<TcpListener> {
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
    if transparent {
        if addr.is_ipv4() {
            socket.set_ip_transparent(true)?;
        } else {
            crate::util::set_ipv6_transparent(&socket)?;
        }
    }
    if freebind {
        if addr.is_ipv4() {
            socket.set_freebind(true)?;
        } else {
            socket.set_freebind_ipv6(true)?;
        }
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

/// Runs one listener until it is stopped (by the listener manager, or by `/drain_listeners`
/// and shutdown): its accept loop when it has a socket (`bind_to_port`), otherwise it only
/// lives to take handed-off connections. Each connection takes the listener's config current
/// at accept time: an update never touches connections already accepted.
pub fn spawn(
    server: Arc<Server>,
    target: Arc<Target>,
    socks: Vec<TcpListener>,
    removed: watch::Receiver<bool>,
) {
    server.stats.listener_added.inc();
    server.stats.total_listeners_active.inc();
    // One accept loop per socket (`additional_addresses`); the listener is gone with the last.
    let open = Arc::new(OpenListener(server.clone(), target.cfg.load().name.clone()));
    if socks.is_empty() {
        accept_loop(server, target, None, removed, open);
        return;
    }
    for s in socks {
        accept_loop(
            server.clone(),
            target.clone(),
            Some(s),
            removed.clone(),
            open.clone(),
        );
    }
}

/// Counts a running listener until its last accept loop ends.
struct OpenListener(Arc<Server>, String);

impl Drop for OpenListener {
    fn drop(&mut self) {
        self.0.stats.total_listeners_active.dec();
        tracing::info!(listener = %self.1, "listener closed");
    }
}

fn accept_loop(
    server: Arc<Server>,
    target: Arc<Target>,
    tcp: Option<TcpListener>,
    mut removed: watch::Receiver<bool>,
    open: Arc<OpenListener>,
) {
    let first = target.cfg.load_full();
    let local = tcp
        .as_ref()
        .and_then(|t| t.local_addr().ok())
        .unwrap_or(first.address);
    let mut stop = server.stop_listeners.subscribe();
    tokio::spawn(async move {
        let _open = open;
        let accept = || async {
            match &tcp {
                Some(t) if target.cfg.load().bypass_overload => t.accept().await,
                // `stop_accepting_connections`: no accept while it is saturated (accept is
                // cancel-safe, so a pending one is dropped when it starts).
                Some(t) => loop {
                    crate::overload::accept_gate().await;
                    tokio::select! {
                        r = t.accept() => break r,
                        () = crate::overload::accept_paused() => {}
                    }
                },
                None => std::future::pending().await,
            }
        };
        loop {
            tokio::select! {
                accepted = accept() => match accepted {
                    Ok((stream, remote)) => {
                        let Some(permit) = admit(&target) else { continue };
                        let _ = stream.set_nodelay(true);
                        tokio::spawn(handle(server.clone(), target.clone(), stream, local, remote, permit));
                    }
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
                        if !inbound_only || target.cfg.load().inbound {
                            break;
                        }
                    }
                }
            }
        }
    });
}

/// The overload manager's say on a new connection: rejected while
/// `reject_incoming_connections` is active, refused over the global connection limit (the
/// stream is dropped, which closes it); otherwise counted until the permit drops.
fn admit(target: &Target) -> Option<crate::overload::CxPermit> {
    let cfg = target.cfg.load();
    if !cfg.bypass_overload && crate::overload::reject_connection() {
        target.stats.downstream_cx_overload_reject.inc();
        return None;
    }
    // A listener that bypasses the overload manager is not counted either, as in Envoy.
    let permit =
        crate::overload::admit_connection(cfg.ignore_global_conn_limit || cfg.bypass_overload);
    if permit.is_none() {
        target.stats.downstream_global_cx_overflow.inc();
        tracing::debug!(listener = %cfg.name, "global connection limit reached; closing");
    }
    permit
}
