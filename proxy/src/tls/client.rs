//! Upstream TLS: a cluster's `UpstreamTlsContext` as a rustls client config (SNI, client
//! certificate, verification, ALPN), rebuilt when an SDS secret it uses changes.

use super::{certificates, provider, validation, versions, NotReady, SslScope};
use crate::config::tls::{UpstreamTls, Validation};
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpStream;

/// A config copied from a base config with another ALPN list: (base, list, copy).
type AlpnVariant = (Arc<ClientConfig>, Vec<Vec<u8>>, Arc<ClientConfig>);

pub struct ClientTls {
    pub cfg: UpstreamTls,
    /// ALPN when the context sets none: what the cluster's HTTP protocol needs (Envoy's
    /// fallback: `h2` for HTTP/2, `http/1.1` for HTTP/1.1, both for auto).
    fallback_alpn: Vec<Vec<u8>>,
    built: super::Cached<ClientConfig>,
    /// Configs with another ALPN list (Istio's `istio.alpn`), per base config they copy.
    alpn_variants: std::sync::Mutex<Vec<AlpnVariant>>,
    /// The client certificate's first URI SAN, read once (an identity outlives rotations).
    local_uri: std::sync::OnceLock<Option<Arc<str>>>,
    pub stats: SslScope,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls").field("cfg", &self.cfg).finish()
    }
}

impl ClientTls {
    pub fn new(cfg: UpstreamTls, fallback_alpn: Vec<Vec<u8>>, cluster: &str) -> ClientTls {
        let stats = SslScope::Cluster(cluster.to_string());
        stats.declare();
        ClientTls {
            cfg,
            fallback_alpn,
            built: Default::default(),
            alpn_variants: Default::default(),
            local_uri: Default::default(),
            stats,
        }
    }

    fn build(&self) -> Result<(Vec<u64>, ClientConfig), NotReady> {
        let c = &self.cfg.common;
        let mut seen = Vec::new();
        let certs = certificates(c, &mut seen)?;
        let validation =
            validation(c, &mut seen)?.unwrap_or_else(|| Arc::new(Validation::default()));
        let provider = provider(c);
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions(c))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(super::verify::UpstreamVerifier::new(
                validation, provider,
            )));
        let mut config = match certs.first() {
            Some(cert) => {
                builder.with_client_auth_cert(cert.chain.clone(), cert.key.clone_key())?
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = if c.alpn.is_empty() {
            self.fallback_alpn.clone()
        } else {
            c.alpn.clone()
        };
        config.enable_sni = self.cfg.sni.is_some();
        Ok((seen, config))
    }

    fn config(&self) -> Result<Arc<ClientConfig>, NotReady> {
        self.built.get(&self.cfg.common, || self.build())
    }

    /// The first URI SAN of the client certificate this context presents.
    pub fn local_uri(&self) -> Option<String> {
        let mut seen = Vec::new();
        let certs = super::certificates(&self.cfg.common, &mut seen).ok()?;
        let der = certs.first()?.chain.first()?.clone();
        super::san::first_uri(&der)
    }

    /// [`ClientTls::local_uri`], read on first use (once a certificate is there).
    pub fn local_uri_cached(&self) -> Option<Arc<str>> {
        if let Some(u) = self.local_uri.get() {
            return u.clone();
        }
        let u = self.local_uri().map(Arc::from);
        if u.is_some() {
            let _ = self.local_uri.set(u.clone());
        }
        u
    }

    /// The current config with `alpn` as its ALPN list.
    fn with_alpn(&self, base: Arc<ClientConfig>, alpn: &[Vec<u8>]) -> Arc<ClientConfig> {
        let mut v = self.alpn_variants.lock().unwrap_or_else(|p| p.into_inner());
        v.retain(|(b, _, _)| Arc::ptr_eq(b, &base));
        if let Some((_, _, c)) = v.iter().find(|(_, a, _)| a.as_slice() == alpn) {
            return c.clone();
        }
        let mut c = (*base).clone();
        c.alpn_protocols = alpn.to_vec();
        let c = Arc::new(c);
        v.push((base, alpn.to_vec(), c.clone()));
        c
    }

    /// The TLS handshake over a new upstream connection (`alpn`: a list in place of the
    /// context's).
    pub async fn connect(
        &self,
        tcp: TcpStream,
        addr: SocketAddr,
        alpn: Option<&[Vec<u8>]>,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let config = self.config().map_err(|e| {
            self.stats.inc("connection_error");
            std::io::Error::other(e.to_string())
        })?;
        let config = match alpn {
            Some(a) => self.with_alpn(config, a),
            None => config,
        };
        // Without `sni` no SNI is sent; rustls still wants a name, which it then keeps to itself.
        let name = match &self.cfg.sni {
            Some(sni) => ServerName::try_from(sni.clone()).map_err(std::io::Error::other)?,
            None => ServerName::IpAddress(addr.ip().into()),
        };
        match tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
        {
            Ok(s) => {
                self.stats.handshake(s.get_ref().1);
                Ok(s)
            }
            Err(e) => {
                self.stats.failed(&e);
                Err(e)
            }
        }
    }
}
