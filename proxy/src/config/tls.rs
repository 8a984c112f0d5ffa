//! TLS transport sockets (`envoy.transport_sockets.tls`): `DownstreamTlsContext` and
//! `UpstreamTlsContext`, and the `Secret` resources SDS delivers. Certificates and validation
//! contexts are given inline or named as SDS secrets; everything is parsed and checked here,
//! once. Ferry does TLS with rustls: TLS 1.2 and 1.3 only.

use super::matcher::StringMatch;
use super::{any_to, err, ConfigError, Result};
use envoy_types::pb::envoy::config::core::v3::data_source::Specifier as DataSpec;
use envoy_types::pb::envoy::config::core::v3::DataSource;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3 as pb;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::common_tls_context::ValidationContextType;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;

pub const DOWNSTREAM: &str = "envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext";
pub const UPSTREAM: &str = "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext";

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

/// Where an SDS secret comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SdsSource {
    /// No `sds_config`: a secret of the bootstrap's `static_resources.secrets`.
    Static,
    Ads,
    /// A separate SDS server: `api_config_source` with an `envoy_grpc` cluster (Istio's
    /// `sds-grpc`, a Unix socket).
    Api {
        cluster: String,
    },
}

/// An SDS secret by name and source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdsRef {
    pub name: String,
    pub source: SdsSource,
}

/// Where a certificate or a validation context comes from.
#[derive(Debug)]
pub enum Source<T> {
    Inline(Arc<T>),
    Sds(SdsRef),
}

impl<T> Clone for Source<T> {
    fn clone(&self) -> Self {
        match self {
            Source::Inline(a) => Source::Inline(a.clone()),
            Source::Sds(r) => Source::Sds(r.clone()),
        }
    }
}

