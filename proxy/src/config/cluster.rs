//! Clusters: STATIC, STRICT_DNS and LOGICAL_DNS with their load assignment and upstream HTTP
//! protocol options.

use super::listener::socket_address;
mod endpoints;
pub mod health;
mod lb;
pub mod limits;
pub mod outlier;
mod protocol;
pub use endpoints::{endpoints, Assignment};
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

/// One configured endpoint; DNS clusters resolve `host` at run time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointCfg {
    pub host: String,
    pub port: u16,
    /// Set for STATIC and EDS endpoints.
    pub addr: Option<SocketAddr>,
    /// A Unix domain socket endpoint (`pipe`), e.g. the control plane's socket.
    pub pipe: Option<std::path::PathBuf>,
    /// `Endpoint.hostname`, or for DNS clusters the name resolved.
    pub hostname: String,
    pub health: EdsHealth,
    /// `load_balancing_weight` (default 1).
    pub weight: u32,
    /// The priority of its locality (0 is the highest).
    pub priority: u32,
    pub locality: Locality,
    /// `envoy.lb` metadata `hash_key`: the key on a hash ring instead of the address.
    pub hash_key: Option<String>,
    /// Its locality's `load_balancing_weight` (locality-weighted balancing).
    pub locality_weight: Option<u32>,
}

impl Default for EndpointCfg {
    /// An endpoint made on demand (ORIGINAL_DST): healthy, weight 1, priority 0.
    fn default() -> Self {
        EndpointCfg {
            host: String::new(),
            port: 0,
            addr: None,
            pipe: None,
            hostname: String::new(),
            health: EdsHealth::Unknown,
            weight: 1,
            priority: 0,
            locality: Locality::default(),
            hash_key: None,
            locality_weight: None,
        }
    }
}

/// `LbEndpoint.health_status` (`core.v3.HealthStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EdsHealth {
    Unknown = 0,
    Healthy = 1,
    Unhealthy = 2,
    Draining = 3,
    Timeout = 4,
    Degraded = 5,
}

impl EdsHealth {
    pub fn from_u8(v: u8) -> EdsHealth {
        match v {
            1 => EdsHealth::Healthy,
            2 => EdsHealth::Unhealthy,
            3 => EdsHealth::Draining,
            4 => EdsHealth::Timeout,
            5 => EdsHealth::Degraded,
            _ => EdsHealth::Unknown,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            EdsHealth::Unknown => "UNKNOWN",
            EdsHealth::Healthy => "HEALTHY",
            EdsHealth::Unhealthy => "UNHEALTHY",
            EdsHealth::Draining => "DRAINING",
            EdsHealth::Timeout => "TIMEOUT",
            EdsHealth::Degraded => "DEGRADED",
        }
    }
}

/// Where an endpoint runs (`core.v3.Locality`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Locality {
    pub region: String,
    pub zone: String,
    pub sub_zone: String,
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

/// `slow_start_config`: a host's weight ramps up over `window` after it joins (or passes a
/// health check again): `weight × max(min_weight, (t / window)^(1 / aggression))`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SlowStart {
    pub window: Duration,
    pub aggression: f64,
    /// `min_weight_percent` as a fraction (default 0.1).
    pub min_weight: f64,
}

impl SlowStart {
    /// The weight factor `elapsed` after the host joined.
    pub fn factor(&self, elapsed: Duration) -> f64 {
        if elapsed >= self.window || self.window.is_zero() {
            return 1.0;
        }
        let t = elapsed.as_millis().max(1) as f64 / self.window.as_millis() as f64;
        let ramp = if self.aggression == 1.0 {
            t
        } else {
            t.powf(1.0 / self.aggression)
        };
        ramp.max(self.min_weight)
    }
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
        Ok(Cluster {
            name: c.name.clone(),
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

/// `common_lb_config.zone_aware_lb_config`.
fn zone_aware(c: &pb::Cluster) -> ZoneAware {
    use pb::cluster::common_lb_config::LocalityConfigSpecifier;
    match c
        .common_lb_config
        .as_ref()
        .and_then(|l| l.locality_config_specifier.as_ref())
    {
        Some(LocalityConfigSpecifier::ZoneAwareLbConfig(z)) => ZoneAware {
            routing_enabled: z.routing_enabled.as_ref().map_or(100.0, |p| p.value),
            min_cluster_size: z.min_cluster_size.map_or(6, |v| v.value),
            fail_traffic_on_panic: z.fail_traffic_on_panic,
        },
        _ => ZoneAware::default(),
    }
}

/// `upstream_connection_options`: TCP keepalive.
fn keepalive(c: &pb::Cluster, path: &str) -> Result<Option<Keepalive>> {
    let Some(o) = &c.upstream_connection_options else {
        return Ok(None);
    };
    let op = format!("{path}.upstream_connection_options");
    if o.happy_eyeballs_config.is_some() {
        return err(
            &format!("{op}.happy_eyeballs_config"),
            "happy eyeballs is not supported by Ferry",
        );
    }
    let Some(k) = &o.tcp_keepalive else {
        return Ok(None);
    };
    let secs = |v: Option<u32>| {
        v.filter(|s| *s > 0)
            .map(|s| Duration::from_secs(u64::from(s)))
    };
    Ok(Some(Keepalive {
        probes: k.keepalive_probes.map(|v| v.value),
        time: secs(k.keepalive_time.map(|v| v.value)),
        interval: secs(k.keepalive_interval.map(|v| v.value)),
    }))
}

/// `common_lb_config.locality_weighted_lb_config` (not with consistent hashing, whose tables
/// would weigh localities differently).
fn locality_weighted(c: &pb::Cluster, lb: LbPolicy, path: &str) -> Result<bool> {
    let on = c
        .common_lb_config
        .as_ref()
        .and_then(|l| l.locality_config_specifier.as_ref())
        .is_some_and(|s| {
            matches!(
                s,
                pb::cluster::common_lb_config::LocalityConfigSpecifier::LocalityWeightedLbConfig(_)
            )
        });
    if on && lb.hashes() {
        return err(
            &format!("{path}.common_lb_config.locality_weighted_lb_config"),
            "locality-weighted RING_HASH and MAGLEV are not supported by Ferry yet",
        );
    }
    Ok(on)
}

/// `common_lb_config.healthy_panic_threshold` (default 50%).
fn panic_threshold(c: &pb::Cluster, path: &str) -> Result<f64> {
    let Some(t) = c
        .common_lb_config
        .as_ref()
        .and_then(|l| l.healthy_panic_threshold)
    else {
        return Ok(50.0);
    };
    if !(0.0..=100.0).contains(&t.value) {
        return err(
            &format!("{path}.common_lb_config.healthy_panic_threshold.value"),
            "value must be between 0 and 100",
        );
    }
    Ok(t.value)
}

fn bind_config(
    b: &envoy_types::pb::envoy::config::core::v3::BindConfig,
    path: &str,
) -> Result<BindCfg> {
    let Some(sa) = &b.source_address else {
        return err(
            &format!("{path}.source_address"),
            "source_address is required",
        );
    };
    let wrapped = Some(envoy_types::pb::envoy::config::core::v3::Address {
        address: Some(AddrKind::SocketAddress(sa.clone())),
    });
    let source =
        socket_address(&wrapped, &format!("{path}.source_address")).map_err(|e| ConfigError {
            path: e
                .path
                .replace(".source_address.socket_address", ".source_address"),
            msg: e.msg,
        })?;
    Ok(BindCfg {
        source,
        freebind: b.freebind.is_some_and(|f| f.value),
    })
}
