//! The whole validated bootstrap: node, admin, static listeners and clusters.

use super::cluster::Cluster;
use super::hcm::RouteSource;
use super::listener::{socket_address, Listener, NetworkFilter};
use super::support::{self, Ignored};
use super::{err, load, Result};
use envoy_types::pb::envoy::config::bootstrap::v3 as pb;
use prost_reflect::DynamicMessage;
use std::collections::HashSet;
use std::net::SocketAddr;

#[derive(Debug, Clone, Default)]
pub struct Node {
    pub id: String,
    pub cluster: String,
    pub zone: String,
    /// Where this proxy runs (zone-aware routing prefers upstreams in it).
    pub locality: super::cluster::Locality,
}

#[derive(Debug)]
pub struct Bootstrap {
    pub node: Node,
    pub admin: Option<SocketAddr>,
    /// `admin.access_log` (and the deprecated `admin.access_log_path`).
    pub admin_access_logs: crate::access_log::AccessLogs,
    /// `admin.ignore_global_conn_limit`.
    pub admin_ignore_conn_limit: bool,
    pub listeners: Vec<std::sync::Arc<Listener>>,
    pub dynamic: Option<super::xds::Dynamic>,
    /// Where the ADS stream goes, from the static cluster `dynamic.cluster` names.
    pub xds_target: Option<ferry_xds::ads::Target>,
    pub clusters: Vec<Cluster>,
    /// `cluster_manager.local_cluster_name`: the cluster of this proxy's own service, whose
    /// spread over localities drives zone-aware routing.
    pub local_cluster: Option<String>,
    /// `tracing.http`: the tracer of connection managers that name none.
    pub tracer: Option<super::trace::Tracer>,
    /// `cluster_manager.outlier_detection.event_log_path`.
    pub outlier_event_log: Option<String>,
    /// `static_resources.secrets`, by name.
    pub secrets: Vec<(String, super::tls::Secret)>,
    /// Tuning-only fields that were set and are not acted on.
    pub ignored: Vec<Ignored>,
    /// `application_log_config.log_format`: Ferry's own log lines.
    pub log_format: Option<crate::logfmt::LogFormat>,
    /// `overload_manager` (none: Ferry's default, see [`super::overload::Overload::implicit`]).
    pub overload: Option<super::overload::Overload>,
    /// `stats_config`: tag extraction and which stats exist.
    pub stats: std::sync::Arc<crate::stats::StatsSettings>,
    /// `stats_sinks` and `stats_flush_interval`.
    pub sinks: super::sinks::Sinks,
    /// The bootstrap as given (encoded, so that it holds no descriptor pool), for
    /// `/config_dump`, `/server_info` and the node sent to the control plane.
    pub raw: Vec<u8>,
}

impl Bootstrap {
    /// The bootstrap as a dynamic message (decoded again from its encoding).
    pub fn raw_message(&self) -> DynamicMessage {
        let desc = super::load::descriptor(super::load::BOOTSTRAP);
        DynamicMessage::decode(desc.clone(), self.raw.as_slice())
            .unwrap_or_else(|_| DynamicMessage::new(desc))
    }

