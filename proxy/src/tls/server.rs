//! Downstream TLS: a filter chain's `DownstreamTlsContext` as a rustls server config, rebuilt
//! when an SDS secret it uses changes.

use super::{certificates, provider, validation, versions, NotReady, SslScope};
use crate::config::tls::DownstreamTls;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use std::sync::Arc;
use tokio::net::TcpStream;

pub struct ServerTls {
    pub cfg: DownstreamTls,
    built: super::Cached<Configs>,
}

/// The context with its ALPN list, and the same without: when the client offers none of the
/// protocols, Envoy goes on without ALPN (rustls alone would fail the handshake).
pub struct Configs {
    alpn: Arc<ServerConfig>,
    plain: Arc<ServerConfig>,
    /// The first URI SAN of the (first) certificate served.
    local_uri: Option<String>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls").field("cfg", &self.cfg).finish()
    }
}

/// Picks the first certificate whose key can sign with a scheme the client offers (an RSA and
/// an ECDSA certificate may both be configured, as in Envoy).
#[derive(Debug)]
struct Certs(Vec<Arc<CertifiedKey>>);

impl ResolvesServerCert for Certs {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let schemes = hello.signature_schemes();
        self.0
            .iter()
            .find(|k| k.key.choose_scheme(schemes).is_some())
            .or_else(|| self.0.first())
            .cloned()
    }
}

impl ServerTls {
    pub fn new(cfg: DownstreamTls) -> ServerTls {
        ServerTls {
            cfg,
            built: Default::default(),
        }
    }

    fn build(&self) -> Result<(Vec<u64>, Configs), NotReady> {
        let c = &self.cfg.common;
        let mut seen = Vec::new();
        let certs = certificates(c, &mut seen)?;
        let validation = validation(c, &mut seen)?;
        let provider = provider(c);
        let keys = certs
            .iter()
            .map(|cert| {
                let key = provider
                    .key_provider
                    .load_private_key(cert.key.clone_key())?;
                Ok(Arc::new(CertifiedKey::new(cert.chain.clone(), key)))
            })
            .collect::<Result<Vec<_>, rustls::Error>>()?;
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions(c))?;
        let builder = match validation {
            Some(v) if !v.trusted_ca.is_empty() || self.cfg.require_client_certificate => builder
                .with_client_cert_verifier(Arc::new(super::verify::DownstreamVerifier::new(
                    v,
                    provider,
                    self.cfg.require_client_certificate,
                ))),
            _ => builder.with_no_client_auth(),
        };
        let local_uri = certs
            .first()
            .and_then(|c| c.chain.first())
            .and_then(|der| super::san::first_uri(der));
        let plain = builder.with_cert_resolver(Arc::new(Certs(keys)));
        let mut alpn = plain.clone();
        alpn.alpn_protocols = c.alpn.clone();
        Ok((
            seen,
            Configs {
                alpn: Arc::new(alpn),
                plain: Arc::new(plain),
                local_uri,
            },
        ))
    }

    /// The current server config (rebuilt when a secret changed since it was built).
    pub fn config(&self) -> Result<Arc<Configs>, NotReady> {
        self.built.get(&self.cfg.common, || self.build())
    }

    /// The first URI SAN of the certificate this context serves.
    pub fn local_uri(&self) -> Option<String> {
        self.config().ok().and_then(|c| c.local_uri.clone())
    }

    /// The TLS handshake of an accepted connection.
    pub async fn accept(
        &self,
        tcp: TcpStream,
        stats: &SslScope,
    ) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
        let config = match self.config() {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!("TLS context not ready: {e}; closing");
                stats.inc("connection_error");
                return None;
            }
        };
        let acceptor =
            tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp);
        let start = match acceptor.await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!("TLS handshake failed: {e}");
                stats.failed(&e);
                return None;
            }
        };
        let wanted = &config.alpn.alpn_protocols;
        let overlap = start
            .client_hello()
            .alpn()
            .is_some_and(|mut offered| offered.any(|p| wanted.iter().any(|w| w == p)));
        let chosen = if wanted.is_empty() || overlap {
            config.alpn.clone()
        } else {
            config.plain.clone()
        };
        match start.into_stream(chosen).await {
            Ok(s) => {
                stats.handshake(s.get_ref().1);
                if s.get_ref().1.peer_certificates().is_none() {
                    stats.inc("no_certificate");
                }
                Some(s)
            }
            Err(e) => {
                tracing::debug!("TLS handshake failed: {e}");
                stats.failed(&e);
                None
            }
        }
    }
}
