//! Listeners and filter chains, and Envoy's filter-chain selection as a pure function.

pub use super::cidr::Cidr;
use super::hcm::HttpConnMgr;
pub use super::listener_filters::Inspectors;
use super::tcp_proxy::TcpProxy;
use super::{any_to, err, type_name, ConfigError, Result};
use envoy_types::pb::envoy::config::core::v3::{address::Address as AddrKind, Address, CidrRange};
use envoy_types::pb::envoy::config::listener::v3 as pb;
use envoy_types::pb::envoy::config::listener::v3::filter::ConfigType;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

#[derive(Debug)]
pub struct Listener {
    pub name: String,
    pub address: SocketAddr,
    /// `additional_addresses`: more sockets for the same listener (Istio's dual-stack IPv4 and
    /// IPv6 listeners).
    pub additional: Vec<SocketAddr>,
    pub chains: Vec<FilterChain>,
    pub default_chain: Option<FilterChain>,
    pub inbound: bool,
    /// `traffic_direction: OUTBOUND` (its requests' spans are CLIENT spans).
    pub outbound: bool,
    /// Listener filters: what to inspect before choosing a filter chain.
    pub inspectors: Inspectors,
    /// `use_original_dst`: a redirected connection goes to the listener of its original
    /// destination (implies the `original_dst` listener filter).
    pub use_original_dst: bool,
    /// `bind_to_port: false`: no socket of its own; it only takes connections handed off by a
    /// `use_original_dst` listener.
    pub bind_to_port: bool,
    /// `transparent`: IP_TRANSPARENT, for TPROXY capture (the local address is the original
    /// destination).
    pub transparent: bool,
    /// `freebind`: IP_FREEBIND, to bind an address not (yet) configured on the host.
    pub freebind: bool,
    /// Logged for connections that match no filter chain.
    pub access_logs: crate::access_log::AccessLogs,
    /// `ignore_global_conn_limit`: its connections are not counted against the global limit.
    pub ignore_global_conn_limit: bool,
    /// `bypass_overload_manager`: no overload action applies to its connections.
    pub bypass_overload: bool,
    /// `per_connection_buffer_limit_bytes` (Envoy's default 1 MiB): how much of a request body
    /// is kept for retries and mirrors when the route does not say.
    pub buffer_limit: u32,
}

#[derive(Debug)]
pub struct FilterChain {
    pub name: String,
    pub matcher: ChainMatch,
    pub filter: NetworkFilter,
    /// The network filters before the terminal one, in order.
    pub network: Vec<super::filters::network::NetFilter>,
    /// The chain's TLS transport socket (none: plaintext).
    pub tls: Option<Arc<crate::tls::server::ServerTls>>,
}

#[derive(Debug, Clone)]
pub enum NetworkFilter {
    TcpProxy(Arc<TcpProxy>),
    Http(Arc<HttpConnMgr>),
}

#[derive(Debug, Default)]
pub struct ChainMatch {
    pub destination_port: Option<u16>,
    pub prefix_ranges: Vec<Cidr>,
    pub server_names: Vec<String>,
    pub transport_protocol: Option<String>,
    pub application_protocols: Vec<String>,
    pub direct_source_prefix_ranges: Vec<Cidr>,
    /// 0 any, 1 local (same host), 2 external
    pub source_type: i32,
    pub source_prefix_ranges: Vec<Cidr>,
    pub source_ports: Vec<u16>,
}

/// What is known about a connection when its filter chain is chosen.
pub struct ConnInfo<'a> {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub server_name: &'a str,
    pub transport_protocol: &'a str,
    pub application_protocols: &'a [String],
}

pub fn socket_address(a: &Option<Address>, path: &str) -> Result<SocketAddr> {
    let Some(Address {
        address: Some(kind),
    }) = a
    else {
        return err(path, "address is required");
    };
    match kind {
        AddrKind::SocketAddress(s) => {
            let sp = format!("{path}.socket_address");
            let ip: IpAddr = s.address.parse().map_err(|_| ConfigError {
                path: format!("{sp}.address"),
                msg: format!("malformed IP address: {}", s.address),
            })?;
            let port = match &s.port_specifier {
                Some(envoy_types::pb::envoy::config::core::v3::socket_address::PortSpecifier::PortValue(p)) => {
                    u16::try_from(*p).map_err(|_| ConfigError { path: format!("{sp}.port_value"), msg: format!("port {p} out of range") })?
                }
                Some(_) => return err(&format!("{sp}.named_port"), "named ports are not supported by Ferry"),
                None => 0,
            };
            if s.protocol != 0 {
                return err(&format!("{sp}.protocol"), "only TCP is supported by Ferry");
            }
            Ok(SocketAddr::new(ip, port))
        }
        _ => err(path, "only socket_address is supported by Ferry here"),
    }
}

