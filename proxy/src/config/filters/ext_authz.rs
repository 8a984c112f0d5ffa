//! `envoy.filters.http.ext_authz` over gRPC (`envoy.service.auth.v3.Authorization/Check`
//! on a cluster): Istio's CUSTOM authorization.

use super::super::matcher::StringMatch;
use super::super::{any_to, err, Result};
use super::Percent;
use envoy_types::pb::envoy::config::core::v3::grpc_service::TargetSpecifier;
use envoy_types::pb::envoy::extensions::filters::http::ext_authz::v3 as pb;
use envoy_types::pb::google::protobuf::Any;
use std::time::Duration;

mod net;
pub use net::{network, NetExtAuthzStats, NETWORK};

pub const TYPE: &str = "envoy.extensions.filters.http.ext_authz.v3.ExtAuthz";
pub const PER_ROUTE: &str = "envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute";

/// `filter_enabled_metadata`: a string at a path of a filter's dynamic metadata.
#[derive(Debug)]
pub struct HttpCfg {
    pub path_prefix: String,
    /// `authorization_request.allowed_headers`: more request headers sent to the service.
    pub allowed_headers: Vec<StringMatch>,
    pub headers_to_add: Vec<(http::HeaderName, http::HeaderValue)>,
    /// `authorization_response`: which of the service's headers go where.
    pub upstream: Vec<StringMatch>,
    pub upstream_append: Vec<StringMatch>,
    /// `allowed_client_headers` (none: all of them, on a denial).
    pub client: Option<Vec<StringMatch>>,
    pub client_on_success: Vec<StringMatch>,
}

#[derive(Debug)]
pub struct BodySettings {
    pub max: usize,
    pub allow_partial: bool,
    pub pack_as_bytes: bool,
}

#[derive(Debug)]
pub struct MetadataGate {
    pub filter: String,
    pub key: String,
    pub value: StringMatch,
    pub invert: bool,
}

#[derive(Debug)]
pub struct ExtAuthzCfg {
    /// `grpc_service.envoy_grpc.cluster_name`.
    pub cluster: String,
    /// The `:authority` of the call (`envoy_grpc.authority`, else the cluster name).
    pub authority: String,
    /// `grpc_service.timeout` (default 200 ms).
    pub timeout: Duration,
    /// `grpc_service.initial_metadata`: headers of every call.
    pub metadata: Vec<(http::HeaderName, http::HeaderValue)>,
    pub failure_mode_allow: bool,
    pub failure_mode_allow_header_add: bool,
    /// `status_on_error` (default 403).
    pub status_on_error: u16,
    pub filter_enabled: Option<Percent>,
    pub filter_enabled_metadata: Option<MetadataGate>,
    /// Deny (403) when the filter is disabled by its runtime fraction or metadata.
    pub deny_at_disable: bool,
    /// `with_request_body`.
    pub body: Option<BodySettings>,
    /// `include_peer_certificate`: the client's certificate in `source.certificate`.
    pub include_peer_certificate: bool,
    /// `http_service`: the check is an HTTP request (none: gRPC).
    pub http: Option<Box<HttpCfg>>,
    /// `stat_prefix`: `http.<hcm>.ext_authz.<stat_prefix>.*`.
    pub stat_prefix: String,
}

/// `ExtAuthzPerRoute`.
#[derive(Debug)]
pub enum PerRoute {
    Disabled(bool),
    /// `check_settings`: `context_extensions` sorted by key, and
    /// `disable_request_body_buffering`.
    Check {
        extensions: Vec<(String, String)>,
        no_body: bool,
    },
}

