//! The endpoints of a load assignment: addresses or pipes, weights and health, checked once.

use super::super::listener::socket_address;
use super::super::{err, ConfigError, Result};
use super::{Discovery, EndpointCfg};
use envoy_types::pb::envoy::config::core::v3::{
    address::Address as AddrKind, socket_address::PortSpecifier,
};
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;

/// The endpoints of a load assignment (a cluster's own, or an EDS resource at `lp`).
pub fn endpoints(
    la: &ClusterLoadAssignment,
    discovery: Discovery,
    lp: &str,
) -> Result<Vec<EndpointCfg>> {
    let mut out = Vec::new();
    for (li, loc) in la.endpoints.iter().enumerate() {
        let locp = format!("{lp}.endpoints[{li}]");
        if loc.priority != 0 {
            return err(
                &format!("{locp}.priority"),
                "priorities other than 0 are not supported yet",
            );
        }
        for (ei, lbe) in loc.lb_endpoints.iter().enumerate() {
            let ep = format!("{locp}.lb_endpoints[{ei}]");
            let weight = lbe.load_balancing_weight.as_ref().map_or(1, |w| w.value);
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
                    healthy: true,
                    weight,
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
            // UNHEALTHY (2), DRAINING (3) and TIMEOUT (4) endpoints take no traffic.
            let healthy = !matches!(lbe.health_status, 2..=4);
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
                healthy,
                weight,
            });
        }
    }
    Ok(out)
}