impl Listener {
    pub fn from_proto(l: &pb::Listener, path: &str) -> Result<Listener> {
        if l.name.is_empty() {
            return err(&format!("{path}.name"), "listener name is required");
        }
        let address = socket_address(&l.address, &format!("{path}.address"))?;
        let additional = l
            .additional_addresses
            .iter()
            .enumerate()
            .map(|(i, a)| {
                socket_address(
                    &a.address,
                    &format!("{path}.additional_addresses[{i}].address"),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let chains = l
            .filter_chains
            .iter()
            .enumerate()
            .map(|(i, c)| FilterChain::from_proto(c, &format!("{path}.filter_chains[{i}]")))
            .collect::<Result<Vec<_>>>()?;
        let default_chain = l
            .default_filter_chain
            .as_ref()
            .map(|c| FilterChain::from_proto(c, &format!("{path}.default_filter_chain")))
            .transpose()?;
        if chains.is_empty() && default_chain.is_none() {
            return err(
                &format!("{path}.filter_chains"),
                "no filter chains specified",
            );
        }
        let mut inspectors = Inspectors::from_proto(l, path)?;
        let use_original_dst = l.use_original_dst.is_some_and(|b| b.value);
        inspectors.original_dst |= use_original_dst;
        Ok(Listener {
            name: l.name.clone(),
            address,
            additional,
            chains,
            default_chain,
            inbound: l.traffic_direction == 1,
            outbound: l.traffic_direction == 2,
            inspectors,
            use_original_dst,
            bind_to_port: l.bind_to_port.is_none_or(|b| b.value),
            transparent: l.transparent.is_some_and(|b| b.value),
            freebind: l.freebind.is_some_and(|b| b.value),
            ignore_global_conn_limit: l.ignore_global_conn_limit,
            bypass_overload: l.bypass_overload_manager,
            buffer_limit: l
                .per_connection_buffer_limit_bytes
                .as_ref()
                .map_or(1 << 20, |v| v.value),
            access_logs: crate::access_log::AccessLog::list(
                &l.access_log,
                &format!("{path}.access_log"),
            )?,
        })
    }

    /// Envoy's selection order: destination port, destination IP, server name, transport
    /// protocol, application protocols, direct source IP, source type, source IP, source port.
    /// At each step the most specific matching criterion wins and the others drop out.
    pub fn select(&self, c: &ConnInfo<'_>) -> Option<&FilterChain> {
        let mut cand: Vec<&FilterChain> = self.chains.iter().collect();
        narrow(&mut cand, |m| {
            m.destination_port
                .map(|p| (p == c.local.port()).then_some(1))
        });
        narrow(&mut cand, |m| prefix_score(&m.prefix_ranges, c.local.ip()));
        narrow(&mut cand, |m| name_score(&m.server_names, c.server_name));
        narrow(&mut cand, |m| {
            m.transport_protocol
                .as_ref()
                .map(|t| (t == c.transport_protocol).then_some(1))
        });
        // The client's first protocol that some chain lists picks the chains (Envoy walks
        // the client's list in order).
        let offered = c.application_protocols;
        narrow(&mut cand, |m| {
            (!m.application_protocols.is_empty()).then(|| {
                offered
                    .iter()
                    .position(|a| m.application_protocols.contains(a))
                    .map(|i| (offered.len() - i) as u32)
            })
        });
        narrow(&mut cand, |m| {
            prefix_score(&m.direct_source_prefix_ranges, c.remote.ip())
        });
        narrow(&mut cand, |m| {
            (m.source_type != 0).then(|| {
                let local = c.remote.ip().is_loopback() || c.remote.ip() == c.local.ip();
                ((m.source_type == 1) == local).then_some(1)
            })
        });
        narrow(&mut cand, |m| {
            prefix_score(&m.source_prefix_ranges, c.remote.ip())
        });
        narrow(&mut cand, |m| {
            (!m.source_ports.is_empty())
                .then(|| m.source_ports.contains(&c.remote.port()).then_some(1))
        });
        cand.first().copied().or(self.default_chain.as_ref())
    }
}

impl Listener {
    /// Whether the chain a connection to `local` from `remote` gets could depend on what the
    /// inspectors find (SNI, transport protocol, ALPN): the chains left after destination port
    /// and IP selection look at one of those.
    pub fn depends_on_inspection(&self, local: SocketAddr) -> bool {
        let mut cand: Vec<&FilterChain> = self.chains.iter().collect();
        narrow(&mut cand, |m| {
            m.destination_port.map(|p| (p == local.port()).then_some(1))
        });
        narrow(&mut cand, |m| prefix_score(&m.prefix_ranges, local.ip()));
        cand.iter().any(|c| {
            let m = &c.matcher;
            !m.server_names.is_empty()
                || m.transport_protocol.is_some()
                || !m.application_protocols.is_empty()
        })
    }
}

/// Keeps the candidates whose criterion matches most specifically; a candidate without the
/// criterion (`None`) is kept only when no candidate with it matched.
fn narrow(cand: &mut Vec<&FilterChain>, score: impl Fn(&ChainMatch) -> Option<Option<u32>>) {
    let scored: Vec<Option<Option<u32>>> = cand.iter().map(|c| score(&c.matcher)).collect();
    let best = scored.iter().filter_map(|s| s.flatten()).max();
    let keep: Vec<bool> = match best {
        Some(b) => scored.iter().map(|s| *s == Some(Some(b))).collect(),
        None => scored.iter().map(|s| s.is_none()).collect(),
    };
    let mut i = 0;
    cand.retain(|_| {
        let k = keep[i];
        i += 1;
        k
    });
}

/// Longest matching prefix length + 1 (so that /0 still beats "unspecified").
fn prefix_score(ranges: &[Cidr], ip: IpAddr) -> Option<Option<u32>> {
    if ranges.is_empty() {
        return None;
    }
    Some(
        ranges
            .iter()
            .filter(|r| r.contains(ip))
            .map(|r| u32::from(r.len) + 1)
            .max(),
    )
}

/// Exact names beat wildcards (`*.example.com`), longer wildcards beat shorter ones.
fn name_score(names: &[String], sni: &str) -> Option<Option<u32>> {
    if names.is_empty() {
        return None;
    }
    let sni = sni.to_ascii_lowercase();
    Some(
        names
            .iter()
            .filter_map(|n| {
                if *n == sni {
                    Some(10_000)
                } else if let Some(suffix) = n.strip_prefix('*') {
                    (sni.len() > suffix.len() && sni.ends_with(suffix))
                        .then_some(suffix.len() as u32)
                } else {
                    None
                }
            })
            .max(),
    )
}

impl FilterChain {
    fn from_proto(c: &pb::FilterChain, path: &str) -> Result<FilterChain> {
        let matcher = match &c.filter_chain_match {
            None => ChainMatch::default(),
            Some(m) => ChainMatch::from_proto(m, &format!("{path}.filter_chain_match"))?,
        };
        let mut terminal: Option<NetworkFilter> = None;
        let mut network = Vec::new();
        for (i, f) in c.filters.iter().enumerate() {
            let fp = format!("{path}.filters[{i}]");
            if terminal.is_some() {
                return err(&fp, "a terminal filter must be the last in the chain");
            }
            let Some(ConfigType::TypedConfig(any)) = &f.config_type else {
                return err(&fp, "typed_config is required");
            };
            let tp = format!("{fp}.typed_config");
            terminal = Some(match type_name(any) {
                "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy" => {
                    NetworkFilter::TcpProxy(Arc::new(TcpProxy::from_proto(&any_to(any, &tp)?, &tp)?))
                }
                "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager" => {
                    NetworkFilter::Http(Arc::new(HttpConnMgr::from_proto(&any_to(any, &tp)?, &tp)?))
                }
                _ => {
                    network.push(super::filters::network::net_filter(any, &tp)?);
                    continue;
                }
            });
        }
        let Some(filter) = terminal else {
            return err(
                &format!("{path}.filters"),
                "a filter chain needs a terminal filter (tcp_proxy or http_connection_manager)",
            );
        };
        let tp = format!("{path}.transport_socket");
        let tls =
            super::tls::transport_socket_any(&c.transport_socket, &tp, super::tls::DOWNSTREAM)?
                .map(|any| super::tls::DownstreamTls::from_any(any, &format!("{tp}.typed_config")))
                .transpose()?
                .map(|t| Arc::new(crate::tls::server::ServerTls::new(t)));
        Ok(FilterChain {
            name: c.name.clone(),
            matcher,
            filter,
            network,
            tls,
        })
    }
}

impl ChainMatch {
    fn from_proto(m: &pb::FilterChainMatch, path: &str) -> Result<ChainMatch> {
        let cidrs = |v: &[CidrRange], f: &str| -> Result<Vec<Cidr>> {
            v.iter()
                .enumerate()
                .map(|(i, c)| Cidr::from_proto(c, &format!("{path}.{f}[{i}]")))
                .collect()
        };
        let port = |p: u32, f: &str| -> Result<u16> {
            u16::try_from(p)
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| ConfigError {
                    path: format!("{path}.{f}"),
                    msg: format!("port {p} out of range"),
                })
        };
        Ok(ChainMatch {
            destination_port: m
                .destination_port
                .as_ref()
                .map(|p| port(p.value, "destination_port"))
                .transpose()?,
            prefix_ranges: cidrs(&m.prefix_ranges, "prefix_ranges")?,
            server_names: m
                .server_names
                .iter()
                .map(|s| s.to_ascii_lowercase())
                .collect(),
            transport_protocol: Some(m.transport_protocol.clone()).filter(|t| !t.is_empty()),
            application_protocols: m.application_protocols.clone(),
            direct_source_prefix_ranges: cidrs(
                &m.direct_source_prefix_ranges,
                "direct_source_prefix_ranges",
            )?,
            source_type: m.source_type,
            source_prefix_ranges: cidrs(&m.source_prefix_ranges, "source_prefix_ranges")?,
            source_ports: m
                .source_ports
                .iter()
                .map(|p| port(*p, "source_ports"))
                .collect::<Result<_>>()?,
        })
    }
}
