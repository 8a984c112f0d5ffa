//! `retry_policy` (route or virtual host): which outcomes are retried, how often, how long
//! each attempt may take, and the back-off between attempts.

use super::super::{duration, err, Result};
use super::matching::HeaderMatch;
use envoy_types::pb::envoy::config::route::v3 as pb;
use std::time::Duration;

/// `retry_on` conditions, as bits.
pub mod on {
    pub const X5XX: u32 = 1;
    pub const GATEWAY_ERROR: u32 = 1 << 1;
    pub const CONNECT_FAILURE: u32 = 1 << 2;
    pub const RETRIABLE_4XX: u32 = 1 << 3;
    pub const REFUSED_STREAM: u32 = 1 << 4;
    pub const RETRIABLE_STATUS_CODES: u32 = 1 << 5;
    pub const RESET: u32 = 1 << 6;
    pub const RETRIABLE_HEADERS: u32 = 1 << 7;
    pub const ENVOY_RATELIMITED: u32 = 1 << 8;
    pub const RESET_BEFORE_REQUEST: u32 = 1 << 9;
    pub const HTTP3_POST_CONNECT_FAILURE: u32 = 1 << 10;
    pub const GRPC_CANCELLED: u32 = 1 << 11;
    pub const GRPC_DEADLINE_EXCEEDED: u32 = 1 << 12;
    pub const GRPC_RESOURCE_EXHAUSTED: u32 = 1 << 13;
    pub const GRPC_UNAVAILABLE: u32 = 1 << 14;
    pub const GRPC_INTERNAL: u32 = 1 << 15;
    pub const GRPC: u32 = GRPC_CANCELLED
        | GRPC_DEADLINE_EXCEEDED
        | GRPC_RESOURCE_EXHAUSTED
        | GRPC_UNAVAILABLE
        | GRPC_INTERNAL;
}

/// The bit of one `retry_on` token, HTTP (`x-envoy-retry-on`) or gRPC (`x-envoy-retry-grpc-on`).
pub fn parse_token(t: &str, grpc_only: bool) -> Option<u32> {
    let grpc = match t {
        "cancelled" => Some(on::GRPC_CANCELLED),
        "deadline-exceeded" => Some(on::GRPC_DEADLINE_EXCEEDED),
        "resource-exhausted" => Some(on::GRPC_RESOURCE_EXHAUSTED),
        "unavailable" => Some(on::GRPC_UNAVAILABLE),
        "internal" => Some(on::GRPC_INTERNAL),
        _ => None,
    };
    if grpc_only || grpc.is_some() {
        return grpc;
    }
    Some(match t {
        "5xx" => on::X5XX,
        "gateway-error" => on::GATEWAY_ERROR,
        "connect-failure" => on::CONNECT_FAILURE,
        "retriable-4xx" => on::RETRIABLE_4XX,
        "refused-stream" => on::REFUSED_STREAM,
        "retriable-status-codes" => on::RETRIABLE_STATUS_CODES,
        "reset" => on::RESET,
        "reset-before-request" => on::RESET_BEFORE_REQUEST,
        "retriable-headers" => on::RETRIABLE_HEADERS,
        "envoy-ratelimited" => on::ENVOY_RATELIMITED,
        "http3-post-connect-failure" => on::HTTP3_POST_CONNECT_FAILURE,
        _ => return None,
    })
}

/// Every known token of a comma-separated list, as bits (unknown tokens are skipped, as
/// Envoy skips them).
pub fn parse_list(s: &str, grpc_only: bool) -> u32 {
    s.split(',')
        .filter_map(|t| parse_token(t.trim(), grpc_only))
        .fold(0, |a, b| a | b)
}

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub on: u32,
    pub num_retries: u32,
    pub per_try_timeout: Option<Duration>,
    pub per_try_idle_timeout: Option<Duration>,
    /// Exponential back-off: `(base, max)`.
    pub back_off: (Duration, Duration),
    pub retriable_status_codes: Vec<u16>,
    pub retriable_headers: Vec<HeaderMatch>,
    /// Only requests matching these are retried (none: all).
    pub retriable_request_headers: Vec<HeaderMatch>,
    /// `envoy.retry_host_predicates.previous_hosts`: a retry avoids the hosts tried before.
    pub previous_hosts: bool,
    pub host_selection_max_attempts: u32,
}

