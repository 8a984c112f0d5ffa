//! TLS with rustls (ring provider): server contexts for filter chains, client contexts for
//! clusters, Envoy's peer verification and `ssl.*` stats. Contexts built from SDS secrets are
//! rebuilt at the first handshake after a secret changes.

pub mod certs;
pub mod client;
pub mod san;
pub mod sds;
pub mod secrets;
pub mod server;
pub mod subject;
pub mod verify;

use crate::config::tls::{CommonTls, Source, Validation, ValidationSource, Version};
use crate::stats::{registry, Scope};
use rustls::crypto::{ring, CryptoProvider};
use rustls::{CipherSuite, SupportedCipherSuite};
use std::sync::Arc;

/// Envoy's name of a cipher suite (BoringSSL's), as its stats and config use it.
/// The negotiated TLS version by Envoy's name (`TLSv1.3`).
pub fn version_name(conn: &rustls::CommonState) -> Option<&'static str> {
    Some(match conn.protocol_version()? {
        rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3",
        rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2",
        _ => "unknown",
    })
}

pub fn cipher_name(s: CipherSuite) -> &'static str {
    match s {
        CipherSuite::TLS13_AES_128_GCM_SHA256 => "TLS_AES_128_GCM_SHA256",
        CipherSuite::TLS13_AES_256_GCM_SHA384 => "TLS_AES_256_GCM_SHA384",
        CipherSuite::TLS13_CHACHA20_POLY1305_SHA256 => "TLS_CHACHA20_POLY1305_SHA256",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 => "ECDHE-ECDSA-AES128-GCM-SHA256",
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => "ECDHE-RSA-AES128-GCM-SHA256",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 => "ECDHE-ECDSA-AES256-GCM-SHA384",
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => "ECDHE-RSA-AES256-GCM-SHA384",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 => {
            "ECDHE-ECDSA-CHACHA20-POLY1305"
        }
        CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 => "ECDHE-RSA-CHACHA20-POLY1305",
        _ => "unknown",
    }
}

/// The ring provider narrowed to the context's TLS 1.2 cipher suites and curves.
pub fn provider(c: &CommonTls) -> Arc<CryptoProvider> {
    let mut p = ring::default_provider();
    if let Some(names) = &c.cipher_suites {
        p.cipher_suites.retain(|s: &SupportedCipherSuite| {
            s.version() == &rustls::version::TLS13
                || names.iter().any(|n| n == cipher_name(s.suite()))
        });
    }
    if let Some(curves) = &c.curves {
        let name = |g: rustls::NamedGroup| match g {
            rustls::NamedGroup::X25519 => "X25519",
            rustls::NamedGroup::secp256r1 => "P-256",
            rustls::NamedGroup::secp384r1 => "P-384",
            _ => "",
        };
        p.kx_groups
            .retain(|g| curves.iter().any(|c| c == name(g.name())));
    }
    Arc::new(p)
}

pub fn versions(c: &CommonTls) -> Vec<&'static rustls::SupportedProtocolVersion> {
    let mut v = Vec::new();
    if c.max_version == Version::Tls13 {
        v.push(&rustls::version::TLS13);
    }
    if c.min_version == Version::Tls12 {
        v.push(&rustls::version::TLS12);
    }
    v
}

