//! Clusters: STATIC, STRICT_DNS and LOGICAL_DNS with their load assignment and upstream HTTP
//! protocol options.

mod endpoints;
pub mod health;
mod lb;
pub mod limits;
pub mod outlier;
mod protocol;
pub mod socket_match;
pub use endpoints::{endpoints, Assignment};
pub use endpoints::{EdsHealth, EndpointCfg, Locality};
pub use lb::SlowStart;
mod options;
use options::{bind_config, keepalive, locality_weighted, panic_threshold, zone_aware};
pub use protocol::PoolCfg;

use super::{err, opt_duration, ConfigError, Result};
use envoy_types::pb::envoy::config::cluster::v3 as pb;
use envoy_types::pb::envoy::config::core::v3::address::Address as AddrKind;
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discovery {
    Static,
    StrictDns,
    LogicalDns,
    /// Endpoints from EDS (`ClusterLoadAssignment` named `eds_service_name`).
    Eds,
    /// ORIGINAL_DST: each connection goes to the destination it had before it was captured
    /// (or to the address in a request header), hosts being made on demand.
    OriginalDst,
}

/// `original_dst_lb_config`.
#[derive(Debug, Clone, Default)]
pub struct OriginalDstCfg {
    /// `use_http_header`: the header (default `x-envoy-original-dst-host`) that overrides the
    /// destination of an HTTP request.
    pub header: Option<http::HeaderName>,
    /// `upstream_port_override`.
    pub port: Option<u16>,
}

/// `upstream_connection_options.tcp_keepalive` (unset parts: the system's values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalive {
    pub probes: Option<u32>,
    pub time: Option<Duration>,
    pub interval: Option<Duration>,
}

/// How upstream connections are opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dial {
    pub bind: Option<BindCfg>,
    pub keepalive: Option<Keepalive>,
}

/// `upstream_bind_config`: the local address upstream connections are made from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BindCfg {
    pub source: SocketAddr,
    pub freebind: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamProtocol {
    Http1,
    Http2,
    /// Use the downstream request's protocol.
    Downstream,
    /// `auto_config`: what the TLS handshake's ALPN picks (h2 or HTTP/1.1).
    Auto,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsFamily {
    Auto,
    V4Only,
    V6Only,
    V4Preferred,
    All,
}

/// `lb_policy` (or the typed `load_balancing_policy`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LbPolicy {
    RoundRobin,
    Random,
    /// Equal weights: power of `choices` choices (`choice_count`, default 2). Unequal weights:
    /// an EDF schedule of `weight / (active + 1)^bias` (`active_request_bias`, default 1).
    LeastRequest {
        choices: u32,
        bias: f64,
    },
    /// Consistent hashing on a ring of `min..=max` entries.
    RingHash {
        min: u64,
        max: u64,
        use_hostname: bool,
    },
    /// Consistent hashing on a Maglev table of `table_size` (a prime) entries.
    Maglev {
        table_size: u64,
        use_hostname: bool,
    },
    /// ORIGINAL_DST's own.
    ClusterProvided,
}

impl LbPolicy {
    /// RING_HASH and MAGLEV pick by the request hash.
    pub fn hashes(self) -> bool {
        matches!(self, LbPolicy::RingHash { .. } | LbPolicy::Maglev { .. })
    }
}

