//! A downstream or upstream byte stream: plain TCP or TLS over TCP. One type for the HTTP
//! connection manager, tcp_proxy and the upstream pools, so that neither is generic.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

pub enum Stream {
    Plain(TcpStream),
    /// Downstream TLS (Ferry is the server).
    Server(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    /// Upstream TLS (Ferry is the client).
    Client(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Stream {
    /// The ALPN protocol the TLS handshake settled on.
    pub fn alpn(&self) -> Option<&[u8]> {
        match self {
            Stream::Plain(_) => None,
            Stream::Server(s) => s.get_ref().1.alpn_protocol(),
            Stream::Client(s) => s.get_ref().1.alpn_protocol(),
        }
    }

    /// The local address of the TCP connection underneath.
    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        match self {
            Stream::Plain(s) => s.local_addr().ok(),
            Stream::Server(s) => s.get_ref().0.local_addr().ok(),
            Stream::Client(s) => s.get_ref().0.local_addr().ok(),
        }
    }

    /// The first URI SAN of the upstream TLS peer's certificate (Ferry as the client).
    pub fn upstream_peer_uri(&self) -> Option<String> {
        let Stream::Client(s) = self else { return None };
        let cert = s.get_ref().1.peer_certificates()?.first()?;
        crate::tls::san::first_uri(cert)
    }

    pub fn is_tls(&self) -> bool {
        !matches!(self, Stream::Plain(_))
    }

    /// What a downstream TLS connection says of its peer: the SANs of its certificate and the
    /// SNI it asked for.
    /// The certificates the TLS client presented, its own first (empty: none).
    pub fn peer_chain(&self) -> Vec<&[u8]> {
        let Stream::Server(s) = self else {
            return Vec::new();
        };
        s.get_ref()
            .1
            .peer_certificates()
            .map(|c| c.iter().map(|c| c.as_ref()).collect())
            .unwrap_or_default()
    }

    /// The DER certificate the TLS client presented, if any.
    pub fn peer_cert(&self) -> Option<&[u8]> {
        let Stream::Server(s) = self else { return None };
        s.get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.as_ref())
    }

    pub fn peer(&self) -> Option<Peer> {
        let Stream::Server(s) = self else { return None };
        let conn = s.get_ref().1;
        let mut peer = Peer {
            sni: conn.server_name().map(str::to_string),
            version: crate::tls::version_name(conn),
            cipher: conn
                .negotiated_cipher_suite()
                .map(|s| crate::tls::cipher_name(s.suite())),
            ..Peer::default()
        };
        if let Some(cert) = conn.peer_certificates().and_then(|c| c.first()) {
            peer.authenticated = true;
            peer.cert = Some(std::sync::Arc::from(cert.as_ref()));
            for n in crate::tls::san::names(cert) {
                match n {
                    crate::tls::san::San::Uri(u) => peer.uris.push(u),
                    crate::tls::san::San::Dns(d) => peer.dns.push(d),
                    _ => {}
                }
            }
        }
        Some(peer)
    }
}

/// A downstream TLS peer.
#[derive(Debug, Default, Clone)]
pub struct Peer {
    /// It presented a certificate (verified by the handshake).
    pub authenticated: bool,
    pub uris: Vec<String>,
    pub dns: Vec<String>,
    pub sni: Option<String>,
    /// The first URI SAN of Ferry's own certificate on this connection.
    pub local_uri: Option<String>,
    /// The negotiated version and cipher suite, by Envoy's names.
    pub version: Option<&'static str>,
    pub cipher: Option<&'static str>,
    /// The client's certificate (DER), for the access log's certificate operators.
    pub cert: Option<std::sync::Arc<[u8]>>,
}

macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            Stream::Plain($s) => {
                let $s = Pin::new($s);
                $e
            }
            Stream::Server($s) => {
                let $s = Pin::new($s.as_mut());
                $e
            }
            Stream::Client($s) => {
                let $s = Pin::new($s.as_mut());
                $e
            }
        }
    };
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_read(cx, buf))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => s.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => s.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Server(s) => s.is_write_vectored(),
            Stream::Client(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_shutdown(cx))
    }
}
