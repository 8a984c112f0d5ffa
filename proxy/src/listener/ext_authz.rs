//! `envoy.filters.network.ext_authz`: the authorization service decides each connection once
//! it is known (its TLS peer included); a denial or an error closes it. Istio gates it, as for
//! HTTP, on the network RBAC shadow engine's policy id.

use crate::config::filters::ext_authz::{ExtAuthzCfg, NetExtAuthzStats};
use crate::config::filters::network::NetFilter;
use crate::http::filters::ext_authz_grpc::{call, socket, Verdict};
use envoy_types::pb::envoy::config::core::v3::Metadata;
use envoy_types::pb::envoy::service::auth::v3::{
    attribute_context, AttributeContext, CheckRequest,
};
use std::net::SocketAddr;

const RBAC_NAMESPACE: &str = "envoy.filters.network.rbac";

/// Runs the chain's ext_authz filters; `false`: close the connection.
pub async fn admit(
    server: &crate::snapshot::Server,
    filters: &[NetFilter],
    local: SocketAddr,
    remote: SocketAddr,
    peer: Option<&crate::io::Peer>,
    local_uri: Option<&str>,
) -> bool {
    let subject = crate::http::filters::rbac::Subject::connection(local, remote, peer);
    // The network RBAC shadow engines' metadata.
    let mut metadata: Vec<(String, String)> = Vec::new();
    for f in filters {
        if let NetFilter::Rbac(cfg, _) = f {
            if let Some(e) = &cfg.shadow {
                let (allowed, policy) = subject.verdict(e);
                if let Some(p) = policy {
                    metadata.push((
                        format!("{}shadow_effective_policy_id", cfg.shadow_prefix),
                        p.into(),
                    ));
                }
                metadata.push((
                    format!("{}shadow_engine_result", cfg.shadow_prefix),
                    if allowed { "allowed" } else { "denied" }.into(),
                ));
            }
        }
    }
    for f in filters {
        if let NetFilter::ExtAuthz(cfg, st) = f {
            if !check(server, cfg, st, &metadata, local, remote, peer, local_uri).await {
                return false;
            }
        }
    }
    true
}

#[allow(clippy::too_many_arguments)]
async fn check(
    server: &crate::snapshot::Server,
    cfg: &ExtAuthzCfg,
    st: &NetExtAuthzStats,
    metadata: &[(String, String)],
    local: SocketAddr,
    remote: SocketAddr,
    peer: Option<&crate::io::Peer>,
    local_uri: Option<&str>,
) -> bool {
    if let Some(g) = &cfg.filter_enabled_metadata {
        let v = (g.filter == RBAC_NAMESPACE)
            .then(|| {
                metadata
                    .iter()
                    .find(|(k, _)| *k == g.key)
                    .map(|(_, v)| v.as_str())
            })
            .flatten();
        if v.is_some_and(|v| g.value.matches(v)) == g.invert {
            st.disabled.inc();
            return true;
        }
    }
    st.total.inc();
    let _active = crate::stats::ActiveGuard::new(&st.active);
    let req = CheckRequest {
        attributes: Some(AttributeContext {
            source: Some(attribute_context::Peer {
                address: Some(socket(remote)),
                principal: peer
                    .and_then(|p| p.uris.first().cloned())
                    .unwrap_or_default(),
                certificate: crate::http::filters::ext_authz_grpc::peer_certificate(
                    peer,
                    cfg.include_peer_certificate,
                ),
                ..Default::default()
            }),
            destination: Some(attribute_context::Peer {
                address: Some(socket(local)),
                principal: local_uri.unwrap_or_default().to_string(),
                ..Default::default()
            }),
            metadata_context: Some(Metadata::default()),
            ..Default::default()
        }),
    };
    match call(cfg, server, req).await {
        Verdict::Ok(_) => {
            st.ok.inc();
            true
        }
        Verdict::Denied(_) => {
            st.denied.inc();
            st.cx_closed.inc();
            false
        }
        Verdict::Error(_) => {
            st.error.inc();
            if cfg.failure_mode_allow {
                st.failure_mode_allowed.inc();
                return true;
            }
            st.cx_closed.inc();
            false
        }
    }
}
