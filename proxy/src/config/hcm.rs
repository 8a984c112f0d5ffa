//! `envoy.filters.network.http_connection_manager` with its router.

use super::route::RouteTable;
use super::{any_to, err, opt_duration, type_name, Result};
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3 as pb;
use pb::http_connection_manager::{RouteSpecifier, StripPortMode};
use pb::http_filter::ConfigType;
use std::sync::Arc;
use std::time::Duration;

mod h2;
pub use h2::{H2Limits, DEFAULT_REQUEST_HEADERS_TIMEOUT};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Auto,
    Http1,
    Http2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerHeader {
    Overwrite,
    AppendIfAbsent,
    PassThrough,
}

/// `path_with_escaped_slashes_action`: what `%2F` and `%5C` in a path do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EscapedSlashes {
    Keep,
    Reject,
    Redirect,
    Forward,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Underscores {
    Allow,
    Reject,
    Drop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StripPort {
    None,
    Matching,
    Any,
}

/// Where a connection manager's routes come from.
#[derive(Debug)]
pub enum RouteSource {
    Static(Arc<RouteTable>),
    /// RDS: the route configuration of this name in the current snapshot.
    Rds(String),
}

#[derive(Debug)]
pub struct HttpConnMgr {
    pub stat_prefix: String,
    /// `forward_client_cert_details` and `set_current_client_cert_details`.
    pub xfcc: super::xfcc::Xfcc,
    /// `tracing`: sampling, tags and the tracer (none: no tracing).
    pub tracing: Option<Arc<super::trace::TracingCfg>>,
    /// `http.<prefix>.tracing.*` (every connection manager has them).
    pub tracing_stats: Arc<crate::trace::TracingStats>,
    pub codec: Codec,
    pub routes: RouteSource,
    pub server_name: String,
    pub server_header: ServerHeader,
    pub use_remote_address: bool,
    pub skip_xff_append: bool,
    /// `xff_num_trusted_hops`: how many proxies before this one are trusted to have appended
    /// to x-forwarded-for (which entry is the trusted client address).
    pub xff_trusted_hops: u32,
    pub via: Option<http::HeaderValue>,
    pub generate_request_id: bool,
    pub preserve_external_request_id: bool,
    pub always_set_request_id_in_response: bool,
    pub upgrades: Vec<String>,
    pub request_headers_timeout: Option<Duration>,
    /// `stream_idle_timeout` (Envoy's default 5 minutes; zero: none).
    pub stream_idle_timeout: Option<Duration>,
    /// `common_http_protocol_options.max_stream_duration`.
    pub max_stream_duration: Option<Duration>,
    /// `request_timeout`: the whole request must have arrived by then (zero: none).
    pub request_timeout: Option<Duration>,
    pub idle_timeout: Option<Duration>,
    /// How long a connection drains (after an idle timeout) before it is closed.
    pub drain_timeout: Duration,
    pub max_request_headers_kb: u32,
    pub max_headers_count: u32,
    /// Downstream HTTP/2 limits (`http2_protocol_options`, else Ferry's sidecar defaults).
    pub h2: H2Limits,
    /// `merge_slashes`: runs of `/` in the path become one before routing (off by default,
    /// as in Envoy: some applications give `//` a meaning).
    pub merge_slashes: bool,
    /// `normalize_path`: RFC 3986 normalisation before routing. On unless set to false
    /// (Envoy: off), as Istio configures it: routes and the upstream then read one path.
    pub normalize_path: bool,
    /// `path_with_escaped_slashes_action` (Envoy's default: keep them).
    pub escaped_slashes: EscapedSlashes,
    pub underscores: Underscores,
    pub strip_port: StripPort,
    pub suppress_envoy_headers: bool,
    /// The HTTP filters before the router, in order.
    pub filters: Vec<super::filters::FilterEntry>,
    /// `http_protocol_options.accept_http_10`; otherwise HTTP/1.0 gets 426.
    pub accept_http_10: bool,
    pub default_host_for_http_10: Option<http::HeaderValue>,
    /// `internal_address_config.cidr_ranges`: peers whose requests count as internal.
    pub internal: Vec<super::listener::Cidr>,
    pub access_logs: crate::access_log::AccessLogs,
    /// Istio's stats and metadata exchange filters, when the chain has them.
    pub istio_stats: Option<Arc<crate::istio::stats::IstioStats>>,
    pub peer_metadata: Option<crate::istio::peer::PeerMetadataCfg>,
    pub alpn_override: Option<Arc<crate::istio::alpn::AlpnOverride>>,
}

impl HttpConnMgr {
    /// A stream's info is gathered (for access logs or Istio's metrics).
    pub fn observes_streams(&self) -> bool {
        !self.access_logs.is_empty() || self.istio_stats.is_some() || self.traces()
    }

    /// Requests may be traced: tracing is configured and there is a tracer for it.
    pub fn traces(&self) -> bool {
        self.tracing
            .as_ref()
            .is_some_and(|t| t.provider.is_some() || crate::trace::bootstrap_tracer())
    }
}

fn nonzero(d: Option<Duration>) -> Option<Duration> {
    d.filter(|d| !d.is_zero())
}

impl HttpConnMgr {
    pub fn from_proto(h: &pb::HttpConnectionManager, path: &str) -> Result<HttpConnMgr> {
        if h.stat_prefix.is_empty() {
            return err(&format!("{path}.stat_prefix"), "stat_prefix is required");
        }
        let codec = match h.codec_type {
            0 => Codec::Auto,
            1 => Codec::Http1,
            2 => Codec::Http2,
            _ => {
                return err(
                    &format!("{path}.codec_type"),
                    "HTTP/3 is not supported by Ferry",
                )
            }
        };
        let routes = match &h.route_specifier {
            Some(RouteSpecifier::RouteConfig(rc)) => RouteSource::Static(Arc::new(
                RouteTable::from_proto(rc, &format!("{path}.route_config"))?,
            )),
            Some(RouteSpecifier::Rds(rds)) => {
                let rp = format!("{path}.rds");
                match &rds.config_source {
                    Some(cs) => super::xds::ads_source(cs, &format!("{rp}.config_source"))?,
                    None => {
                        return err(&format!("{rp}.config_source"), "config_source is required")
                    }
                };
                if rds.route_config_name.is_empty() {
                    return err(
                        &format!("{rp}.route_config_name"),
                        "route_config_name is required",
                    );
                }
                RouteSource::Rds(rds.route_config_name.clone())
            }
            _ => {
                return err(
                    path,
                    "route_config or rds is required (scoped routes are not supported yet)",
                )
            }
        };
        let mut suppress_envoy_headers = false;
        let mut filters = Vec::new();
        let n = h.http_filters.len();
        if n == 0 {
            return err(
                &format!("{path}.http_filters"),
                "the router filter is required",
            );
        }
        for (i, f) in h.http_filters.iter().enumerate() {
            let fp = format!("{path}.http_filters[{i}]");
            let any = match &f.config_type {
                Some(ConfigType::TypedConfig(a)) => a,
                _ => return err(&fp, "typed_config is required"),
            };
            let tp = format!("{fp}.typed_config");
            match type_name(any) {
                "envoy.extensions.filters.http.router.v3.Router" => {
                    if i + 1 != n {
                        return err(&fp, "the router must be the last HTTP filter");
                    }
                    let r: Router = any_to(any, &tp)?;
                    suppress_envoy_headers = r.suppress_envoy_headers;
                }
                _ => filters.push(super::filters::http_filter(
                    &f.name,
                    any,
                    &h.stat_prefix,
                    &tp,
                )?),
            }
            if f.is_optional || f.disabled {
                return err(
                    &fp,
                    "optional/disabled HTTP filters are not supported by Ferry",
                );
            }
        }
        let last_is_router = h.http_filters.last().is_some_and(|f| {
            matches!(&f.config_type, Some(ConfigType::TypedConfig(a))
                if type_name(a) == "envoy.extensions.filters.http.router.v3.Router")
        });
        if !last_is_router {
            return err(
                &format!("{path}.http_filters"),
                "the router must be the last HTTP filter",
            );
        }
        let common = h.common_http_protocol_options.unwrap_or_default();
        if common.max_requests_per_connection.is_some() {
            return err(
                &format!("{path}.common_http_protocol_options.max_requests_per_connection"),
                "a downstream request limit per connection is not supported by Ferry yet",
            );
        }
        if common.max_response_headers_kb.is_some() {
            return err(
                &format!("{path}.common_http_protocol_options.max_response_headers_kb"),
                "response header limits apply to upstream connections: set them on the cluster",
            );
        }
        let idle_timeout = match opt_duration(
            &common.idle_timeout,
            &format!("{path}.common_http_protocol_options.idle_timeout"),
        )? {
            None => Some(Duration::from_secs(3600)),
            d => nonzero(d),
        };
        let max_request_headers_kb = h.max_request_headers_kb.as_ref().map_or(60, |v| v.value);
        if !(1..=8192).contains(&max_request_headers_kb) {
            return err(
                &format!("{path}.max_request_headers_kb"),
                "must be in [1, 8192]",
            );
        }
        let via = if h.via.is_empty() {
            None
        } else {
            Some(
                http::HeaderValue::from_str(&h.via).map_err(|_| super::ConfigError {
                    path: format!("{path}.via"),
                    msg: "invalid header value".into(),
                })?,
            )
        };
        Ok(HttpConnMgr {
            tracing: h
                .tracing
                .as_ref()
                .map(|t| super::trace::TracingCfg::from_proto(t, &format!("{path}.tracing")))
                .transpose()?
                .map(Arc::new),
            tracing_stats: Arc::new(crate::trace::TracingStats::new(&h.stat_prefix)),
            xfcc: super::xfcc::Xfcc::from_proto(h, path)?,
            access_logs: crate::access_log::AccessLog::list(
                &h.access_log,
                &format!("{path}.access_log"),
            )?,
            stat_prefix: h.stat_prefix.clone(),
            codec,
            routes,
            server_name: if h.server_name.is_empty() {
                "envoy".into()
            } else {
                h.server_name.clone()
            },
            server_header: match h.server_header_transformation {
                1 => ServerHeader::AppendIfAbsent,
                2 => ServerHeader::PassThrough,
                _ => ServerHeader::Overwrite,
            },
            use_remote_address: h.use_remote_address.as_ref().is_some_and(|b| b.value),
            skip_xff_append: h.skip_xff_append,
            xff_trusted_hops: h.xff_num_trusted_hops,
            via,
            generate_request_id: h.generate_request_id.as_ref().is_none_or(|b| b.value),
            preserve_external_request_id: h.preserve_external_request_id,
            always_set_request_id_in_response: h.always_set_request_id_in_response,
            upgrades: h
                .upgrade_configs
                .iter()
                .filter(|u| u.enabled.as_ref().is_none_or(|b| b.value))
                .map(|u| u.upgrade_type.to_ascii_lowercase())
                .collect(),
            // Ferry's safe default: a client gets 10 s to send its request headers (Envoy:
            // no limit). An explicit `0s` turns it off, as in Envoy.
            request_headers_timeout: match opt_duration(
                &h.request_headers_timeout,
                &format!("{path}.request_headers_timeout"),
            )? {
                None => Some(DEFAULT_REQUEST_HEADERS_TIMEOUT),
                d => nonzero(d),
            },
            idle_timeout,
            stream_idle_timeout: match opt_duration(
                &h.stream_idle_timeout,
                &format!("{path}.stream_idle_timeout"),
            )? {
                None => Some(Duration::from_secs(300)),
                d => nonzero(d),
            },
            request_timeout: nonzero(opt_duration(
                &h.request_timeout,
                &format!("{path}.request_timeout"),
            )?),
            max_stream_duration: nonzero(opt_duration(
                &common.max_stream_duration,
                &format!("{path}.common_http_protocol_options.max_stream_duration"),
            )?),
            drain_timeout: opt_duration(&h.drain_timeout, &format!("{path}.drain_timeout"))?
                .unwrap_or(Duration::from_secs(5)),
            max_request_headers_kb,
            max_headers_count: common.max_headers_count.as_ref().map_or(100, |v| v.value),
            merge_slashes: h.merge_slashes,
            normalize_path: h.normalize_path.as_ref().is_none_or(|b| b.value),
            escaped_slashes: match h.path_with_escaped_slashes_action {
                2 => EscapedSlashes::Reject,
                3 => EscapedSlashes::Redirect,
                4 => EscapedSlashes::Forward,
                _ => EscapedSlashes::Keep,
            },
            h2: H2Limits::from_proto(
                h.http2_protocol_options.as_ref(),
                &format!("{path}.http2_protocol_options"),
            )?,
            underscores: match common.headers_with_underscores_action {
                1 => Underscores::Reject,
                2 => Underscores::Drop,
                _ => Underscores::Allow,
            },
            strip_port: match &h.strip_port_mode {
                Some(StripPortMode::StripAnyHostPort(true)) => StripPort::Any,
                _ if h.strip_matching_host_port => StripPort::Matching,
                _ => StripPort::None,
            },
            suppress_envoy_headers,
            istio_stats: filters.iter().find_map(|f| match &f.filter {
                super::filters::HttpFilter::IstioStats(s) => Some(s.clone()),
                _ => None,
            }),
            alpn_override: filters.iter().find_map(|f| match &f.filter {
                super::filters::HttpFilter::IstioAlpn(a) => Some(a.clone()),
                _ => None,
            }),
            peer_metadata: filters.iter().find_map(|f| match &f.filter {
                super::filters::HttpFilter::PeerMetadata(p) => Some(*p),
                _ => None,
            }),
            filters,
            accept_http_10: h
                .http_protocol_options
                .as_ref()
                .is_some_and(|o| o.accept_http_10),
            default_host_for_http_10: h
                .http_protocol_options
                .as_ref()
                .map(|o| o.default_host_for_http_10.as_str())
                .filter(|s| !s.is_empty())
                .and_then(|s| http::HeaderValue::from_str(s).ok()),
            internal: match &h.internal_address_config {
                None => Vec::new(),
                Some(c) => c
                    .cidr_ranges
                    .iter()
                    .enumerate()
                    .map(|(i, r)| {
                        super::listener::Cidr::from_proto(
                            r,
                            &format!("{path}.internal_address_config.cidr_ranges[{i}]"),
                        )
                    })
                    .collect::<Result<_>>()?,
            },
        })
    }
}