/// Why a context cannot be built yet: a secret it names has not arrived.
#[derive(Debug, thiserror::Error)]
pub enum NotReady {
    #[error("secret {0} is not available yet")]
    Missing(String),
    #[error("secret {0} has the wrong type")]
    WrongType(String),
    #[error("{0}")]
    Tls(#[from] rustls::Error),
}

/// The certificates of a context, resolving SDS names; plus the slot versions they came from.
pub(crate) fn certificates(
    c: &CommonTls,
    seen: &mut Vec<u64>,
) -> Result<Vec<Arc<crate::config::tls::Certificate>>, NotReady> {
    c.certificates
        .iter()
        .map(|src| match src {
            Source::Inline(cert) => Ok(cert.clone()),
            Source::Sds(r) => {
                let slot = secrets::store().slot(&r.name);
                seen.push(slot.version());
                match slot.get().as_deref() {
                    Some(crate::config::tls::Secret::Certificate(c)) => Ok(c.clone()),
                    Some(_) => Err(NotReady::WrongType(r.name.clone())),
                    None => Err(NotReady::Missing(r.name.clone())),
                }
            }
        })
        .collect()
}

/// The validation context, resolving an SDS name (and merging a combined context).
pub(crate) fn validation(
    c: &CommonTls,
    seen: &mut Vec<u64>,
) -> Result<Option<Arc<Validation>>, NotReady> {
    let from_sds = |name: &str, seen: &mut Vec<u64>| {
        let slot = secrets::store().slot(name);
        seen.push(slot.version());
        match slot.get().as_deref() {
            Some(crate::config::tls::Secret::Validation(v)) => Ok(v.clone()),
            Some(_) => Err(NotReady::WrongType(name.to_string())),
            None => Err(NotReady::Missing(name.to_string())),
        }
    };
    Ok(match &c.validation {
        None => None,
        Some(ValidationSource::Inline(v)) => Some(v.clone()),
        Some(ValidationSource::Sds(r)) => Some(from_sds(&r.name, seen)?),
        Some(ValidationSource::Combined { default, sds }) => {
            let dynamic = from_sds(&sds.name, seen)?;
            let (trusted_ca, ca_path) = if dynamic.trusted_ca.is_empty() {
                (default.trusted_ca.clone(), default.ca_path.clone())
            } else {
                (dynamic.trusted_ca.clone(), dynamic.ca_path.clone())
            };
            let mut san: Vec<_> = default.san.iter().map(clone_matcher).collect();
            san.extend(dynamic.san.iter().map(clone_matcher));
            let (crls, crl_leaf_only) = if dynamic.crls.is_empty() {
                (default.crls.clone(), default.crl_leaf_only)
            } else {
                (dynamic.crls.clone(), dynamic.crl_leaf_only)
            };
            Some(Arc::new(Validation {
                trusted_ca,
                ca_path,
                crls,
                crl_leaf_only,
                san,
            }))
        }
    })
}

fn clone_matcher(m: &crate::config::tls::SanMatcher) -> crate::config::tls::SanMatcher {
    crate::config::tls::SanMatcher {
        kind: m.kind,
        matcher: m.matcher.clone(),
    }
}

/// The slot versions a context depends on, now.
fn current_versions(c: &CommonTls) -> Vec<u64> {
    let mut v = Vec::new();
    for src in &c.certificates {
        if let Source::Sds(r) = src {
            v.push(secrets::store().slot(&r.name).version());
        }
    }
    match &c.validation {
        Some(ValidationSource::Sds(r)) | Some(ValidationSource::Combined { sds: r, .. }) => {
            v.push(secrets::store().slot(&r.name).version())
        }
        _ => {}
    }
    v
}

/// A rustls config built from a context and the secrets it names, rebuilt at the first use
/// after one of those secrets changed.
pub struct Cached<T> {
    built: arc_swap::ArcSwapOption<(Vec<u64>, Arc<T>)>,
}

impl<T> Default for Cached<T> {
    fn default() -> Self {
        Cached {
            built: arc_swap::ArcSwapOption::empty(),
        }
    }
}

impl<T> Cached<T> {
    /// The current config; `build` returns a new one with the slot versions it used.
    pub fn get(
        &self,
        common: &CommonTls,
        build: impl FnOnce() -> Result<(Vec<u64>, T), NotReady>,
    ) -> Result<Arc<T>, NotReady> {
        if let Some(b) = self.built.load().as_ref() {
            if b.0 == current_versions(common) {
                return Ok(b.1.clone());
            }
        }
        let (versions, config) = build()?;
        let config = Arc::new(config);
        self.built.store(Some(Arc::new((versions, config.clone()))));
        Ok(config)
    }
}

/// `ssl.*` counters of a listener or a cluster.
#[derive(Debug, Clone)]
pub enum SslScope {
    Listener(String),
    Cluster(String),
}

impl SslScope {
    pub fn inc(&self, stat: &str) {
        let name = format!("ssl.{stat}");
        let c = match self {
            SslScope::Listener(l) => registry().counter(Scope::Listener(l), &name),
            SslScope::Cluster(c) => registry().counter(Scope::Cluster(c), &name),
        };
        c.inc();
    }

    /// A completed handshake: `ssl.handshake`, version, cipher and curve counters.
    pub fn handshake(&self, conn: &rustls::CommonState) {
        self.inc("handshake");
        if let Some(v) = version_name(conn) {
            self.inc(&format!("versions.{v}"));
        }
        if let Some(s) = conn.negotiated_cipher_suite() {
            self.inc(&format!("ciphers.{}", cipher_name(s.suite())));
        }
        if let Some(g) = conn.negotiated_key_exchange_group() {
            let name = match g.name() {
                rustls::NamedGroup::X25519 => "X25519",
                rustls::NamedGroup::secp256r1 => "P-256",
                rustls::NamedGroup::secp384r1 => "P-384",
                _ => "unknown",
            };
            self.inc(&format!("curves.{name}"));
        }
    }

    /// A failed handshake: the verification counter it belongs to, else
    /// `ssl.connection_error` (Envoy counts a failed verification only as that).
    pub fn failed(&self, e: &std::io::Error) {
        match e
            .get_ref()
            .and_then(|i| i.downcast_ref::<rustls::Error>())
            .and_then(verify::failure_stat)
        {
            Some(stat) => self.inc(stat),
            None => self.inc("connection_error"),
        }
    }

    /// Envoy's always-present `ssl.*` counters, at zero until something happens.
    pub fn declare(&self) {
        for s in [
            "connection_error",
            "handshake",
            "session_reused",
            "no_certificate",
            "fail_verify_no_cert",
            "fail_verify_error",
            "fail_verify_san",
            "fail_verify_cert_hash",
            "ocsp_staple_failed",
            "ocsp_staple_omitted",
            "ocsp_staple_responses",
            "ocsp_staple_requests",
            "was_key_usage_invalid",
        ] {
            let name = format!("ssl.{s}");
            match self {
                SslScope::Listener(l) => registry().counter(Scope::Listener(l), &name),
                SslScope::Cluster(c) => registry().counter(Scope::Cluster(c), &name),
            };
        }
    }
}
