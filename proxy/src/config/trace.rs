//! Tracing: the Zipkin tracer (`envoy.tracers.zipkin`, given in the bootstrap's `tracing.http`
//! or as a connection manager's `tracing.provider`) and a connection manager's sampling and
//! custom tags.

use super::{any_to, err, type_name, Result};
use envoy_types::pb::envoy::config::trace::v3::ZipkinConfig;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_connection_manager::Tracing;
use envoy_types::pb::envoy::r#type::tracing::v3::custom_tag;
use envoy_types::pb::google::protobuf::Any;
use std::sync::Arc;

mod otel;
pub use otel::{OtelCfg, OtelExport, Tracer};

const ZIPKIN: &str = "envoy.config.trace.v3.ZipkinConfig";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZipkinCfg {
    pub collector_cluster: String,
    pub collector_endpoint: String,
    /// The Host of reports (`collector_hostname`, else the cluster's name).
    pub collector_host: String,
    pub trace_id_128bit: bool,
    /// `shared_span_context` (default true): a server span takes the caller's span id.
    pub shared_span_context: bool,
}

impl ZipkinCfg {
    pub fn from_any(any: &Any, path: &str) -> Result<Arc<ZipkinCfg>> {
        if type_name(any) != ZIPKIN {
            return err(
                &format!("{path}.typed_config"),
                format!(
                    "tracer {} is not supported by Ferry (Zipkin is)",
                    type_name(any)
                ),
            );
        }
        let tp = format!("{path}.typed_config");
        let z: ZipkinConfig = any_to(any, &tp)?;
        // HTTP_JSON is 1; HTTP_PROTO 2 (GRPC 3 is not implemented by Envoy either).
        if z.collector_endpoint_version != 1 {
            return err(
                &format!("{tp}.collector_endpoint_version"),
                "Ferry sends Zipkin v2 JSON only (HTTP_JSON)",
            );
        }
        #[allow(deprecated)] // still in the API, and not implemented here
        if z.split_spans_for_request || z.trace_context_option != 0 {
            return err(
                &tp,
                "split_spans_for_request and trace_context_option are not supported by Ferry yet",
            );
        }
        // Istio 1.29+ names the collector by URI (`collector_service`), older ones by cluster.
        let (cluster, endpoint, host) = match &z.collector_service {
            Some(s) => {
                if !s.request_headers_to_add.is_empty() {
                    return err(
                        &format!("{tp}.collector_service.request_headers_to_add"),
                        "not supported by Ferry yet",
                    );
                }
                let Some(u) = &s.http_uri else {
                    return err(
                        &format!("{tp}.collector_service.http_uri"),
                        "http_uri is required",
                    );
                };
                let Some(
                    envoy_types::pb::envoy::config::core::v3::http_uri::HttpUpstreamType::Cluster(
                        c,
                    ),
                ) = &u.http_upstream_type
                else {
                    return err(
                        &format!("{tp}.collector_service.http_uri.cluster"),
                        "cluster is required",
                    );
                };
                let parsed: http::Uri = u.uri.parse().map_err(|_| super::ConfigError {
                    path: format!("{tp}.collector_service.http_uri.uri"),
                    msg: format!("invalid URI {}", u.uri),
                })?;
                let host = parsed.authority().map_or(c.clone(), |a| a.to_string());
                let path = parsed
                    .path_and_query()
                    .map_or("/".into(), |p| p.to_string());
                (c.clone(), path, host)
            }
            None => {
                let host = if z.collector_hostname.is_empty() {
                    z.collector_cluster.clone()
                } else {
                    z.collector_hostname.clone()
                };
                (
                    z.collector_cluster.clone(),
                    z.collector_endpoint.clone(),
                    host,
                )
            }
        };
        if cluster.is_empty() {
            return err(
                &format!("{tp}.collector_cluster"),
                "collector_cluster is required",
            );
        }
        Ok(Arc::new(ZipkinCfg {
            collector_host: host,
            collector_cluster: cluster,
            collector_endpoint: endpoint,
            trace_id_128bit: z.trace_id_128bit,
            shared_span_context: z.shared_span_context.is_none_or(|b| b.value),
        }))
    }
}

