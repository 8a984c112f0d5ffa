//! `health_checks`: active HTTP, TCP and gRPC health checking, with Envoy's defaults.

use super::super::{err, opt_duration, ConfigError, Result};
use envoy_types::pb::envoy::config::core::v3::health_check::{payload, HealthChecker, Payload};
use envoy_types::pb::envoy::config::core::v3::HealthCheck;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub enum Check {
    Http {
        /// The Host header (default: the cluster name).
        host: Option<String>,
        path: String,
        method: http::Method,
        /// `[start, end)` ranges; default `[200, 201)`.
        expected: Vec<(u16, u16)>,
        retriable: Vec<(u16, u16)>,
        http2: bool,
    },
    Tcp {
        send: Vec<u8>,
        /// Each must appear in what the host sends back, in order; none: connecting is enough.
        receive: Vec<Vec<u8>>,
    },
    Grpc {
        service: String,
        authority: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheckCfg {
    pub check: Check,
    pub timeout: Duration,
    pub interval: Duration,
    pub initial_jitter: Duration,
    pub interval_jitter: Duration,
    pub interval_jitter_percent: u32,
    pub unhealthy_threshold: u32,
    pub healthy_threshold: u32,
    pub reuse_connection: bool,
    pub no_traffic_interval: Duration,
    pub no_traffic_healthy_interval: Duration,
    pub unhealthy_interval: Duration,
    pub unhealthy_edge_interval: Duration,
    pub healthy_edge_interval: Duration,
}

fn payload(p: &Payload, path: &str) -> Result<Vec<u8>> {
    match &p.payload {
        Some(payload::Payload::Text(hex)) => decode_hex(hex).ok_or_else(|| ConfigError {
            path: format!("{path}.text"),
            msg: format!("invalid hex string {hex:?}"),
        }),
        Some(payload::Payload::Binary(b)) => Ok(b.clone()),
        None => err(path, "payload must be text or binary"),
    }
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    let s = s.as_bytes();
    if !s.len().is_multiple_of(2) {
        return None;
    }
    s.chunks(2)
        .map(|p| {
            let d = |c: u8| (c as char).to_digit(16);
            Some((d(p[0])? * 16 + d(p[1])?) as u8)
        })
        .collect()
}

fn ranges(
    r: &[envoy_types::pb::envoy::r#type::v3::Int64Range],
    path: &str,
) -> Result<Vec<(u16, u16)>> {
    r.iter()
        .enumerate()
        .map(|(i, r)| {
            if r.start < 100 || r.end > 600 || r.start >= r.end {
                return err(
                    &format!("{path}[{i}]"),
                    format!(
                        "invalid status range [{}, {}): must lie in [100, 600) and not be empty",
                        r.start, r.end
                    ),
                );
            }
            Ok((r.start as u16, r.end as u16))
        })
        .collect()
}

pub fn health_checks(hcs: &[HealthCheck], path: &str) -> Result<Option<HealthCheckCfg>> {
    let Some(hc) = hcs.first() else {
        return Ok(None);
    };
    if hcs.len() > 1 {
        return err(
            &format!("{path}[1]"),
            "Ferry runs one health checker per cluster",
        );
    }
    let p = format!("{path}[0]");
    let req =
        |d: &Option<envoy_types::pb::google::protobuf::Duration>, name: &str| -> Result<Duration> {
            match opt_duration(d, &format!("{p}.{name}"))? {
                Some(d) if !d.is_zero() => Ok(d),
                _ => err(
                    &format!("{p}.{name}"),
                    "value is required and must be greater than 0",
                ),
            }
        };
    let timeout = req(&hc.timeout, "timeout")?;
    let interval = req(&hc.interval, "interval")?;
    let opt = |d: &Option<envoy_types::pb::google::protobuf::Duration>, name: &str| {
        opt_duration(d, &format!("{p}.{name}"))
    };
    let threshold = |v: Option<u32>, name: &str| match v {
        Some(v) => Ok(v),
        None => err(&format!("{p}.{name}"), "value is required"),
    };
    let unhealthy_threshold = threshold(
        hc.unhealthy_threshold.map(|v| v.value),
        "unhealthy_threshold",
    )?;
    let healthy_threshold = threshold(hc.healthy_threshold.map(|v| v.value), "healthy_threshold")?;
    if hc.alt_port.is_some() {
        return err(
            &format!("{p}.alt_port"),
            "alt_port is not supported by Ferry yet",
        );
    }
    let check = match &hc.health_checker {
        Some(HealthChecker::HttpHealthCheck(h)) => {
            let hp = format!("{p}.http_health_check");
            if h.path.is_empty() {
                return err(&format!("{hp}.path"), "path is required");
            }
            for (set, name) in [
                (h.send.is_some(), "send"),
                (!h.receive.is_empty(), "receive"),
                (
                    !h.request_headers_to_add.is_empty(),
                    "request_headers_to_add",
                ),
                (
                    !h.request_headers_to_remove.is_empty(),
                    "request_headers_to_remove",
                ),
                (h.service_name_matcher.is_some(), "service_name_matcher"),
            ] {
                if set {
                    return err(
                        &format!("{hp}.{name}"),
                        format!("{name} is not supported by Ferry's HTTP health checker yet"),
                    );
                }
            }
            // RequestMethod: 0 unspecified (GET), 1 GET, 2 HEAD, 3 POST, 4 PUT, 5 DELETE,
            // 6 CONNECT, 7 OPTIONS, 8 TRACE, 9 PATCH.
            let method = match h.method {
                0 | 1 => http::Method::GET,
                2 => http::Method::HEAD,
                3 => http::Method::POST,
                4 => http::Method::PUT,
                5 => http::Method::DELETE,
                7 => http::Method::OPTIONS,
                8 => http::Method::TRACE,
                9 => http::Method::PATCH,
                m => {
                    return err(
                        &format!("{hp}.method"),
                        format!("method {m} is not allowed"),
                    )
                }
            };
            let http2 = match h.codec_client_type {
                0 => false,
                1 => true,
                _ => {
                    return err(
                        &format!("{hp}.codec_client_type"),
                        "HTTP/3 is not supported by Ferry",
                    )
                }
            };
            let expected = ranges(&h.expected_statuses, &format!("{hp}.expected_statuses"))?;
            Check::Http {
                host: Some(h.host.clone()).filter(|s| !s.is_empty()),
                path: h.path.clone(),
                method,
                expected: if expected.is_empty() {
                    vec![(200, 201)]
                } else {
                    expected
                },
                retriable: ranges(&h.retriable_statuses, &format!("{hp}.retriable_statuses"))?,
                http2,
            }
        }
        Some(HealthChecker::TcpHealthCheck(t)) => {
            let tp = format!("{p}.tcp_health_check");
            if t.proxy_protocol_config.is_some() {
                return err(
                    &format!("{tp}.proxy_protocol_config"),
                    "the PROXY protocol is not supported by Ferry",
                );
            }
            Check::Tcp {
                send: t
                    .send
                    .as_ref()
                    .map(|s| payload(s, &format!("{tp}.send")))
                    .transpose()?
                    .unwrap_or_default(),
                receive: t
                    .receive
                    .iter()
                    .enumerate()
                    .map(|(i, r)| payload(r, &format!("{tp}.receive[{i}]")))
                    .collect::<Result<_>>()?,
            }
        }
        Some(HealthChecker::GrpcHealthCheck(g)) => {
            if !g.initial_metadata.is_empty() {
                return err(
                    &format!("{p}.grpc_health_check.initial_metadata"),
                    "initial_metadata is not supported by Ferry yet",
                );
            }
            Check::Grpc {
                service: g.service_name.clone(),
                authority: Some(g.authority.clone()).filter(|s| !s.is_empty()),
            }
        }
        Some(HealthChecker::CustomHealthCheck(_)) => {
            return err(
                &format!("{p}.custom_health_check"),
                "custom health checkers are not supported by Ferry",
            )
        }
        None => {
            return err(
                &format!("{p}.health_checker"),
                "a health checker is required",
            )
        }
    };
    let no_traffic_interval =
        opt(&hc.no_traffic_interval, "no_traffic_interval")?.unwrap_or(Duration::from_secs(60));
    let unhealthy_interval = opt(&hc.unhealthy_interval, "unhealthy_interval")?.unwrap_or(interval);
    Ok(Some(HealthCheckCfg {
        check,
        timeout,
        interval,
        initial_jitter: opt(&hc.initial_jitter, "initial_jitter")?.unwrap_or_default(),
        interval_jitter: opt(&hc.interval_jitter, "interval_jitter")?.unwrap_or_default(),
        interval_jitter_percent: hc.interval_jitter_percent,
        unhealthy_threshold,
        healthy_threshold,
        reuse_connection: hc.reuse_connection.is_none_or(|b| b.value),
        no_traffic_interval,
        no_traffic_healthy_interval: opt(
            &hc.no_traffic_healthy_interval,
            "no_traffic_healthy_interval",
        )?
        .unwrap_or(no_traffic_interval),
        unhealthy_interval,
        unhealthy_edge_interval: opt(&hc.unhealthy_edge_interval, "unhealthy_edge_interval")?
            .unwrap_or(unhealthy_interval),
        healthy_edge_interval: opt(&hc.healthy_edge_interval, "healthy_edge_interval")?
            .unwrap_or(interval),
    }))
}

#[cfg(test)]
mod tests {
    #[test]
    fn hex_payloads() {
        assert_eq!(super::decode_hex("50494e47"), Some(b"PING".to_vec()));
        assert_eq!(super::decode_hex("5"), None);
        assert_eq!(super::decode_hex("zz"), None);
    }
}