#[derive(Debug, Clone)]
pub struct Cluster {
    pub name: String,
    /// The name its stats go by: `alt_stat_name`, or the name.
    pub stat_name: String,
    /// The service Istio says this cluster serves (`metadata.filter_metadata.istio.services[0]`).
    pub istio_service: Option<std::sync::Arc<crate::istio::Service>>,
    /// `filters`: Istio's TCP metadata exchange with the upstream (the only one Ferry has).
    pub metadata_exchange: Option<crate::istio::mx::MxCfg>,
    pub discovery: Discovery,
    pub lb: LbPolicy,
    pub connect_timeout: Duration,
    pub endpoints: Vec<EndpointCfg>,
    pub protocol: UpstreamProtocol,
    pub dns_family: DnsFamily,
    pub dns_refresh: Duration,
    pub idle_timeout: Option<Duration>,
    /// For EDS clusters: the assignment name (`eds_cluster_config.service_name`, else the name).
    pub eds_service_name: String,
    pub original_dst: OriginalDstCfg,
    /// ORIGINAL_DST: how often hosts that carried no traffic are removed (`cleanup_interval`).
    pub cleanup_interval: Duration,
    pub bind: Option<BindCfg>,
    pub keepalive: Option<Keepalive>,
    /// The TLS transport socket (`UpstreamTlsContext`), none: plaintext.
    pub tls: Option<super::tls::UpstreamTls>,
    /// `transport_socket_matches`: per-endpoint transport sockets, `tls` the fallback.
    pub socket_matches: Vec<socket_match::SocketMatch>,
    pub circuit_breakers: limits::CircuitBreakerCfg,
    /// Connection pool limits.
    pub pool: PoolCfg,
    pub outlier: Option<outlier::OutlierCfg>,
    pub health_check: Option<health::HealthCheckCfg>,
    /// The own load assignment's `overprovisioning_factor`.
    pub overprovisioning: u32,
    /// `common_lb_config.healthy_panic_threshold` (percent; 0 disables panic).
    pub panic_threshold: f64,
    /// `common_lb_config.locality_weighted_lb_config`: a locality is picked first, by weight.
    pub locality_weighted: bool,
    pub slow_start: Option<SlowStart>,
    /// `common_lb_config.zone_aware_lb_config` (with Envoy's defaults when unset).
    pub zone_aware: ZoneAware,
}

/// Zone-aware routing (active when the bootstrap names a local cluster).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ZoneAware {
    /// `routing_enabled` (percent, default 100).
    pub routing_enabled: f64,
    /// `min_cluster_size` (default 6).
    pub min_cluster_size: u64,
    pub fail_traffic_on_panic: bool,
}

impl Default for ZoneAware {
    fn default() -> Self {
        ZoneAware {
            routing_enabled: 100.0,
            min_cluster_size: 6,
            fail_traffic_on_panic: false,
        }
    }
}

impl Cluster {
    /// Every TLS context its connections may use: the transport socket's and its matches'.
    pub fn tls_contexts(&self) -> impl Iterator<Item = &super::tls::UpstreamTls> {
        self.tls
            .iter()
            .chain(self.socket_matches.iter().filter_map(|m| m.tls.as_ref()))
    }

    /// How this cluster's upstream connections are opened.
    pub fn dial(&self) -> Dial {
        Dial {
            bind: self.bind,
            keepalive: self.keepalive,
        }
    }