    /// Checks every set field against what Ferry supports, then converts.
    pub fn from_dynamic(mut raw: DynamicMessage) -> Result<Bootstrap> {
        super::typed_struct::normalize(&mut raw, "")?;
        let ignored = support::check(&raw, "")?;
        let b: pb::Bootstrap = load::to_typed(&raw)?;
        // Istio's telemetry names this proxy's workload from the node metadata.
        if let Some(n) = &b.node {
            crate::istio::set_local(&n.id, n.metadata.as_ref());
        }
        let node = b.node.as_ref().map(|n| Node {
            id: n.id.clone(),
            cluster: n.cluster.clone(),
            zone: n
                .locality
                .as_ref()
                .map(|l| l.zone.clone())
                .unwrap_or_default(),
            locality: n
                .locality
                .as_ref()
                .map(|l| super::cluster::Locality {
                    region: l.region.clone(),
                    zone: l.zone.clone(),
                    sub_zone: l.sub_zone.clone(),
                })
                .unwrap_or_default(),
        });
        let log_format = super::server::log_format(&b.application_log_config)?;
        let stats = std::sync::Arc::new(super::stats::settings(&b.stats_config)?);
        super::server::extensions(&b.bootstrap_extensions)?;
        let overload = b
            .overload_manager
            .as_ref()
            .map(super::overload::Overload::from_proto)
            .transpose()?;
        let admin = match &b.admin {
            Some(a) if a.address.is_some() => Some(socket_address(&a.address, "admin.address")?),
            _ => None,
        };
        let admin_access_logs = admin_logs(b.admin.as_ref())?;
        let sinks = super::sinks::sinks(&b)?;
        let sr = b.static_resources.unwrap_or_default();
        let mut secrets = Vec::with_capacity(sr.secrets.len());
        for (i, sec) in sr.secrets.iter().enumerate() {
            let path = format!("static_resources.secrets[{i}]");
            if sec.name.is_empty() {
                return err(&format!("{path}.name"), "a secret name is required");
            }
            secrets.push((
                sec.name.clone(),
                super::tls::Secret::from_proto(sec, &path)?,
            ));
        }
        let static_names: HashSet<&str> = secrets.iter().map(|(n, _)| n.as_str()).collect();
        let mut clusters = Vec::with_capacity(sr.clusters.len());
        let mut cluster_names = HashSet::new();
        for (i, c) in sr.clusters.iter().enumerate() {
            let path = format!("static_resources.clusters[{i}]");
            if !cluster_names.insert(c.name.clone()) {
                return err(
                    &format!("{path}.name"),
                    format!("cluster manager: duplicate cluster '{}' found", c.name),
                );
            }
            let cluster = Cluster::from_proto(c, &path)?;
            for t in cluster.tls_contexts() {
                check_static_secrets(
                    &t.common,
                    &static_names,
                    &format!("{path}.transport_socket"),
                )?;
            }
            clusters.push(cluster);
        }
        let mut listeners = Vec::with_capacity(sr.listeners.len());
        let mut names = HashSet::new();
        let mut addrs = HashSet::new();
        for (i, l) in sr.listeners.iter().enumerate() {
            let path = format!("static_resources.listeners[{i}]");
            let listener = Listener::from_proto(l, &path)?;
            if !names.insert(listener.name.clone()) {
                // Envoy keeps the first listener of a name and ignores later ones.
                tracing::warn!(
                    "{path}: a listener named '{}' already exists; ignored",
                    listener.name
                );
                continue;
            }
            if listener.address.port() != 0 && !addrs.insert(listener.address) {
                return err(
                    &format!("{path}.address"),
                    format!(
                        "error adding listener '{}': another listener is already bound to {}",
                        listener.name, listener.address
                    ),
                );
            }
            check_route_clusters(&listener, &cluster_names, &path)?;
            for (ci, chain) in listener.chains.iter().enumerate() {
                if let Some(t) = &chain.tls {
                    check_static_secrets(
                        &t.cfg.common,
                        &static_names,
                        &format!("{path}.filter_chains[{ci}].transport_socket"),
                    )?;
                }
            }
            listeners.push(std::sync::Arc::new(listener));
        }
        let dynamic = b
            .dynamic_resources
            .as_ref()
            .map(|d| super::xds::dynamic(d, "dynamic_resources"))
            .transpose()?;
        let xds_target = match &dynamic {
            None => None,
            Some(d) => Some(xds_target(&clusters, &d.cluster)?),
        };
        let local_cluster = b
            .cluster_manager
            .as_ref()
            .map(|m| m.local_cluster_name.clone())
            .filter(|n| !n.is_empty());
        if let Some(name) = &local_cluster {
            if !clusters.iter().any(|c| &c.name == name) {
                return err(
                    "cluster_manager.local_cluster_name",
                    format!("local cluster '{name}' must be defined"),
                );
            }
        }
        #[allow(deprecated)] // the bootstrap's tracer is deprecated, and what Istio renders
        let tracer = match b.tracing.as_ref().and_then(|t| t.http.as_ref()) {
            Some(h) => match &h.config_type {
                Some(envoy_types::pb::envoy::config::trace::v3::tracing::http::ConfigType::TypedConfig(any)) => {
                    let t = super::trace::Tracer::from_any(any, "tracing.http")?;
                    if !clusters.iter().any(|c| c.name == t.collector_cluster()) {
                        return err(
                            "tracing.http.typed_config",
                            format!("{}: unknown cluster '{}'", h.name, t.collector_cluster()),
                        );
                    }
                    Some(t)
                }
                None => return err("tracing.http.typed_config", "typed_config is required"),
            },
            None => None,
        };
        Ok(Bootstrap {
            tracer,
            sinks,
            outlier_event_log: b
                .cluster_manager
                .as_ref()
                .and_then(|m| m.outlier_detection.as_ref())
                .map(|o| o.event_log_path.clone())
                .filter(|p| !p.is_empty()),
            local_cluster,
            secrets,
            node: node.unwrap_or_default(),
            admin,
            admin_access_logs,
            admin_ignore_conn_limit: b.admin.as_ref().is_some_and(|a| a.ignore_global_conn_limit),
            listeners,
            clusters,
            dynamic,
            xds_target,
            ignored,
            log_format,
            stats,
            overload,
            raw: prost::Message::encode_to_vec(&raw),
        })
    }
}