pub const DEFAULT_BASE_INTERVAL: Duration = Duration::from_millis(25);

impl Default for RetryPolicy {
    /// The policy of a request without any configured one: retries only if the request's
    /// `x-envoy-retry-on` asks.
    fn default() -> Self {
        RetryPolicy {
            on: 0,
            num_retries: 1,
            per_try_timeout: None,
            per_try_idle_timeout: None,
            back_off: (DEFAULT_BASE_INTERVAL, DEFAULT_BASE_INTERVAL * 10),
            retriable_status_codes: Vec::new(),
            retriable_headers: Vec::new(),
            retriable_request_headers: Vec::new(),
            previous_hosts: false,
            host_selection_max_attempts: 1,
        }
    }
}

const PREVIOUS_HOSTS: &str = "envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate";

impl RetryPolicy {
    pub fn from_proto(p: &pb::RetryPolicy, path: &str) -> Result<RetryPolicy> {
        // Envoy skips tokens it does not know; they retry nothing.
        let on_bits = parse_list(&p.retry_on, false);
        let opt = |d: &Option<_>, f: &str| -> Result<Option<Duration>> {
            d.as_ref()
                .map(|d| duration(d, &format!("{path}.{f}")))
                .transpose()
                .map(|d| d.filter(|d: &Duration| !d.is_zero()))
        };
        let back_off = match &p.retry_back_off {
            None => (DEFAULT_BASE_INTERVAL, DEFAULT_BASE_INTERVAL * 10),
            Some(b) => {
                let bp = format!("{path}.retry_back_off");
                let Some(base) = &b.base_interval else {
                    return err(&format!("{bp}.base_interval"), "base_interval is required");
                };
                let base = duration(base, &format!("{bp}.base_interval"))?;
                if base < Duration::from_millis(1) {
                    return err(&format!("{bp}.base_interval"), "must be at least 1ms");
                }
                let max = match &b.max_interval {
                    Some(m) => duration(m, &format!("{bp}.max_interval"))?,
                    None => base * 10,
                };
                if max < base {
                    return err(
                        &format!("{bp}.max_interval"),
                        "max_interval must be greater than or equal to the base_interval",
                    );
                }
                (base, max)
            }
        };
        let mut previous_hosts = false;
        for (i, h) in p.retry_host_predicate.iter().enumerate() {
            let hp = format!("{path}.retry_host_predicate[{i}]");
            let name = match &h.config_type {
                Some(pb::retry_policy::retry_host_predicate::ConfigType::TypedConfig(a)) => {
                    super::super::type_name(a)
                }
                None => "",
            };
            if name != PREVIOUS_HOSTS && h.name != "envoy.retry_host_predicates.previous_hosts" {
                return err(
                    &hp,
                    format!("retry host predicate {name} is not supported by Ferry"),
                );
            }
            previous_hosts = true;
        }
        let headers = |hs: &[pb::HeaderMatcher], f: &str| -> Result<Vec<HeaderMatch>> {
            hs.iter()
                .enumerate()
                .map(|(i, h)| HeaderMatch::from_proto(h, &format!("{path}.{f}[{i}]")))
                .collect()
        };
        Ok(RetryPolicy {
            on: on_bits,
            num_retries: p.num_retries.as_ref().map_or(1, |n| n.value),
            per_try_timeout: opt(&p.per_try_timeout, "per_try_timeout")?,
            per_try_idle_timeout: opt(&p.per_try_idle_timeout, "per_try_idle_timeout")?,
            back_off,
            retriable_status_codes: p
                .retriable_status_codes
                .iter()
                .map(|&c| u16::try_from(c).unwrap_or(0))
                .collect(),
            retriable_headers: headers(&p.retriable_headers, "retriable_headers")?,
            retriable_request_headers: headers(
                &p.retriable_request_headers,
                "retriable_request_headers",
            )?,
            previous_hosts,
            host_selection_max_attempts: u32::try_from(p.host_selection_retry_max_attempts)
                .unwrap_or(1)
                .max(1),
        })
    }
}
