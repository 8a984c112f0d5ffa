//! Certificates, validation contexts and the `Secret` resources that carry them: PEM and DER
//! parsing, SAN matchers and CRLs, checked once when configuration is read.

use super::super::matcher::StringMatch;
use super::super::{err, ConfigError, Result};
use envoy_types::pb::envoy::config::core::v3::data_source::Specifier as DataSpec;
use envoy_types::pb::envoy::config::core::v3::DataSource;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3 as pb;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;

/// A certificate chain and its private key.
#[derive(Debug)]
pub struct Certificate {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    /// Where the chain came from (`/certs`): its file, or `<inline>`.
    pub path: String,
}

/// Which kind of subject alternative name a matcher looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SanKind {
    Dns,
    Uri,
    Email,
    Ip,
    /// `match_subject_alt_names` (deprecated form): DNS, URI, email or IP, any of them.
    Any,
}

#[derive(Debug)]
pub struct SanMatcher {
    pub kind: SanKind,
    pub matcher: StringMatch,
}

/// A `CertificateValidationContext`: how the peer's certificate is checked.
#[derive(Debug, Default)]
pub struct Validation {
    /// Trusted CAs; without them the peer's certificate is not verified at all (Envoy's rule).
    pub trusted_ca: Vec<CertificateDer<'static>>,
    /// Where the CAs came from (`/certs`): their file, or `<inline>`.
    pub ca_path: String,
    /// Certificate revocation lists (`crl`), and whether only the leaf is checked against them
    /// (`only_verify_leaf_cert_crl`; otherwise every CA of the chain needs a CRL).
    pub crls: Vec<rustls::pki_types::CertificateRevocationListDer<'static>>,
    pub crl_leaf_only: bool,
    pub san: Vec<SanMatcher>,
}

/// A secret delivered by SDS (or given in the bootstrap's `static_resources.secrets`).
#[derive(Debug, Clone)]
pub enum Secret {
    Certificate(Arc<Certificate>),
    Validation(Arc<Validation>),
}

/// The bytes of a data source and where they came from (a file name, or `<inline>`).
fn data(d: &Option<DataSource>, path: &str) -> Result<Option<(Vec<u8>, String)>> {
    let Some(d) = d else { return Ok(None) };
    let inline = || "<inline>".to_string();
    Ok(match &d.specifier {
        Some(DataSpec::InlineString(s)) => Some((s.clone().into_bytes(), inline())),
        Some(DataSpec::InlineBytes(b)) => Some((b.clone(), inline())),
        Some(DataSpec::Filename(f)) => Some((
            std::fs::read(f).map_err(|e| ConfigError {
                path: format!("{path}.filename"),
                msg: format!("cannot read {f}: {e}"),
            })?,
            f.clone(),
        )),
        Some(_) => return err(path, "this data source is not supported by Ferry"),
        None => None,
    })
}

fn certs_pem(pem: &[u8], path: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| ConfigError {
            path: path.to_string(),
            msg: format!("malformed PEM certificate: {e}"),
        })?;
    if certs.is_empty() {
        return err(path, "no certificate found in the PEM data");
    }
    Ok(certs)
}

impl Certificate {
    pub fn from_proto(c: &pb::TlsCertificate, path: &str) -> Result<Certificate> {
        let cp = format!("{path}.certificate_chain");
        let Some((chain, chain_path)) = data(&c.certificate_chain, &cp)? else {
            return err(&cp, "a certificate chain is required");
        };
        let kp = format!("{path}.private_key");
        let Some((key, _)) = data(&c.private_key, &kp)? else {
            return err(&kp, "a private key is required");
        };
        let key = PrivateKeyDer::from_pem_slice(&key).map_err(|e| ConfigError {
            path: kp.clone(),
            msg: format!("malformed PEM private key: {e}"),
        })?;
        // The key must be usable for signing with the provider Ferry runs.
        rustls::crypto::ring::sign::any_supported_type(&key).map_err(|e| ConfigError {
            path: kp,
            msg: format!("unsupported private key: {e}"),
        })?;
        Ok(Certificate {
            chain: certs_pem(&chain, &cp)?,
            key,
            path: chain_path,
        })
    }
}

impl Validation {
    pub fn from_proto(v: &pb::CertificateValidationContext, path: &str) -> Result<Validation> {
        let (trusted_ca, ca_path) = match data(&v.trusted_ca, &format!("{path}.trusted_ca"))? {
            Some((pem, from)) => (certs_pem(&pem, &format!("{path}.trusted_ca"))?, from),
            None => (Vec::new(), String::new()),
        };
        let mut san = Vec::new();
        for (i, m) in v.match_typed_subject_alt_names.iter().enumerate() {
            let mp = format!("{path}.match_typed_subject_alt_names[{i}]");
            let kind = match m.san_type {
                1 => SanKind::Email,
                2 => SanKind::Dns,
                3 => SanKind::Uri,
                4 => SanKind::Ip,
                5 => {
                    return err(
                        &format!("{mp}.san_type"),
                        "OTHER_NAME is not supported by Ferry",
                    )
                }
                _ => return err(&format!("{mp}.san_type"), "a SAN type is required"),
            };
            let Some(matcher) = &m.matcher else {
                return err(&format!("{mp}.matcher"), "a matcher is required");
            };
            san.push(SanMatcher {
                kind,
                matcher: StringMatch::from_proto(matcher, &format!("{mp}.matcher"))?,
            });
        }
        #[allow(deprecated)]
        for (i, m) in v.match_subject_alt_names.iter().enumerate() {
            san.push(SanMatcher {
                kind: SanKind::Any,
                matcher: StringMatch::from_proto(
                    m,
                    &format!("{path}.match_subject_alt_names[{i}]"),
                )?,
            });
        }
        let crls = match data(&v.crl, &format!("{path}.crl"))? {
            Some((pem, _)) => {
                use rustls::pki_types::CertificateRevocationListDer as Crl;
                let crls = Crl::pem_slice_iter(&pem)
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(|e| ConfigError {
                        path: format!("{path}.crl"),
                        msg: format!("malformed PEM CRL: {e}"),
                    })?;
                for c in &crls {
                    webpki::OwnedCertRevocationList::from_der(c).map_err(|e| ConfigError {
                        path: format!("{path}.crl"),
                        msg: format!("invalid CRL: {e}"),
                    })?;
                }
                if crls.is_empty() {
                    return err(&format!("{path}.crl"), "no CRL found in the PEM data");
                }
                crls
            }
            None => Vec::new(),
        };
        Ok(Validation {
            trusted_ca,
            ca_path,
            crls,
            crl_leaf_only: v.only_verify_leaf_cert_crl,
            san,
        })
    }
}

impl Secret {
    pub fn from_proto(s: &pb::Secret, path: &str) -> Result<Secret> {
        match &s.r#type {
            Some(pb::secret::Type::TlsCertificate(c)) => Ok(Secret::Certificate(Arc::new(
                Certificate::from_proto(c, &format!("{path}.tls_certificate"))?,
            ))),
            Some(pb::secret::Type::ValidationContext(v)) => Ok(Secret::Validation(Arc::new(
                Validation::from_proto(v, &format!("{path}.validation_context"))?,
            ))),
            Some(_) => err(
                path,
                "only tls_certificate and validation_context secrets are supported by Ferry",
            ),
            None => err(path, "the secret has no value"),
        }
    }
}
