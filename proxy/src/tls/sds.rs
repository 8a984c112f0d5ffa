//! Where SDS secrets come from at run time: the names each TLS context uses, the ADS
//! subscription to them, and one `StreamSecrets` stream per separate SDS server (Istio's
//! `sds-grpc` cluster on a Unix socket serving `default` and `ROOTCA`).

use super::secrets::store;
use crate::config::cluster::Cluster;
use crate::config::listener::Listener;
use crate::config::tls::{CommonTls, SdsRef, SdsSource, Secret, Source, ValidationSource};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3 as pb;
use envoy_types::pb::google::protobuf::Any;
use ferry_xds::ads::{self, AdsHandle, Handler};
use prost::Message;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, OnceLock};

fn refs(c: &CommonTls) -> impl Iterator<Item = &SdsRef> {
    let certs = c.certificates.iter().filter_map(|s| match s {
        Source::Sds(r) => Some(r),
        Source::Inline(_) => None,
    });
    let validation = match &c.validation {
        Some(ValidationSource::Sds(r)) | Some(ValidationSource::Combined { sds: r, .. }) => Some(r),
        _ => None,
    };
    certs.chain(validation)
}

/// The SDS secrets a listener's filter chains name.
pub fn listener_refs(l: &Listener) -> Vec<SdsRef> {
    l.chains
        .iter()
        .chain(l.default_chain.iter())
        .filter_map(|c| c.tls.as_ref())
        .flat_map(|t| refs(&t.cfg.common).cloned().collect::<Vec<_>>())
        .collect()
}

/// The SDS secrets a cluster's TLS context names.
pub fn cluster_refs(c: &Cluster) -> Vec<SdsRef> {
    c.tls_contexts()
        .flat_map(|t| refs(&t.common).cloned().collect::<Vec<_>>())
        .collect()
}

/// Whether every secret a listener names has arrived (a listener waits for them: warming).
pub fn listener_ready(l: &Listener) -> bool {
    listener_refs(l)
        .iter()
        .all(|r| store().slot(&r.name).get().is_some())
}

/// Checks and converts the secrets of a response and stores the good ones; the error names the
/// bad ones.
pub fn apply(version: &str, resources: &[Any]) -> Result<(), String> {
    let mut errors = Vec::new();
    for any in resources {
        if any.type_url != ads::SECRET {
            errors.push(format!("Secret: unexpected type {}", any.type_url));
            continue;
        }
        let Ok(s) = pb::Secret::decode(any.value.as_slice()) else {
            errors.push("Secret: cannot decode".to_string());
            continue;
        };
        let checked = crate::config::support::decode_any(ads::SECRET, &any.value, "")
            .and_then(|d| crate::config::support::check(&d, "").map(|_| ()))
            .and_then(|()| Secret::from_proto(&s, ""));
        match checked {
            Ok(secret) => store().set(&s.name, Some(secret), version),
            Err(e) => errors.push(format!("Secret '{}': {e}", s.name)),
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

/// A separate SDS server's stream: applies secrets as they come.
struct SdsHandler;

impl Handler for SdsHandler {
    fn apply(&self, type_url: &str, version: &str, resources: Vec<Any>) -> Result<(), String> {
        if type_url != ads::SECRET {
            return Err(format!(
                "resource type {type_url} is not expected on an SDS stream"
            ));
        }
        let r = apply(version, &resources);
        if let Some(hook) = SECRETS_HOOK.get() {
            hook();
        }
        r
    }
}

type Hook = Box<dyn Fn() + Send + Sync>;
static SECRETS_HOOK: OnceLock<Hook> = OnceLock::new();

/// What runs after secrets arrive from an SDS server (the xDS state re-runs its listeners).
pub fn on_secrets(hook: Hook) {
    let _ = SECRETS_HOOK.set(hook);
}

/// The streams to separate SDS servers, by cluster, with the names each is asked for.
#[derive(Default)]
pub struct SdsClients {
    streams: Mutex<BTreeMap<String, (AdsHandle, BTreeSet<String>)>>,
}

pub fn clients() -> &'static SdsClients {
    static CLIENTS: OnceLock<SdsClients> = OnceLock::new();
    CLIENTS.get_or_init(SdsClients::default)
}

impl SdsClients {
    /// Makes sure the secrets `refs` name are asked for: API-sourced ones on their SDS server's
    /// stream (started on first use), ADS-sourced ones through `ads` (the names returned).
    pub fn want(&self, server: &crate::snapshot::Server, refs: &[SdsRef]) -> BTreeSet<String> {
        let mut from_ads = BTreeSet::new();
        let mut streams = self.streams.lock().unwrap_or_else(|p| p.into_inner());
        for r in refs {
            match &r.source {
                SdsSource::Static => {}
                SdsSource::Ads => {
                    from_ads.insert(r.name.clone());
                }
                SdsSource::Api { cluster } => {
                    if !streams.contains_key(cluster) {
                        match start(server, cluster) {
                            Some(h) => {
                                streams.insert(cluster.clone(), (h, BTreeSet::new()));
                            }
                            None => continue,
                        }
                    }
                    if let Some((h, names)) = streams.get_mut(cluster) {
                        if names.insert(r.name.clone()) {
                            h.subscribe(ads::SECRET, names.clone());
                        }
                    }
                }
            }
        }
        from_ads
    }
}

fn start(server: &crate::snapshot::Server, cluster: &str) -> Option<AdsHandle> {
    let target = match crate::config::bootstrap::xds_target(&server.bootstrap.clusters, cluster) {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!("SDS cluster '{cluster}': {e}");
            return None;
        }
    };
    let cfg = ads::AdsConfig {
        target,
        node: crate::xds::node(server),
        node_on_first_only: false,
        delta: false,
        sds: true,
        wildcard: Vec::new(),
        backoff_base: std::time::Duration::from_millis(500),
        backoff_max: std::time::Duration::from_secs(30),
        connect_timeout: std::time::Duration::from_secs(5),
    };
    Some(ads::spawn(cfg, Arc::new(SdsHandler)))
}