#[derive(Debug, Clone)]
pub enum ValidationSource {
    Inline(Arc<Validation>),
    Sds(SdsRef),
    /// `combined_validation_context`: the SDS secret's trusted CAs with the default context's
    /// SAN matchers (and CAs when the secret has none).
    Combined {
        default: Arc<Validation>,
        sds: SdsRef,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Tls12,
    Tls13,
}

#[derive(Debug, Clone)]
pub struct CommonTls {
    pub certificates: Vec<Source<Certificate>>,
    pub validation: Option<ValidationSource>,
    pub alpn: Vec<Vec<u8>>,
    pub min_version: Version,
    pub max_version: Version,
    /// TLS 1.2 cipher suites by their Envoy (BoringSSL) names; `None`: the defaults.
    pub cipher_suites: Option<Vec<String>>,
    pub curves: Option<Vec<String>>,
}

#[derive(Debug, Clone)]
pub struct DownstreamTls {
    pub common: CommonTls,
    pub require_client_certificate: bool,
}

#[derive(Debug, Clone)]
pub struct UpstreamTls {
    pub common: CommonTls,
    pub sni: Option<String>,
}

/// A secret delivered by SDS (or given in the bootstrap's `static_resources.secrets`).
#[derive(Debug, Clone)]
pub enum Secret {
    Certificate(Arc<Certificate>),
    Validation(Arc<Validation>),
}

/// TLS 1.2 suites Ferry can do, by Envoy's names.
pub const CIPHERS: &[&str] = &[
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-CHACHA20-POLY1305",
];

pub const CURVES: &[&str] = &["X25519", "P-256", "P-384"];

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

fn version(v: i32, path: &str, default: Version) -> Result<Version> {
    match v {
        0 => Ok(default),
        1 | 2 => err(
            path,
            "TLS 1.0 and 1.1 are not supported by Ferry (rustls does TLS 1.2 and 1.3)",
        ),
        3 => Ok(Version::Tls12),
        4 => Ok(Version::Tls13),
        _ => err(path, format!("unknown TLS version {v}")),
    }
}

/// Envoy writes equal-preference groups as `[A|B]`; the names inside count one by one.
fn cipher_names(list: &[String], path: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for (i, entry) in list.iter().enumerate() {
        for name in entry.trim_matches(|c| c == '[' || c == ']').split('|') {
            if !CIPHERS.contains(&name) {
                return err(
                    &format!("{path}[{i}]"),
                    format!(
                        "cipher suite {name} is not supported by Ferry (supported: {})",
                        CIPHERS.join(", ")
                    ),
                );
            }
            out.push(name.to_string());
        }
    }
    Ok(out)
}

impl CommonTls {
    fn from_proto(c: &pb::CommonTlsContext, path: &str, server: bool) -> Result<CommonTls> {
        let mut certificates = Vec::new();
        for (i, cert) in c.tls_certificates.iter().enumerate() {
            certificates.push(Source::Inline(Arc::new(Certificate::from_proto(
                cert,
                &format!("{path}.tls_certificates[{i}]"),
            )?)));
        }
        for (i, s) in c.tls_certificate_sds_secret_configs.iter().enumerate() {
            certificates.push(Source::Sds(sds_name(
                s,
                &format!("{path}.tls_certificate_sds_secret_configs[{i}]"),
            )?));
        }
        if server && certificates.is_empty() {
            return err(path, "a server TLS context needs a certificate");
        }
        let vp = |f: &str| format!("{path}.{f}");
        let validation = match &c.validation_context_type {
            None => None,
            Some(ValidationContextType::ValidationContext(v)) => Some(ValidationSource::Inline(
                Arc::new(Validation::from_proto(v, &vp("validation_context"))?),
            )),
            Some(ValidationContextType::ValidationContextSdsSecretConfig(s)) => Some(
                ValidationSource::Sds(sds_name(s, &vp("validation_context_sds_secret_config"))?),
            ),
            Some(ValidationContextType::CombinedValidationContext(cv)) => {
                let cp = vp("combined_validation_context");
                let Some(d) = &cv.default_validation_context else {
                    return err(&format!("{cp}.default_validation_context"), "is required");
                };
                let Some(s) = &cv.validation_context_sds_secret_config else {
                    return err(
                        &format!("{cp}.validation_context_sds_secret_config"),
                        "is required",
                    );
                };
                Some(ValidationSource::Combined {
                    default: Arc::new(Validation::from_proto(
                        d,
                        &format!("{cp}.default_validation_context"),
                    )?),
                    sds: sds_name(s, &format!("{cp}.validation_context_sds_secret_config"))?,
                })
            }
            Some(_) => {
                return err(
                    path,
                    "this validation context source is not supported by Ferry",
                )
            }
        };
        if let Some(ValidationSource::Inline(v)) = &validation {
            if v.trusted_ca.is_empty() && !v.san.is_empty() {
                return err(
                    &vp("validation_context"),
                    "SAN-based verification of peer certificates without trusted CA is insecure and not allowed",
                );
            }
        }
        let params = c.tls_params.clone().unwrap_or_default();
        let pp = vp("tls_params");
        let min_version = version(
            params.tls_minimum_protocol_version,
            &format!("{pp}.tls_minimum_protocol_version"),
            Version::Tls12,
        )?;
        // Envoy's defaults: servers up to TLS 1.3, clients up to TLS 1.2.
        let max_version = version(
            params.tls_maximum_protocol_version,
            &format!("{pp}.tls_maximum_protocol_version"),
            if server {
                Version::Tls13
            } else {
                Version::Tls12
            },
        )?;
        if min_version == Version::Tls13 && max_version == Version::Tls12 {
            return err(&pp, "the minimum TLS version is above the maximum");
        }
        let cipher_suites = (!params.cipher_suites.is_empty())
            .then(|| cipher_names(&params.cipher_suites, &format!("{pp}.cipher_suites")))
            .transpose()?;
        let curves = (!params.ecdh_curves.is_empty())
            .then(|| {
                params
                    .ecdh_curves
                    .iter()
                    .enumerate()
                    .map(|(i, c)| {
                        if CURVES.contains(&c.as_str()) {
                            Ok(c.clone())
                        } else {
                            err(
                                &format!("{pp}.ecdh_curves[{i}]"),
                                format!(
                                    "curve {c} is not supported by Ferry (supported: {})",
                                    CURVES.join(", ")
                                ),
                            )
                        }
                    })
                    .collect::<Result<Vec<_>>>()
            })
            .transpose()?;
        Ok(CommonTls {
            certificates,
            validation,
            alpn: c
                .alpn_protocols
                .iter()
                .map(|a| a.as_bytes().to_vec())
                .collect(),
            min_version,
            max_version,
            cipher_suites,
            curves,
        })
    }
}

/// The secret's name; its config source must be ADS, an SDS API source, or absent (a static
/// secret of the bootstrap).
fn sds_name(s: &pb::SdsSecretConfig, path: &str) -> Result<SdsRef> {
    if s.name.is_empty() {
        return err(&format!("{path}.name"), "a secret name is required");
    }
    let source = match &s.sds_config {
        Some(cs) => super::xds::sds_source(cs, &format!("{path}.sds_config"))?,
        None => SdsSource::Static,
    };
    Ok(SdsRef {
        name: s.name.clone(),
        source,
    })
}

impl DownstreamTls {
    pub fn from_any(
        any: &envoy_types::pb::google::protobuf::Any,
        path: &str,
    ) -> Result<DownstreamTls> {
        let d: pb::DownstreamTlsContext = any_to(any, path)?;
        let Some(c) = &d.common_tls_context else {
            return err(&format!("{path}.common_tls_context"), "is required");
        };
        let common = CommonTls::from_proto(c, &format!("{path}.common_tls_context"), true)?;
        let require_client_certificate = d.require_client_certificate.is_some_and(|b| b.value);
        if require_client_certificate && common.validation.is_none() {
            return err(
                &format!("{path}.require_client_certificate"),
                "requiring a client certificate needs a validation context",
            );
        }
        Ok(DownstreamTls {
            common,
            require_client_certificate,
        })
    }
}

impl UpstreamTls {
    pub fn from_any(
        any: &envoy_types::pb::google::protobuf::Any,
        path: &str,
    ) -> Result<UpstreamTls> {
        let u: pb::UpstreamTlsContext = any_to(any, path)?;
        let common = match &u.common_tls_context {
            Some(c) => CommonTls::from_proto(c, &format!("{path}.common_tls_context"), false)?,
            None => CommonTls::from_proto(&Default::default(), path, false)?,
        };
        Ok(UpstreamTls {
            common,
            sni: Some(u.sni.clone()).filter(|s| !s.is_empty()),
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

/// A transport socket on a filter chain or cluster: raw (plaintext) or TLS.
pub fn transport_socket_any<'a>(
    ts: &'a Option<envoy_types::pb::envoy::config::core::v3::TransportSocket>,
    path: &str,
    want: &str,
) -> Result<Option<&'a envoy_types::pb::google::protobuf::Any>> {
    use envoy_types::pb::envoy::config::core::v3::transport_socket::ConfigType;
    let Some(ts) = ts else { return Ok(None) };
    let Some(ConfigType::TypedConfig(any)) = &ts.config_type else {
        return err(&format!("{path}.typed_config"), "typed_config is required");
    };
    match super::type_name(any) {
        "envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer" => Ok(None),
        t if t == want => Ok(Some(any)),
        other => err(
            &format!("{path}.typed_config"),
            format!("transport socket {other} is not supported here by Ferry"),
        ),
    }
}
