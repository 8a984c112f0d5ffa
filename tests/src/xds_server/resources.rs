//! Builders for the xDS resources the tests push, each returned as
//! `(name, Any)` ready for [`super::XdsServer::set`].

use envoy_types::pb::envoy::config::cluster::v3::{cluster, Cluster};
use envoy_types::pb::envoy::config::core::v3::{
    address, config_source, socket_address, Address, AggregatedConfigSource, ApiVersion,
    ConfigSource, SocketAddress,
};
use envoy_types::pb::envoy::config::endpoint::v3::{
    lb_endpoint, ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints,
};
use envoy_types::pb::envoy::config::listener::v3::{filter, Filter, FilterChain, Listener};
use envoy_types::pb::envoy::config::route::v3::{
    route, route_action, route_match, Route, RouteAction, RouteConfiguration, RouteMatch,
    VirtualHost,
};
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_connection_manager::RouteSpecifier, http_filter, HttpConnectionManager, HttpFilter, Rds,
};
use envoy_types::pb::google::protobuf::{Any, Duration};
use prost::{Message, Name};

/// Packs a message into an `Any` with its canonical type URL.
pub fn any<T: Message + Name>(msg: &T) -> Any {
    Any {
        type_url: T::type_url(),
        value: msg.encode_to_vec(),
    }
}

/// An arbitrary (possibly invalid) resource: `name` with `msg` packed.
pub fn raw<T: Message + Name>(name: &str, msg: &T) -> (String, Any) {
    (name.to_string(), any(msg))
}

/// `{ ads: {}, resource_api_version: V3 }`.
pub fn ads_source() -> ConfigSource {
    ConfigSource {
        config_source_specifier: Some(config_source::ConfigSourceSpecifier::Ads(
            AggregatedConfigSource {},
        )),
        resource_api_version: ApiVersion::V3 as i32,
        ..Default::default()
    }
}

pub fn socket(ip: &str, port: u16) -> Address {
    Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: ip.to_string(),
            port_specifier: Some(socket_address::PortSpecifier::PortValue(u32::from(port))),
            ..Default::default()
        })),
    }
}

/// Where a listener's HTTP connection manager gets its routes.
pub enum Routes {
    /// RDS over ADS with this route configuration name.
    Rds(String),
    /// An inline route configuration.
    Inline(Box<RouteConfiguration>),
}

/// An HTTP listener on `port` whose one route sends everything to `cluster`.
pub fn listener_to(name: &str, port: u16, cluster: &str) -> (String, Any) {
    let routes = route_config_msg("local", &["*"], &[("/", cluster)]);
    listener_http(name, port, Routes::Inline(Box::new(routes)), name)
}

