//! TLS transport sockets (`envoy.transport_sockets.tls`): `DownstreamTlsContext` and
//! `UpstreamTlsContext`, and the `Secret` resources SDS delivers. Certificates and validation
//! contexts are given inline or named as SDS secrets; everything is parsed and checked here,
//! once. Ferry does TLS with rustls: TLS 1.2 and 1.3 only.

use super::{any_to, err, Result};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3 as pb;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::common_tls_context::ValidationContextType;
use std::sync::Arc;

mod secret;
pub use secret::{Certificate, SanKind, SanMatcher, Secret, Validation};

pub const DOWNSTREAM: &str = "envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext";
pub const UPSTREAM: &str = "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext";

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

/// TLS 1.2 suites Ferry can do, by Envoy's names.
pub const CIPHERS: &[&str] = &[
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-CHACHA20-POLY1305",
];

/// TLS 1.2 suites without forward secrecy or with CBC that Envoy's BoringSSL knows and rustls
/// does not implement. Istio lists two of them (`AES256-GCM-SHA384`, `AES128-GCM-SHA256`) on
/// every inbound listener: a list naming them is taken, and they are not offered.
const NOT_OFFERED: &[&str] = &[
    "AES128-GCM-SHA256",
    "AES256-GCM-SHA384",
    "AES128-SHA",
    "AES256-SHA",
    "ECDHE-ECDSA-AES128-SHA",
    "ECDHE-RSA-AES128-SHA",
    "ECDHE-ECDSA-AES256-SHA",
    "ECDHE-RSA-AES256-SHA",
    "DES-CBC3-SHA",
];

pub const CURVES: &[&str] = &["X25519", "P-256", "P-384"];

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
/// Suites rustls lacks ([`NOT_OFFERED`]) are skipped, as long as one suite Ferry has remains.
fn cipher_names(list: &[String], path: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    for (i, entry) in list.iter().enumerate() {
        for name in entry.trim_matches(|c| c == '[' || c == ']').split('|') {
            if NOT_OFFERED.contains(&name) {
                skipped.push(name);
                continue;
            }
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
    if !skipped.is_empty() {
        if out.is_empty() {
            return err(
                path,
                format!(
                    "none of these cipher suites is supported by Ferry (supported: {})",
                    CIPHERS.join(", ")
                ),
            );
        }
        tracing::info!(
            "{path}: {} not offered (rustls has no static-RSA or CBC suites)",
            skipped.join(", ")
        );
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

#[cfg(test)]
mod tests {
    use super::cipher_names;

    fn names(list: &[&str]) -> Result<Vec<String>, String> {
        let list: Vec<String> = list.iter().map(|s| s.to_string()).collect();
        cipher_names(&list, "ciphers").map_err(|e| e.to_string())
    }

    #[test]
    fn istio_inbound_cipher_list_is_taken_without_rsa_key_exchange() {
        let istio = [
            "ECDHE-ECDSA-AES256-GCM-SHA384",
            "ECDHE-RSA-AES256-GCM-SHA384",
            "ECDHE-ECDSA-AES128-GCM-SHA256",
            "ECDHE-RSA-AES128-GCM-SHA256",
            "AES256-GCM-SHA384",
            "AES128-GCM-SHA256",
        ];
        assert_eq!(names(&istio).expect("taken"), istio[..4].to_vec());
        let only_rsa = names(&["AES256-GCM-SHA384", "AES128-SHA"]).expect_err("nothing left");
        assert!(
            only_rsa.contains("none of these cipher suites"),
            "{only_rsa}"
        );
        let typo = names(&["ECDHE-RSA-AES256-GCM-SHA385"]).expect_err("unknown");
        assert!(typo.contains("ciphers[0]"), "{typo}");
    }
}
