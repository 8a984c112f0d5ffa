//! `envoy.filters.http.ext_authz` over gRPC (`envoy.service.auth.v3.Authorization/Check`
//! on a cluster): Istio's CUSTOM authorization.

use super::super::matcher::StringMatch;
use super::super::{any_to, err, Result};
use super::Percent;
use envoy_types::pb::envoy::config::core::v3::grpc_service::TargetSpecifier;
use envoy_types::pb::envoy::extensions::filters::http::ext_authz::v3 as pb;
use envoy_types::pb::google::protobuf::Any;
use std::time::Duration;

pub const TYPE: &str = "envoy.extensions.filters.http.ext_authz.v3.ExtAuthz";
pub const PER_ROUTE: &str = "envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute";

/// `filter_enabled_metadata`: a string at a path of a filter's dynamic metadata.
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
    pub failure_mode_allow: bool,
    pub failure_mode_allow_header_add: bool,
    /// `status_on_error` (default 403).
    pub status_on_error: u16,
    pub filter_enabled: Option<Percent>,
    pub filter_enabled_metadata: Option<MetadataGate>,
    /// Deny (403) when the filter is disabled by its runtime fraction or metadata.
    pub deny_at_disable: bool,
    pub include_peer_certificate: bool,
    /// `stat_prefix`: `http.<hcm>.ext_authz.<stat_prefix>.*`.
    pub stat_prefix: String,
}

/// `ExtAuthzPerRoute`.
#[derive(Debug)]
pub enum PerRoute {
    Disabled(bool),
    /// `check_settings.context_extensions`, sorted by key.
    ContextExtensions(Vec<(String, String)>),
}

impl ExtAuthzCfg {
    pub fn from_any(any: &Any, path: &str) -> Result<ExtAuthzCfg> {
        let c: pb::ExtAuthz = any_to(any, path)?;
        if c.with_request_body.is_some() {
            return err(
                &format!("{path}.with_request_body"),
                "with_request_body is not supported by Ferry yet",
            );
        }
        if c.clear_route_cache {
            return err(
                &format!("{path}.clear_route_cache"),
                "clear_route_cache is not supported by Ferry yet",
            );
        }
        let Some(pb::ext_authz::Services::GrpcService(g)) = &c.services else {
            return err(
                &format!("{path}.http_service"),
                "ext_authz over HTTP is not supported by Ferry yet (use grpc_service)",
            );
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
        Ok(ExtAuthzCfg {
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
            include_peer_certificate: c.include_peer_certificate,
            stat_prefix: c.stat_prefix.clone(),
        })
    }
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
                if s.disable_request_body_buffering {
                    return err(
                        &format!("{path}.check_settings.disable_request_body_buffering"),
                        "request bodies are not sent by Ferry yet",
                    );
                }
                let mut ext: Vec<(String, String)> = s.context_extensions.into_iter().collect();
                ext.sort();
                Ok(PerRoute::ContextExtensions(ext))
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
