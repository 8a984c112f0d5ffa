//! The endpoints of a load assignment: addresses or pipes, weights and health, checked once.

use super::super::listener::socket_address;
use super::super::{err, ConfigError, Result};
use super::socket_match::{labels, Labels};
use super::Discovery;
use envoy_types::pb::envoy::config::core::v3::{
    address::Address as AddrKind, socket_address::PortSpecifier,
};
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use std::net::SocketAddr;

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
    /// Its `envoy.transport_socket_match` metadata, and its locality's.
    pub socket_labels: Option<Labels>,
    pub locality_socket_labels: Option<Labels>,
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
            socket_labels: None,
            locality_socket_labels: None,
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

/// A load assignment's endpoints and policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    pub endpoints: Vec<EndpointCfg>,
    /// `policy.overprovisioning_factor` (percent, default 140).
    pub overprovisioning: u32,
}

/// The endpoints of a load assignment (a cluster's own, or an EDS resource at `lp`).
pub fn endpoints(la: &ClusterLoadAssignment, discovery: Discovery, lp: &str) -> Result<Assignment> {
    let mut overprovisioning = 140;
    if let Some(p) = &la.policy {
        if let Some(o) = p.overprovisioning_factor {
            if o.value == 0 {
                return err(
                    &format!("{lp}.policy.overprovisioning_factor"),
                    "value must be greater than 0",
                );
            }
            overprovisioning = o.value;
        }
        if p.weighted_priority_health {
            return err(
                &format!("{lp}.policy.weighted_priority_health"),
                "weighted_priority_health is not supported by Ferry yet",
            );
        }
    }
    let mut out = Vec::new();
    for (li, loc) in la.endpoints.iter().enumerate() {
        let locp = format!("{lp}.endpoints[{li}]");
        let locality = loc
            .locality
            .as_ref()
            .map(|l| Locality {
                region: l.region.clone(),
                zone: l.zone.clone(),
                sub_zone: l.sub_zone.clone(),
            })
            .unwrap_or_default();
        let locality_labels = labels(loc.metadata.as_ref());
        for (ei, lbe) in loc.lb_endpoints.iter().enumerate() {
            let ep = format!("{locp}.lb_endpoints[{ei}]");
            let weight = lbe.load_balancing_weight.as_ref().map_or(1, |w| w.value);
            let hash_key = hash_key(lbe);
            if weight == 0 {
                return err(
                    &format!("{ep}.load_balancing_weight"),
                    "value must be greater than or equal to 1",
                );
            }
            let Some(
                envoy_types::pb::envoy::config::endpoint::v3::lb_endpoint::HostIdentifier::Endpoint(
                    e,
                ),
            ) = &lbe.host_identifier
            else {
                return err(&format!("{ep}.endpoint"), "endpoint is required");
            };
            let ap = format!("{ep}.endpoint.address");
            if let Some(envoy_types::pb::envoy::config::core::v3::Address {
                address: Some(AddrKind::Pipe(p)),
            }) = &e.address
            {
                out.push(EndpointCfg {
                    host: p.path.clone(),
                    port: 0,
                    addr: None,
                    pipe: Some(p.path.clone().into()),
                    hostname: e.hostname.clone(),
                    health: EdsHealth::from_u8(lbe.health_status.clamp(0, 5) as u8),
                    weight,
                    priority: loc.priority,
                    locality: locality.clone(),
                    hash_key: hash_key.clone(),
                    locality_weight: loc.load_balancing_weight.map(|w| w.value),
                    socket_labels: labels(lbe.metadata.as_ref()),
                    locality_socket_labels: locality_labels.clone(),
                });
                continue;
            }
            let (host, port) = match &e.address {
                Some(envoy_types::pb::envoy::config::core::v3::Address {
                    address: Some(AddrKind::SocketAddress(s)),
                }) => {
                    let port = match &s.port_specifier {
                        Some(PortSpecifier::PortValue(p)) => {
                            u16::try_from(*p).map_err(|_| ConfigError {
                                path: format!("{ap}.socket_address.port_value"),
                                msg: format!("port {p} out of range"),
                            })?
                        }
                        _ => {
                            return err(
                                &format!("{ap}.socket_address.port_value"),
                                "port_value is required",
                            )
                        }
                    };
                    (s.address.clone(), port)
                }
                _ => return err(&ap, "a socket_address is required"),
            };
            let addr = match discovery {
                Discovery::Static | Discovery::Eds => Some(socket_address(&e.address, &ap)?),
                _ => None,
            };
            let dns = matches!(discovery, Discovery::StrictDns | Discovery::LogicalDns);
            let hostname = if e.hostname.is_empty() && dns {
                host.clone()
            } else {
                e.hostname.clone()
            };
            out.push(EndpointCfg {
                host,
                port,
                addr,
                pipe: None,
                hostname,
                health: EdsHealth::from_u8(lbe.health_status.clamp(0, 5) as u8),
                weight,
                priority: loc.priority,
                locality: locality.clone(),
                hash_key,
                locality_weight: loc.load_balancing_weight.map(|w| w.value),
                socket_labels: labels(lbe.metadata.as_ref()),
                locality_socket_labels: locality_labels.clone(),
            });
        }
    }
    Ok(Assignment {
        endpoints: out,
        overprovisioning,
    })
}

/// `metadata.filter_metadata["envoy.lb"].hash_key`: the endpoint's key on a hash ring (a
/// non-empty string; anything else is ignored, as Envoy does).
fn hash_key(lbe: &envoy_types::pb::envoy::config::endpoint::v3::LbEndpoint) -> Option<String> {
    use envoy_types::pb::google::protobuf::value::Kind;
    let v = lbe
        .metadata
        .as_ref()?
        .filter_metadata
        .get("envoy.lb")?
        .fields
        .get("hash_key")?;
    match &v.kind {
        Some(Kind::StringValue(s)) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}
