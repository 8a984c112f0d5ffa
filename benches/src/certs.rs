//! Certificates for the mtls scenario, made with rcgen as Istio's CA would issue them: a root
//! CA and two workload certificates whose only identity is a SPIFFE URI SAN (ECDSA P-256 keys:
//! ring cannot generate RSA ones). Written as PEM files for the proxies' bootstraps; the load
//! generator's own TLS client is built from the same PEMs.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

pub const CLIENT_ID: &str = "spiffe://cluster.local/ns/bench/sa/client";
pub const SERVER_ID: &str = "spiffe://cluster.local/ns/bench/sa/server";
/// What the server sidecar accepts: any workload of namespace `bench`.
pub const NAMESPACE_PREFIX: &str = "spiffe://cluster.local/ns/bench/";
/// The SNI the client sidecar sends (Istio's outbound cluster name for `server:80`).
pub const SNI: &str = "outbound_.80_._.server.bench.svc.cluster.local";
/// The ALPN an Istio client sidecar offers for HTTP/1.1 to another sidecar.
pub const ISTIO_ALPN: [&str; 3] = ["istio-http/1.1", "istio", "http/1.1"];

/// A PEM certificate (the leaf; the root CA is not repeated) and its key.
pub struct Pem {
    pub cert: String,
    pub key: String,
}

/// The mesh's root CA and the two workloads' certificates.
pub struct MeshCerts {
    pub ca: String,
    pub client: Pem,
    pub server: Pem,
}

/// File paths of one workload's identity.
#[derive(Clone, Debug)]
pub struct Identity {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

/// The file paths both sidecars read.
#[derive(Clone, Debug)]
pub struct Files {
    pub client: Identity,
    pub server: Identity,
}

impl MeshCerts {
    pub fn generate() -> Result<MeshCerts> {
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.distinguished_name
            .push(DnType::OrganizationName, "cluster.local");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let issuer = CertifiedIssuer::self_signed(ca, KeyPair::generate()?)?;
        let leaf = |uri: &str| -> Result<Pem> {
            let mut p = CertificateParams::new(Vec::<String>::new())?;
            p.subject_alt_names.push(SanType::URI(uri.try_into()?));
            p.key_usages = vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ];
            p.extended_key_usages = vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ];
            let key = KeyPair::generate()?;
            let cert = p.signed_by(&key, &issuer)?;
            Ok(Pem {
                cert: cert.pem(),
                key: key.serialize_pem(),
            })
        };
        Ok(MeshCerts {
            ca: issuer.pem(),
            client: leaf(CLIENT_ID)?,
            server: leaf(SERVER_ID)?,
        })
    }

    /// Writes `ca.pem`, `{client,server}.{crt,key}` into `dir` (created if missing).
    pub fn write(&self, dir: &Path) -> Result<Files> {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, &self.ca)?;
        let one = |name: &str, pem: &Pem| -> Result<Identity> {
            let cert = dir.join(format!("{name}.crt"));
            let key = dir.join(format!("{name}.key"));
            std::fs::write(&cert, &pem.cert)?;
            std::fs::write(&key, &pem.key)?;
            Ok(Identity {
                cert,
                key,
                ca: ca.clone(),
            })
        };
        Ok(Files {
            client: one("client", &self.client)?,
            server: one("server", &self.server)?,
        })
    }
}

pub fn certs(pem: &str) -> Result<Vec<CertificateDer<'static>>> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .context("PEM certificates")
}

pub fn key(pem: &str) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).context("PEM private key")
}

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub fn roots(ca: &str) -> Result<Arc<rustls::RootCertStore>> {
    let mut roots = rustls::RootCertStore::empty();
    for c in certs(ca)? {
        roots.add(c)?;
    }
    Ok(Arc::new(roots))
}

/// The load generator's TLS client, as the client sidecar: trusts `ca`, presents `me`,
/// offers Istio's ALPN, never resumes a session (every handshake is a full one). The server's
/// chain is verified; its name is not (it carries only a SPIFFE URI, which the proxies check).
pub fn client_config(ca: &str, me: &Pem) -> Result<Arc<rustls::ClientConfig>> {
    let provider = provider();
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(roots(ca)?, provider.clone())
            .build()?;
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(ChainOnly(verifier)))
        .with_client_auth_cert(certs(&me.cert)?, key(&me.key)?)?;
    cfg.alpn_protocols = ISTIO_ALPN.iter().map(|a| a.as_bytes().to_vec()).collect();
    cfg.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(cfg))
}

/// Chain verification without the host-name check.
#[derive(Debug)]
struct ChainOnly(Arc<rustls::client::WebPkiServerVerifier>);

impl rustls::client::danger::ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &rustls::pki_types::ServerName<'_>,
        ocsp: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        use rustls::CertificateError::{NotValidForName, NotValidForNameContext};
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(NotValidForName))
            | Err(rustls::Error::InvalidCertificate(NotValidForNameContext { .. })) => {
                Ok(rustls::client::danger::ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(m, c, d)
    }

    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(m, c, d)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
