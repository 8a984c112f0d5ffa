//! A cluster's upstream HTTP protocol and connection pool limits, from the legacy cluster
//! fields or `typed_extension_protocol_options` (`HttpProtocolOptions`).

use super::super::{any_to, err, opt_duration, type_name, Result};
use super::UpstreamProtocol;
use envoy_types::pb::envoy::config::cluster::v3 as pb;
use envoy_types::pb::envoy::config::core::v3::{
    Http2ProtocolOptions, HttpProtocolOptions as Common,
};
use envoy_types::pb::envoy::extensions::upstreams::http::v3::http_protocol_options::{
    explicit_http_config::ProtocolConfig, UpstreamProtocolOptions,
};
use envoy_types::pb::envoy::extensions::upstreams::http::v3::HttpProtocolOptions;
use std::time::Duration;

const HTTP_OPTIONS: &str = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolCfg {
    pub protocol: UpstreamProtocol,
    pub idle_timeout: Option<Duration>,
    /// A connection closes after this many requests (none: no limit).
    pub max_requests_per_connection: Option<u32>,
    /// A connection closes (once idle) after being open this long.
    pub max_connection_duration: Option<Duration>,
    /// HTTP/2: streams per connection before another connection is opened.
    pub max_concurrent_streams: u32,
    /// HTTP/2 flow-control windows (none: hyper's, 1 MiB stream and 5 MiB connection).
    pub h2_windows: (Option<u32>, Option<u32>),
    /// `max_headers_count` and `max_response_headers_kb` of responses (Envoy: 100, 60 KiB).
    pub max_response_headers: u32,
    pub max_response_headers_kb: u32,
}

/// Applies `common_http_protocol_options` at `p`.
fn common(c: &Common, p: &str, out: &mut PoolCfg) -> Result<()> {
    if opt_duration(&c.max_stream_duration, &format!("{p}.max_stream_duration"))?
        .is_some_and(|d| !d.is_zero())
    {
        return super::super::err(
            &format!("{p}.max_stream_duration"),
            "an upstream stream duration limit is not supported by Ferry yet",
        );
    }
    out.idle_timeout = opt_duration(&c.idle_timeout, &format!("{p}.idle_timeout"))?;
    if let Some(m) = &c.max_headers_count {
        if m.value == 0 {
            return err(&format!("{p}.max_headers_count"), "must be at least 1");
        }
        out.max_response_headers = m.value;
    }
    if let Some(k) = &c.max_response_headers_kb {
        if !(1..=8192).contains(&k.value) {
            return err(
                &format!("{p}.max_response_headers_kb"),
                "must be between 1 and 8192",
            );
        }
        out.max_response_headers_kb = k.value;
    }
    if let Some(m) = c.max_requests_per_connection {
        out.max_requests_per_connection = Some(m.value).filter(|v| *v > 0);
    }
    out.max_connection_duration = opt_duration(
        &c.max_connection_duration,
        &format!("{p}.max_connection_duration"),
    )?
    .filter(|d| !d.is_zero());
    Ok(())
}

fn http2(o: &Option<Http2ProtocolOptions>, out: &mut PoolCfg) {
    if let Some(m) = o.as_ref().and_then(|o| o.max_concurrent_streams) {
        out.max_concurrent_streams = m.value.max(1);
    }
    if let Some(o) = o {
        let window = |v: &Option<envoy_types::pb::google::protobuf::UInt32Value>| {
            v.as_ref().map(|v| v.value.clamp(65_535, 2_147_483_647))
        };
        out.h2_windows = (
            window(&o.initial_stream_window_size).or(out.h2_windows.0),
            window(&o.initial_connection_window_size).or(out.h2_windows.1),
        );
    }
}

#[allow(deprecated)] // http2_protocol_options & co. are still what many bootstraps use
pub fn pool(c: &pb::Cluster, path: &str) -> Result<PoolCfg> {
    let mut out = PoolCfg {
        protocol: if c.http2_protocol_options.is_some() {
            UpstreamProtocol::Http2
        } else {
            UpstreamProtocol::Http1
        },
        idle_timeout: None,
        max_requests_per_connection: c
            .max_requests_per_connection
            .map(|v| v.value)
            .filter(|v| *v > 0),
        max_connection_duration: None,
        max_concurrent_streams: 2_147_483_647,
        h2_windows: (None, None),
        max_response_headers: 100,
        max_response_headers_kb: 60,
    };
    http2(&c.http2_protocol_options, &mut out);
    if let Some(o) = &c.common_http_protocol_options {
        common(o, &format!("{path}.common_http_protocol_options"), &mut out)?;
    }
    for (key, any) in &c.typed_extension_protocol_options {
        let kp = format!("{path}.typed_extension_protocol_options[{key}]");
        if type_name(any) != HTTP_OPTIONS {
            return err(
                &kp,
                format!(
                    "protocol options {} are not supported by Ferry",
                    type_name(any)
                ),
            );
        }
        let o: HttpProtocolOptions = any_to(any, &kp)?;
        if let Some(c) = &o.common_http_protocol_options {
            common(c, &format!("{kp}.common_http_protocol_options"), &mut out)?;
        }
        out.protocol = match &o.upstream_protocol_options {
            Some(UpstreamProtocolOptions::ExplicitHttpConfig(e)) => match &e.protocol_config {
                Some(ProtocolConfig::Http2ProtocolOptions(h2)) => {
                    http2(&Some(h2.clone()), &mut out);
                    UpstreamProtocol::Http2
                }
                Some(ProtocolConfig::HttpProtocolOptions(_)) => UpstreamProtocol::Http1,
                _ => {
                    return err(
                        &format!("{kp}.explicit_http_config"),
                        "only HTTP/1.1 and HTTP/2 are supported by Ferry",
                    )
                }
            },
            Some(UpstreamProtocolOptions::UseDownstreamProtocolConfig(d)) => {
                http2(&d.http2_protocol_options, &mut out);
                UpstreamProtocol::Downstream
            }
            Some(UpstreamProtocolOptions::AutoConfig(a)) => {
                http2(&a.http2_protocol_options, &mut out);
                UpstreamProtocol::Auto
            }
            None => out.protocol,
        };
    }
    Ok(out)
}