/// A secret named without an `sds_config` must be one of the bootstrap's static secrets.
fn check_static_secrets(
    c: &super::tls::CommonTls,
    names: &HashSet<&str>,
    path: &str,
) -> Result<()> {
    use super::tls::{SdsSource, Source, ValidationSource};
    let mut refs: Vec<&super::tls::SdsRef> = c
        .certificates
        .iter()
        .filter_map(|s| match s {
            Source::Sds(r) => Some(r),
            Source::Inline(_) => None,
        })
        .collect();
    match &c.validation {
        Some(ValidationSource::Sds(r)) | Some(ValidationSource::Combined { sds: r, .. }) => {
            refs.push(r)
        }
        _ => {}
    }
    for r in refs {
        if r.source == SdsSource::Static && !names.contains(r.name.as_str()) {
            return err(path, format!("Unknown static secret: {}", r.name));
        }
    }
    Ok(())
}

/// A static `route_config` validates its clusters by default (`validate_clusters`).
fn check_route_clusters(l: &Listener, clusters: &HashSet<String>, path: &str) -> Result<()> {
    for (ci, chain) in l.chains.iter().chain(l.default_chain.iter()).enumerate() {
        let NetworkFilter::Http(hcm) = &chain.filter else {
            continue;
        };
        let RouteSource::Static(routes) = &hcm.routes else {
            continue;
        };
        if routes.validate_clusters == Some(false) {
            continue;
        }
        for (name, at) in routes.clusters() {
            if !clusters.contains(name) {
                return err(
                    &format!(
                        "{path}.filter_chains[{ci}].filters[0].typed_config.route_config.{at}"
                    ),
                    format!("route: unknown cluster '{name}'"),
                );
            }
        }
    }
    Ok(())
}

/// The control plane's address: the single endpoint of the static cluster ADS names (a socket
/// address, or a Unix socket `pipe` as Istio's sidecar uses).
pub fn xds_target(clusters: &[Cluster], name: &str) -> Result<ferry_xds::ads::Target> {
    let path = "dynamic_resources.ads_config.grpc_services[0].envoy_grpc.cluster_name";
    let Some(c) = clusters.iter().find(|c| c.name == name) else {
        return err(path, format!("unknown static cluster '{name}'"));
    };
    let Some(e) = c.endpoints.first() else {
        return err(path, format!("cluster '{name}' has no endpoint"));
    };
    if let Some(p) = &e.pipe {
        return Ok(ferry_xds::ads::Target::Unix(p.clone()));
    }
    if let Some(a) = e.addr {
        return Ok(ferry_xds::ads::Target::Tcp(a));
    }
    // A DNS cluster: resolved once here.
    use std::net::ToSocketAddrs;
    match (e.host.as_str(), e.port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
    {
        Some(a) => Ok(ferry_xds::ads::Target::Tcp(a)),
        None => err(path, format!("cannot resolve {}:{}", e.host, e.port)),
    }
}

/// The admin interface's access logs: `access_log`, and `access_log_path` as a file logger
/// with the default format.
fn admin_logs(
    a: Option<&envoy_types::pb::envoy::config::bootstrap::v3::Admin>,
) -> Result<crate::access_log::AccessLogs> {
    let Some(a) = a else {
        return Ok(std::sync::Arc::from(Vec::new()));
    };
    let mut logs = a.access_log.clone();
    #[allow(deprecated)]
    if !a.access_log_path.is_empty() {
        let file = envoy_types::pb::envoy::extensions::access_loggers::file::v3::FileAccessLog {
            path: a.access_log_path.clone(),
            access_log_format: None,
        };
        logs.push(envoy_types::pb::envoy::config::accesslog::v3::AccessLog {
            name: "envoy.access_loggers.file".into(),
            filter: None,
            config_type: Some(
                envoy_types::pb::envoy::config::accesslog::v3::access_log::ConfigType::TypedConfig(
                    envoy_types::pb::google::protobuf::Any {
                        type_url: "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog".into(),
                        value: prost::Message::encode_to_vec(&file),
                    },
                ),
            ),
        });
    }
    crate::access_log::AccessLog::list(&logs, "admin.access_log")
}