/// An HTTP listener on 127.0.0.1:`port` (HCM with the router filter).
pub fn listener_http(name: &str, port: u16, routes: Routes, stat_prefix: &str) -> (String, Any) {
    let route_specifier = match routes {
        Routes::Rds(route_config_name) => RouteSpecifier::Rds(Rds {
            config_source: Some(ads_source()),
            route_config_name,
        }),
        Routes::Inline(rc) => RouteSpecifier::RouteConfig(*rc),
    };
    let hcm = HttpConnectionManager {
        stat_prefix: stat_prefix.to_string(),
        route_specifier: Some(route_specifier),
        http_filters: vec![HttpFilter {
            name: "envoy.filters.http.router".to_string(),
            config_type: Some(http_filter::ConfigType::TypedConfig(
                any(&Router::default()),
            )),
            ..Default::default()
        }],
        ..Default::default()
    };
    let listener = Listener {
        name: name.to_string(),
        address: Some(socket("127.0.0.1", port)),
        filter_chains: vec![FilterChain {
            filters: vec![Filter {
                name: "envoy.filters.network.http_connection_manager".to_string(),
                config_type: Some(filter::ConfigType::TypedConfig(any(&hcm))),
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    raw(name, &listener)
}

/// A route configuration with one virtual host for `domains` and
/// `(prefix, cluster)` routes.
pub fn route_config_msg(
    name: &str,
    domains: &[&str],
    routes: &[(&str, &str)],
) -> RouteConfiguration {
    RouteConfiguration {
        name: name.to_string(),
        virtual_hosts: vec![VirtualHost {
            name: format!("{name}_vhost"),
            domains: domains.iter().map(|d| d.to_string()).collect(),
            routes: routes
                .iter()
                .map(|(prefix, cluster)| Route {
                    r#match: Some(RouteMatch {
                        path_specifier: Some(route_match::PathSpecifier::Prefix(
                            prefix.to_string(),
                        )),
                        ..Default::default()
                    }),
                    action: Some(route::Action::Route(RouteAction {
                        cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(
                            cluster.to_string(),
                        )),
                        ..Default::default()
                    })),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

pub fn route_config(name: &str, domains: &[&str], routes: &[(&str, &str)]) -> (String, Any) {
    raw(name, &route_config_msg(name, domains, routes))
}

/// An EDS cluster (endpoints over ADS), connect_timeout 1 s, round robin.
pub fn eds_cluster_msg(name: &str) -> Cluster {
    Cluster {
        name: name.to_string(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Eds as i32,
        )),
        eds_cluster_config: Some(cluster::EdsClusterConfig {
            eds_config: Some(ads_source()),
            service_name: String::new(),
        }),
        connect_timeout: Some(Duration {
            seconds: 1,
            nanos: 0,
        }),
        ..Default::default()
    }
}

pub fn eds_cluster(name: &str) -> (String, Any) {
    raw(name, &eds_cluster_msg(name))
}

/// An EDS cluster with `connect_timeout: -1s`, which fails validation
/// (`connect_timeout` must be greater than 0s).
pub fn invalid_cluster(name: &str) -> (String, Any) {
    let mut c = eds_cluster_msg(name);
    c.connect_timeout = Some(Duration {
        seconds: -1,
        nanos: 0,
    });
    raw(name, &c)
}

/// Endpoints for `cluster`: one locality with each 127.0.0.1:`port`.
pub fn cla(cluster: &str, ports: &[u16]) -> (String, Any) {
    let msg = ClusterLoadAssignment {
        cluster_name: cluster.to_string(),
        endpoints: vec![LocalityLbEndpoints {
            lb_endpoints: ports
                .iter()
                .map(|p| LbEndpoint {
                    host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
                        address: Some(socket("127.0.0.1", *p)),
                        ..Default::default()
                    })),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    };
    raw(cluster, &msg)
}

/// A STATIC cluster with one endpoint `ip:port`. With a host name instead
/// of an IP it passes proto validation but cannot be created (Envoy:
/// "malformed IP address").
pub fn static_cluster(name: &str, ip: &str, port: u16) -> (String, Any) {
    let mut c = eds_cluster_msg(name);
    c.cluster_discovery_type = Some(cluster::ClusterDiscoveryType::Type(
        cluster::DiscoveryType::Static as i32,
    ));
    c.eds_cluster_config = None;
    c.load_assignment = Some(ClusterLoadAssignment {
        cluster_name: name.to_string(),
        endpoints: vec![LocalityLbEndpoints {
            lb_endpoints: vec![LbEndpoint {
                host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
                    address: Some(socket(ip, port)),
                    ..Default::default()
                })),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    });
    raw(name, &c)
}

/// SDS: a `tls_certificate` secret with the PEM chain and key inline.
pub fn secret_cert(name: &str, chain: &str, key: &str) -> (String, Any) {
    use envoy_types::pb::envoy::config::core::v3::{data_source::Specifier, DataSource};
    use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
        secret, Secret, TlsCertificate,
    };
    let inline = |s: &str| {
        Some(DataSource {
            specifier: Some(Specifier::InlineString(s.to_string())),
            ..Default::default()
        })
    };
    let s = Secret {
        name: name.to_string(),
        r#type: Some(secret::Type::TlsCertificate(TlsCertificate {
            certificate_chain: inline(chain),
            private_key: inline(key),
            ..Default::default()
        })),
    };
    raw(name, &s)
}

/// SDS: a `validation_context` secret trusting the PEM CA bundle.
pub fn secret_ca(name: &str, ca: &str) -> (String, Any) {
    use envoy_types::pb::envoy::config::core::v3::{data_source::Specifier, DataSource};
    use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
        secret, CertificateValidationContext, Secret,
    };
    let s = Secret {
        name: name.to_string(),
        r#type: Some(secret::Type::ValidationContext(
            CertificateValidationContext {
                trusted_ca: Some(DataSource {
                    specifier: Some(Specifier::InlineString(ca.to_string())),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )),
    };
    raw(name, &s)
}

/// A listener (as `listener_http` makes it) whose filter chain terminates mTLS with the
/// certificate and CA secrets named, both over ADS, a client certificate required.
pub fn with_mtls(listener: (String, Any), cert: &str, ca: &str) -> (String, Any) {
    use envoy_types::pb::envoy::config::core::v3::{transport_socket, TransportSocket};
    use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
        common_tls_context::ValidationContextType, CommonTlsContext, DownstreamTlsContext,
        SdsSecretConfig,
    };
    let (name, any_l) = listener;
    let mut l = Listener::decode(any_l.value.as_slice()).expect("listener");
    let sds = |n: &str| SdsSecretConfig {
        name: n.to_string(),
        sds_config: Some(ads_source()),
    };
    let ctx = DownstreamTlsContext {
        require_client_certificate: Some(envoy_types::pb::google::protobuf::BoolValue {
            value: true,
        }),
        common_tls_context: Some(CommonTlsContext {
            tls_certificate_sds_secret_configs: vec![sds(cert)],
            validation_context_type: Some(ValidationContextType::ValidationContextSdsSecretConfig(
                sds(ca),
            )),
            ..Default::default()
        }),
        ..Default::default()
    };
    for c in &mut l.filter_chains {
        c.transport_socket = Some(TransportSocket {
            name: "envoy.transport_sockets.tls".to_string(),
            config_type: Some(transport_socket::ConfigType::TypedConfig(any(&ctx))),
        });
    }
    raw(&name, &l)
}

/// A resource written as Envoy YAML (proto3 JSON mapping, `typed_config` by `@type`), named.
pub fn from_yaml<T: Message + Name>(yaml: &str) -> Any {
    let desc = ferry::config::load::descriptor(&T::full_name());
    let msg = ferry::config::load::from_yaml(yaml.as_bytes(), &desc, false)
        .unwrap_or_else(|e| panic!("{} from YAML: {e}\n{yaml}", T::full_name()));
    Any {
        type_url: T::type_url(),
        value: msg.encode_to_vec(),
    }
}
