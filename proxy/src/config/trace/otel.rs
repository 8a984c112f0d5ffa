//! The OpenTelemetry tracer's config (`envoy.config.trace.v3.OpenTelemetryConfig`), and the
//! tracer a `typed_config` names.

use super::super::{any_to, err, type_name, Result};
use super::ZipkinCfg;
use envoy_types::pb::google::protobuf::Any;
use std::sync::Arc;

const OTEL: &str = "envoy.config.trace.v3.OpenTelemetryConfig";

/// Where OpenTelemetry spans go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OtelExport {
    /// OTLP over gRPC: the `:authority` and `initial_metadata`.
    Grpc {
        authority: String,
        metadata: Vec<(String, String)>,
    },
    /// OTLP over HTTP (protobuf): the path, the Host, extra headers.
    Http {
        path: String,
        host: String,
        headers: Vec<(String, String)>,
        timeout_ms: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtelCfg {
    pub cluster: String,
    pub export: OtelExport,
    /// `service_name` (default `unknown_service:envoy`).
    pub service_name: String,
    pub max_cache_size: usize,
}

/// A tracer: Zipkin or OpenTelemetry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tracer {
    Zipkin(Arc<ZipkinCfg>),
    Otel(Arc<OtelCfg>),
}

impl Tracer {
    /// The tracer a `typed_config` names (at `path`).
    pub fn from_any(any: &Any, path: &str) -> Result<Tracer> {
        match type_name(any) {
            OTEL => Ok(Tracer::Otel(OtelCfg::from_any(any, path)?)),
            _ => Ok(Tracer::Zipkin(ZipkinCfg::from_any(any, path)?)),
        }
    }

    pub fn collector_cluster(&self) -> &str {
        match self {
            Tracer::Zipkin(z) => &z.collector_cluster,
            Tracer::Otel(o) => &o.cluster,
        }
    }
}

fn header_pairs(
    hs: &[envoy_types::pb::envoy::config::core::v3::HeaderValueOption],
) -> Vec<(String, String)> {
    hs.iter()
        .filter_map(|h| h.header.as_ref())
        .map(|h| (h.key.to_ascii_lowercase(), h.value.clone()))
        .collect()
}

impl OtelCfg {
    pub fn from_any(any: &Any, path: &str) -> Result<Arc<OtelCfg>> {
        use envoy_types::pb::envoy::config::core::v3::{grpc_service::TargetSpecifier, http_uri};
        let tp = format!("{path}.typed_config");
        let o: envoy_types::pb::envoy::config::trace::v3::OpenTelemetryConfig = any_to(any, &tp)?;
        for (set, field) in [
            (o.exporter.is_some(), "exporter"),
            (o.sampler.is_some(), "sampler"),
            (!o.resource_detectors.is_empty(), "resource_detectors"),
            (
                o.set_telemetry_sdk_resource_attributes
                    .is_some_and(|b| !b.value)
                    || o.set_service_name_resource_attribute
                        .is_some_and(|b| !b.value),
                "set_telemetry_sdk_resource_attributes",
            ),
        ] {
            if set {
                return err(
                    &format!("{tp}.{field}"),
                    format!("{field} is not supported by Ferry yet"),
                );
            }
        }
        let (cluster, export) = match (&o.grpc_service, &o.http_service) {
            (Some(g), None) => {
                let Some(TargetSpecifier::EnvoyGrpc(eg)) = &g.target_specifier else {
                    return err(
                        &format!("{tp}.grpc_service.envoy_grpc"),
                        "envoy_grpc is required",
                    );
                };
                let metadata = g
                    .initial_metadata
                    .iter()
                    .map(|h| (h.key.to_ascii_lowercase(), h.value.clone()))
                    .collect();
                (
                    eg.cluster_name.clone(),
                    OtelExport::Grpc {
                        authority: if eg.authority.is_empty() {
                            eg.cluster_name.clone()
                        } else {
                            eg.authority.clone()
                        },
                        metadata,
                    },
                )
            }
            (None, Some(h)) => {
                let Some(u) = &h.http_uri else {
                    return err(
                        &format!("{tp}.http_service.http_uri"),
                        "http_uri is required",
                    );
                };
                let Some(http_uri::HttpUpstreamType::Cluster(c)) = &u.http_upstream_type else {
                    return err(
                        &format!("{tp}.http_service.http_uri.cluster"),
                        "cluster is required",
                    );
                };
                let parsed: http::Uri = u.uri.parse().map_err(|_| super::super::ConfigError {
                    path: format!("{tp}.http_service.http_uri.uri"),
                    msg: format!("invalid URI {}", u.uri),
                })?;
                let timeout = super::super::opt_duration(
                    &u.timeout,
                    &format!("{tp}.http_service.http_uri.timeout"),
                )?
                .unwrap_or_default();
                (
                    c.clone(),
                    OtelExport::Http {
                        path: parsed
                            .path_and_query()
                            .map_or("/".into(), |p| p.to_string()),
                        host: parsed.authority().map_or(c.clone(), |a| a.to_string()),
                        headers: header_pairs(&h.request_headers_to_add),
                        timeout_ms: timeout.as_millis() as u64,
                    },
                )
            }
            _ => {
                return err(
                    &tp,
                    "exactly one of grpc_service and http_service is required",
                )
            }
        };
        if cluster.is_empty() {
            return err(&tp, "the collector's cluster is required");
        }
        Ok(Arc::new(OtelCfg {
            cluster,
            export,
            service_name: if o.service_name.is_empty() {
                "unknown_service:envoy".into()
            } else {
                o.service_name.clone()
            },
            max_cache_size: o.max_cache_size.map_or(1024, |v| v.value as usize),
        }))
    }
}