impl ExtAuthzCfg {
    pub fn from_any(any: &Any, path: &str) -> Result<ExtAuthzCfg> {
        let c: pb::ExtAuthz = any_to(any, path)?;
        if c.clear_route_cache {
            return err(
                &format!("{path}.clear_route_cache"),
                "clear_route_cache is not supported by Ferry yet",
            );
        }
        let g = match &c.services {
            Some(pb::ext_authz::Services::GrpcService(g)) => g,
            Some(pb::ext_authz::Services::HttpService(h)) => {
                return http_service(c.clone(), h, path);
            }
            None => return err(path, "grpc_service or http_service is required"),
        };
        let gp = format!("{path}.grpc_service");
        let Some(TargetSpecifier::EnvoyGrpc(eg)) = &g.target_specifier else {
            return err(&format!("{gp}.envoy_grpc"), "envoy_grpc is required");
        };
        if eg.cluster_name.is_empty() {
            return err(
                &format!("{gp}.envoy_grpc.cluster_name"),
                "cluster_name is required",
            );
        }
        let timeout = super::super::opt_duration(&g.timeout, &format!("{gp}.timeout"))?
            .unwrap_or(Duration::from_millis(200));
        let status_on_error = match &c.status_on_error {
            Some(s) if s.code != 0 => u16::try_from(s.code)
                .ok()
                .filter(|c| (200..600).contains(c))
                .unwrap_or(403),
            _ => 403,
        };
        let filter_enabled = c
            .filter_enabled
            .as_ref()
            .map(|r| Percent::from_proto(&r.default_value, &format!("{path}.filter_enabled")))
            .transpose()?;
        let filter_enabled_metadata = c
            .filter_enabled_metadata
            .as_ref()
            .map(|m| gate(m, &format!("{path}.filter_enabled_metadata")))
            .transpose()?;
        let mut metadata = Vec::new();
        for (i, h) in g.initial_metadata.iter().enumerate() {
            match (
                http::HeaderName::from_bytes(h.key.as_bytes()),
                http::HeaderValue::from_str(&h.value),
            ) {
                (Ok(n), Ok(v)) => metadata.push((n, v)),
                _ => {
                    return err(
                        &format!("{gp}.initial_metadata[{i}]"),
                        "invalid header name or value",
                    )
                }
            }
        }
        Ok(ExtAuthzCfg {
            metadata,
            cluster: eg.cluster_name.clone(),
            authority: if eg.authority.is_empty() {
                eg.cluster_name.clone()
            } else {
                eg.authority.clone()
            },
            timeout,
            failure_mode_allow: c.failure_mode_allow,
            failure_mode_allow_header_add: c.failure_mode_allow_header_add,
            status_on_error,
            filter_enabled,
            filter_enabled_metadata,
            deny_at_disable: c
                .deny_at_disable
                .as_ref()
                .and_then(|d| d.default_value.as_ref())
                .is_some_and(|b| b.value),
            body: body_settings(&c),
            include_peer_certificate: c.include_peer_certificate,
            http: None,
            stat_prefix: c.stat_prefix.clone(),
        })
    }
}

fn body_settings(c: &pb::ExtAuthz) -> Option<BodySettings> {
    c.with_request_body.as_ref().map(|b| BodySettings {
        max: b.max_request_bytes as usize,
        allow_partial: b.allow_partial_message,
        pack_as_bytes: b.pack_as_bytes,
    })
}

fn matchers(
    l: &Option<envoy_types::pb::envoy::r#type::matcher::v3::ListStringMatcher>,
    path: &str,
) -> Result<Option<Vec<StringMatch>>> {
    l.as_ref()
        .map(|l| {
            l.patterns
                .iter()
                .enumerate()
                .map(|(i, m)| StringMatch::from_proto(m, &format!("{path}.patterns[{i}]")))
                .collect()
        })
        .transpose()
}