/// A custom tag's source.
#[derive(Debug, Clone)]
pub enum TagValue {
    Literal(String),
    /// A request header, or the default when it is absent (no default: no tag).
    Header(http::HeaderName, Option<String>),
    /// A key of a filter's request dynamic metadata, or the default.
    Metadata {
        filter: String,
        key: String,
        default: Option<String>,
    },
}

#[derive(Debug, Clone)]
pub struct TracingCfg {
    /// `provider`; none: the bootstrap's tracer.
    pub provider: Option<Tracer>,
    /// Sampling in hundredths of a percent (of 10,000).
    pub client: u32,
    pub random: u32,
    pub overall: u32,
    pub max_path_tag_length: usize,
    pub custom_tags: Vec<(String, TagValue)>,
}

fn percent(p: &Option<envoy_types::pb::envoy::r#type::v3::Percent>) -> u32 {
    p.as_ref().map_or(10_000, |p| {
        (p.value.clamp(0.0, 100.0) * 100.0).round() as u32
    })
}

impl TracingCfg {
    pub fn from_proto(t: &Tracing, path: &str) -> Result<TracingCfg> {
        if t.spawn_upstream_span.is_some_and(|b| b.value) {
            return err(
                &format!("{path}.spawn_upstream_span"),
                "upstream spans are not supported by Ferry yet",
            );
        }
        let provider = t
            .provider
            .as_ref()
            .map(|p| match &p.config_type {
                Some(envoy_types::pb::envoy::config::trace::v3::tracing::http::ConfigType::TypedConfig(any)) => {
                    Tracer::from_any(any, &format!("{path}.provider"))
                }
                None => err(&format!("{path}.provider.typed_config"), "typed_config is required"),
            })
            .transpose()?;
        let mut custom_tags = Vec::new();
        for (i, c) in t.custom_tags.iter().enumerate() {
            let cp = format!("{path}.custom_tags[{i}]");
            let v = match &c.r#type {
                Some(custom_tag::Type::Literal(l)) => TagValue::Literal(l.value.clone()),
                Some(custom_tag::Type::Environment(e)) => {
                    match std::env::var(&e.name)
                        .ok()
                        .or_else(|| (!e.default_value.is_empty()).then(|| e.default_value.clone()))
                    {
                        Some(v) => TagValue::Literal(v),
                        None => continue,
                    }
                }
                Some(custom_tag::Type::RequestHeader(h)) => TagValue::Header(
                    http::HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| {
                        super::ConfigError {
                            path: format!("{cp}.request_header.name"),
                            msg: "invalid header name".into(),
                        }
                    })?,
                    (!h.default_value.is_empty()).then(|| h.default_value.clone()),
                ),
                Some(custom_tag::Type::Metadata(m)) => {
                    use envoy_types::pb::envoy::r#type::metadata::v3::{
                        metadata_key::path_segment::Segment, metadata_kind::Kind,
                    };
                    let request = matches!(
                        m.kind.as_ref().and_then(|k| k.kind.as_ref()),
                        Some(Kind::Request(_))
                    );
                    let key = m.metadata_key.as_ref();
                    let seg = key.and_then(|k| match k.path.as_slice() {
                        [s] => match &s.segment {
                            Some(Segment::Key(k)) => Some(k.clone()),
                            _ => None,
                        },
                        _ => None,
                    });
                    match (request, key, seg) {
                        (true, Some(k), Some(seg)) => TagValue::Metadata {
                            filter: k.key.clone(),
                            key: seg,
                            default: (!m.default_value.is_empty()).then(|| m.default_value.clone()),
                        },
                        _ => {
                            return err(
                                &format!("{cp}.metadata"),
                                "Ferry supports request metadata tags with a one-key path",
                            )
                        }
                    }
                }
                Some(custom_tag::Type::Value(_)) => {
                    return err(
                        &format!("{cp}.value"),
                        "formatted tag values are not supported by Ferry yet",
                    )
                }
                None => return err(&cp, "a tag type is required"),
            };
            custom_tags.push((c.tag.clone(), v));
        }
        Ok(TracingCfg {
            provider,
            client: percent(&t.client_sampling),
            random: percent(&t.random_sampling),
            overall: percent(&t.overall_sampling),
            max_path_tag_length: t.max_path_tag_length.map_or(256, |v| v.value as usize),
            custom_tags,
        })
    }
}