    #[allow(deprecated)] // http2_protocol_options & co. are still what many bootstraps use
    pub fn from_proto(c: &pb::Cluster, path: &str) -> Result<Cluster> {
        if c.name.is_empty() {
            return err(&format!("{path}.name"), "cluster name is required");
        }
        let discovery = match &c.cluster_discovery_type {
            None => Discovery::Static,
            Some(pb::cluster::ClusterDiscoveryType::Type(0)) => Discovery::Static,
            Some(pb::cluster::ClusterDiscoveryType::Type(1)) => Discovery::StrictDns,
            Some(pb::cluster::ClusterDiscoveryType::Type(2)) => Discovery::LogicalDns,
            Some(pb::cluster::ClusterDiscoveryType::Type(3)) => Discovery::Eds,
            Some(pb::cluster::ClusterDiscoveryType::Type(4)) => Discovery::OriginalDst,
            Some(pb::cluster::ClusterDiscoveryType::Type(t)) => {
                let name = pb::cluster::DiscoveryType::try_from(*t)
                    .map(|d| d.as_str_name())
                    .unwrap_or("unknown");
                return err(
                    &format!("{path}.type"),
                    format!("cluster type {name} is not supported yet"),
                );
            }
            Some(_) => {
                return err(
                    &format!("{path}.cluster_type"),
                    "custom cluster types are not supported by Ferry",
                )
            }
        };
        let (lb, slow_start) = lb::lb_policy(c, discovery, path)?;
        if discovery == Discovery::OriginalDst && c.load_assignment.is_some() {
            return err(
                &format!("{path}.load_assignment"),
                "ORIGINAL_DST clusters must have no load assignment configured",
            );
        }
        let connect_timeout = opt_duration(&c.connect_timeout, &format!("{path}.connect_timeout"))?
            .unwrap_or(Duration::from_secs(5));
        if connect_timeout.is_zero() {
            return err(&format!("{path}.connect_timeout"), "must be greater than 0");
        }
        let assignment = match &c.load_assignment {
            Some(la) if discovery != Discovery::Eds => Some(endpoints(
                la,
                discovery,
                &format!("{path}.load_assignment"),
            )?),
            Some(_) => {
                return err(
                    &format!("{path}.load_assignment"),
                    "an EDS cluster takes its endpoints from EDS",
                )
            }
            None => None,
        };
        let overprovisioning = assignment.as_ref().map_or(140, |a| a.overprovisioning);
        let endpoints = assignment.map(|a| a.endpoints).unwrap_or_default();
        if discovery == Discovery::LogicalDns && endpoints.len() != 1 {
            return err(
                &format!("{path}.load_assignment"),
                "LOGICAL_DNS clusters must have a single locality_lb_endpoint and a single lb_endpoint",
            );
        }
        let eds_service_name = match (&c.eds_cluster_config, discovery) {
            (Some(e), Discovery::Eds) => {
                let ep = format!("{path}.eds_cluster_config");
                match &e.eds_config {
                    Some(cs) => super::xds::ads_source(cs, &format!("{ep}.eds_config"))?,
                    None => return err(&format!("{ep}.eds_config"), "eds_config is required"),
                };
                if e.service_name.is_empty() {
                    c.name.clone()
                } else {
                    e.service_name.clone()
                }
            }
            (None, Discovery::Eds) => {
                return err(
                    &format!("{path}.eds_cluster_config"),
                    "an EDS cluster needs eds_cluster_config",
                )
            }
            (Some(_), _) => {
                return err(
                    &format!("{path}.eds_cluster_config"),
                    "only EDS clusters take eds_cluster_config",
                )
            }
            (None, _) => String::new(),
        };
        let pool = protocol::pool(c, path)?;
        let (protocol, idle_timeout) = (pool.protocol, pool.idle_timeout);
        let dns_family = match c.dns_lookup_family {
            1 => DnsFamily::V4Only,
            2 => DnsFamily::V6Only,
            3 => DnsFamily::V4Preferred,
            4 => DnsFamily::All,
            _ => DnsFamily::Auto,
        };
        let dns_refresh = opt_duration(&c.dns_refresh_rate, &format!("{path}.dns_refresh_rate"))?
            .unwrap_or(Duration::from_secs(5));
        let od_cfg = match &c.lb_config {
            Some(pb::cluster::LbConfig::OriginalDstLbConfig(o)) => Some(o),
            _ => None,
        };
        let original_dst = match od_cfg {
            Some(o) if discovery == Discovery::OriginalDst => {
                let op = format!("{path}.original_dst_lb_config");
                if o.metadata_key.is_some() {
                    return err(
                        &format!("{op}.metadata_key"),
                        "metadata_key is not supported by Ferry",
                    );
                }
                let name = if o.http_header_name.is_empty() {
                    "x-envoy-original-dst-host"
                } else {
                    o.http_header_name.as_str()
                };
                let header =
                    o.use_http_header
                        .then(|| {
                            http::HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
                                .map_err(|_| ConfigError {
                                    path: format!("{op}.http_header_name"),
                                    msg: format!("invalid header name {name:?}"),
                                })
                        })
                        .transpose()?;
                let port = o
                    .upstream_port_override
                    .map(|p| {
                        u16::try_from(p.value).map_err(|_| ConfigError {
                            path: format!("{op}.upstream_port_override"),
                            msg: format!("port {} out of range", p.value),
                        })
                    })
                    .transpose()?;
                OriginalDstCfg { header, port }
            }
            Some(_) => {
                return err(
                    &format!("{path}.original_dst_lb_config"),
                    "original_dst_lb_config applies to ORIGINAL_DST clusters only",
                )
            }
            None => OriginalDstCfg::default(),
        };
        let cleanup_interval =
            opt_duration(&c.cleanup_interval, &format!("{path}.cleanup_interval"))?
                .unwrap_or(Duration::from_secs(5));
        let bind = c
            .upstream_bind_config
            .as_ref()
            .map(|b| bind_config(b, &format!("{path}.upstream_bind_config")))
            .transpose()?;
        let tp = format!("{path}.transport_socket");
        let tls = super::tls::transport_socket_any(&c.transport_socket, &tp, super::tls::UPSTREAM)?
            .map(|any| super::tls::UpstreamTls::from_any(any, &format!("{tp}.typed_config")))
            .transpose()?;
        let socket_matches = socket_match::socket_matches(&c.transport_socket_matches, path)?;
        Ok(Cluster {
            name: c.name.clone(),
            metadata_exchange: upstream_filters(&c.filters, path)?,
            istio_service: c
                .metadata
                .as_ref()
                .and_then(|m| m.filter_metadata.get("istio"))
                .and_then(crate::istio::Service::from_metadata)
                .map(std::sync::Arc::new),
            stat_name: if c.alt_stat_name.is_empty() {
                c.name.clone()
            } else {
                c.alt_stat_name.clone()
            },
            discovery,
            lb,
            connect_timeout,
            endpoints,
            protocol,
            dns_family,
            dns_refresh: dns_refresh.max(Duration::from_millis(1)),
            idle_timeout: idle_timeout
                .or(Some(Duration::from_secs(3600)))
                .filter(|d| !d.is_zero()),
            eds_service_name,
            original_dst,
            cleanup_interval: cleanup_interval.max(Duration::from_millis(1)),
            bind,
            keepalive: keepalive(c, path)?,
            tls,
            socket_matches,
            circuit_breakers: limits::circuit_breakers(
                &c.circuit_breakers,
                &format!("{path}.circuit_breakers"),
            )?,
            outlier: outlier::outlier_detection(
                &c.outlier_detection,
                &format!("{path}.outlier_detection"),
            )?,
            pool,
            health_check: health::health_checks(
                &c.health_checks,
                &format!("{path}.health_checks"),
            )?,
            overprovisioning,
            panic_threshold: panic_threshold(c, path)?,
            locality_weighted: locality_weighted(c, lb, path)?,
            slow_start,
            zone_aware: zone_aware(c),
        })
    }
}

/// A cluster's upstream network `filters`: Istio's metadata exchange, or nothing.
fn upstream_filters(
    filters: &[envoy_types::pb::envoy::config::cluster::v3::Filter],
    path: &str,
) -> Result<Option<crate::istio::mx::MxCfg>> {
    let mut mx = None;
    for (i, f) in filters.iter().enumerate() {
        let fp = format!("{path}.filters[{i}]");
        let Some(any) = &f.typed_config else {
            return err(&format!("{fp}.typed_config"), "typed_config is required");
        };
        match super::type_name(any) {
            crate::istio::mx::TYPE => {
                mx = Some(crate::istio::mx::MxCfg::from_any(
                    any,
                    &format!("{fp}.typed_config"),
                )?)
            }
            other => {
                return err(
                    &format!("{fp}.typed_config"),
                    format!("upstream network filter {other} is not supported by Ferry"),
                )
            }
        }
    }
    Ok(mx)
}
