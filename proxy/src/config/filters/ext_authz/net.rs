//! `envoy.filters.network.ext_authz`: the HTTP filter's service call for a connection.

use super::super::super::{any_to, err, Result};
use super::{pb, ExtAuthzCfg, TYPE};
use envoy_types::pb::google::protobuf::Any;

pub const NETWORK: &str = "envoy.extensions.filters.network.ext_authz.v3.ExtAuthz";

/// `envoy.filters.network.ext_authz`: the same service call for a connection.
pub fn network(any: &Any, path: &str) -> Result<ExtAuthzCfg> {
    use envoy_types::pb::envoy::extensions::filters::network::ext_authz::v3::ExtAuthz as Net;
    let n: Net = any_to(any, path)?;
    for (set, field) in [
        (n.include_tls_session, "include_tls_session"),
        (n.send_tls_alert_on_denial, "send_tls_alert_on_denial"),
        (
            !n.metadata_context_namespaces.is_empty(),
            "metadata_context_namespaces",
        ),
        (
            !n.bootstrap_metadata_labels_key.is_empty(),
            "bootstrap_metadata_labels_key",
        ),
    ] {
        if set {
            return err(
                &format!("{path}.{field}"),
                format!("{field} is not supported by Ferry yet"),
            );
        }
    }
    // The HTTP filter's reading of the shared fields.
    let http = pb::ExtAuthz {
        services: n.grpc_service.map(pb::ext_authz::Services::GrpcService),
        failure_mode_allow: n.failure_mode_allow,
        include_peer_certificate: n.include_peer_certificate,
        filter_enabled_metadata: n.filter_enabled_metadata,
        stat_prefix: n.stat_prefix.clone(),
        ..Default::default()
    };
    let any = Any {
        type_url: format!("type.googleapis.com/{TYPE}"),
        value: prost::Message::encode_to_vec(&http),
    };
    let mut cfg = ExtAuthzCfg::from_any(&any, path)?;
    cfg.stat_prefix = n.stat_prefix;
    Ok(cfg)
}

/// `ext_authz.<stat_prefix>.*` of the network filter.
#[derive(Debug)]
pub struct NetExtAuthzStats {
    pub total: crate::stats::Counter,
    pub ok: crate::stats::Counter,
    pub denied: crate::stats::Counter,
    pub error: crate::stats::Counter,
    pub disabled: crate::stats::Counter,
    pub failure_mode_allowed: crate::stats::Counter,
    pub cx_closed: crate::stats::Counter,
    pub active: crate::stats::Gauge,
}

impl NetExtAuthzStats {
    pub fn new(stat_prefix: &str) -> NetExtAuthzStats {
        let r = crate::stats::registry();
        let scope = format!("ext_authz.{stat_prefix}");
        let c = |n: &str| r.counter(crate::stats::Scope::Named(&scope), n);
        NetExtAuthzStats {
            total: c("total"),
            ok: c("ok"),
            denied: c("denied"),
            error: c("error"),
            disabled: c("disabled"),
            failure_mode_allowed: c("failure_mode_allowed"),
            cx_closed: c("cx_closed"),
            active: r.gauge(crate::stats::Scope::Named(&scope), "active"),
        }
    }
}