/// `http_service`: the cluster and timeout of `server_uri`, the rest of the filter as for gRPC.
#[allow(deprecated)] // authorization_request.allowed_headers is what Istio writes
fn http_service(mut c: pb::ExtAuthz, h: &pb::HttpService, path: &str) -> Result<ExtAuthzCfg> {
    use envoy_types::pb::envoy::config::core::v3::http_uri::HttpUpstreamType;
    let hp = format!("{path}.http_service");
    let Some(uri) = &h.server_uri else {
        return err(&format!("{hp}.server_uri"), "server_uri is required");
    };
    let Some(HttpUpstreamType::Cluster(cluster)) = &uri.http_upstream_type else {
        return err(&format!("{hp}.server_uri.cluster"), "cluster is required");
    };
    super::super::opt_duration(&uri.timeout, &format!("{hp}.server_uri.timeout"))?;
    let mut headers_to_add = Vec::new();
    let mut allowed_headers = Vec::new();
    if let Some(r) = &h.authorization_request {
        let rp = format!("{hp}.authorization_request");
        allowed_headers =
            matchers(&r.allowed_headers, &format!("{rp}.allowed_headers"))?.unwrap_or_default();
        for (i, hv) in r.headers_to_add.iter().enumerate() {
            let n = http::HeaderName::from_bytes(hv.key.as_bytes());
            let v = http::HeaderValue::from_str(&hv.value);
            match (n, v) {
                (Ok(n), Ok(v)) => headers_to_add.push((n, v)),
                _ => {
                    return err(
                        &format!("{rp}.headers_to_add[{i}]"),
                        "invalid header name or value",
                    )
                }
            }
        }
    }
    let rp = format!("{hp}.authorization_response");
    let r = h.authorization_response.clone().unwrap_or_default();
    let http = HttpCfg {
        path_prefix: h.path_prefix.clone(),
        allowed_headers,
        headers_to_add,
        upstream: matchers(
            &r.allowed_upstream_headers,
            &format!("{rp}.allowed_upstream_headers"),
        )?
        .unwrap_or_default(),
        upstream_append: matchers(
            &r.allowed_upstream_headers_to_append,
            &format!("{rp}.allowed_upstream_headers_to_append"),
        )?
        .unwrap_or_default(),
        client: matchers(
            &r.allowed_client_headers,
            &format!("{rp}.allowed_client_headers"),
        )?,
        client_on_success: matchers(
            &r.allowed_client_headers_on_success,
            &format!("{rp}.allowed_client_headers_on_success"),
        )?
        .unwrap_or_default(),
    };
    // The rest reads as for gRPC: borrow that path with this cluster and timeout.
    c.services = Some(pb::ext_authz::Services::GrpcService(
        envoy_types::pb::envoy::config::core::v3::GrpcService {
            target_specifier: Some(TargetSpecifier::EnvoyGrpc(
                envoy_types::pb::envoy::config::core::v3::grpc_service::EnvoyGrpc {
                    cluster_name: cluster.clone(),
                    ..Default::default()
                },
            )),
            timeout: uri.timeout,
            ..Default::default()
        },
    ));
    let any = Any {
        type_url: format!("type.googleapis.com/{TYPE}"),
        value: prost::Message::encode_to_vec(&c),
    };
    let mut cfg = ExtAuthzCfg::from_any(&any, path)?;
    cfg.http = Some(Box::new(http));
    Ok(cfg)
}

fn gate(
    m: &envoy_types::pb::envoy::r#type::matcher::v3::MetadataMatcher,
    path: &str,
) -> Result<MetadataGate> {
    use envoy_types::pb::envoy::r#type::matcher::v3::{
        metadata_matcher::path_segment::Segment, value_matcher::MatchPattern,
    };
    let [seg] = m.path.as_slice() else {
        return err(&format!("{path}.path"), "Ferry supports a path of one key");
    };
    let Some(Segment::Key(key)) = &seg.segment else {
        return err(&format!("{path}.path[0].key"), "key is required");
    };
    let Some(MatchPattern::StringMatch(s)) =
        m.value.as_ref().and_then(|v| v.match_pattern.as_ref())
    else {
        return err(
            &format!("{path}.value"),
            "Ferry supports a string_match value here",
        );
    };
    Ok(MetadataGate {
        filter: m.filter.clone(),
        key: key.clone(),
        value: StringMatch::from_proto(s, &format!("{path}.value.string_match"))?,
        invert: m.invert,
    })
}

impl PerRoute {
    pub fn from_any(any: &Any, path: &str) -> Result<PerRoute> {
        let c: pb::ExtAuthzPerRoute = any_to(any, path)?;
        match c.r#override {
            Some(pb::ext_authz_per_route::Override::Disabled(d)) => Ok(PerRoute::Disabled(d)),
            Some(pb::ext_authz_per_route::Override::CheckSettings(s)) => {
                let mut extensions: Vec<(String, String)> =
                    s.context_extensions.into_iter().collect();
                extensions.sort();
                Ok(PerRoute::Check {
                    extensions,
                    no_body: s.disable_request_body_buffering,
                })
            }
            None => err(path, "disabled or check_settings is required"),
        }
    }
}

/// `http.<prefix>.ext_authz.[<stat_prefix>.]*`.
#[derive(Debug)]
pub struct ExtAuthzStats {
    pub ok: crate::stats::Counter,
    pub denied: crate::stats::Counter,
    pub error: crate::stats::Counter,
    pub disabled: crate::stats::Counter,
    pub failure_mode_allowed: crate::stats::Counter,
}

impl ExtAuthzStats {
    pub fn new(hcm_prefix: &str, stat_prefix: &str) -> ExtAuthzStats {
        let r = crate::stats::registry();
        let c = |n: &str| {
            let name = if stat_prefix.is_empty() {
                format!("ext_authz.{n}")
            } else {
                format!("ext_authz.{stat_prefix}.{n}")
            };
            r.counter(crate::stats::Scope::Http(hcm_prefix), &name)
        };
        ExtAuthzStats {
            ok: c("ok"),
            denied: c("denied"),
            error: c("error"),
            disabled: c("disabled"),
            failure_mode_allowed: c("failure_mode_allowed"),
        }
    }
}
