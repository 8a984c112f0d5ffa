//! Opening an upstream TCP connection, from the cluster's `upstream_bind_config` address when
//! it has one (Istio's inbound passthrough connects from 127.0.0.6 so that its own iptables
//! rules let the connection through to the application).

use crate::config::cluster::Dial;
use std::net::SocketAddr;
use tokio::net::{TcpSocket, TcpStream};

pub async fn connect(addr: SocketAddr, dial: Dial) -> std::io::Result<TcpStream> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(k) = dial.keepalive {
        // `upstream_connection_options.tcp_keepalive`: unset parts keep the system's values.
        let mut ka = socket2::TcpKeepalive::new();
        if let Some(t) = k.time {
            ka = ka.with_time(t);
        }
        if let Some(i) = k.interval {
            ka = ka.with_interval(i);
        }
        if let Some(n) = k.probes {
            ka = ka.with_retries(n);
        }
        socket2::SockRef::from(&socket).set_tcp_keepalive(&ka)?;
    }
    let bind = dial.bind;
    // A source of the other IP family cannot be used for this destination; Envoy then
    // connects from the default source, and so does Ferry.
    if let Some(b) = bind.filter(|b| b.source.is_ipv4() == addr.is_ipv4()) {
        if b.freebind {
            let s = socket2::SockRef::from(&socket);
            if addr.is_ipv4() {
                s.set_freebind(true)?;
            } else {
                s.set_freebind_ipv6(true)?;
            }
        }
        socket.bind(b.source)?;
    }
    let stream = socket.connect(addr).await?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// A new upstream connection of a cluster: TCP, then TLS when the cluster has a TLS transport
/// socket (a failed handshake is a failed connection, as in Envoy).
pub async fn open(
    addr: SocketAddr,
    dial: Dial,
    tls: Option<&crate::tls::client::ClientTls>,
    alpn: Option<&[Vec<u8>]>,
) -> std::io::Result<crate::io::Stream> {
    let tcp = connect(addr, dial).await?;
    match tls {
        None => Ok(crate::io::Stream::Plain(tcp)),
        Some(t) => Ok(crate::io::Stream::Client(Box::new(
            t.connect(tcp, addr, alpn).await?,
        ))),
    }
}
