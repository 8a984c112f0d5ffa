//! One request's retry state: the route's `retry_policy` merged with the request's
//! `x-envoy-retry-on` / `x-envoy-max-retries` / … headers, which outcomes are retried, and the
//! jittered exponential back-off between attempts.

use crate::config::route::retry::{on, parse_list, RetryPolicy};
use http::{HeaderMap, HeaderName, StatusCode};
use std::time::Duration;

pub static X_ENVOY_RETRY_ON: HeaderName = HeaderName::from_static("x-envoy-retry-on");
pub static X_ENVOY_RETRY_GRPC_ON: HeaderName = HeaderName::from_static("x-envoy-retry-grpc-on");
pub static X_ENVOY_MAX_RETRIES: HeaderName = HeaderName::from_static("x-envoy-max-retries");
pub static X_ENVOY_RETRIABLE_STATUS_CODES: HeaderName =
    HeaderName::from_static("x-envoy-retriable-status-codes");
pub static X_ENVOY_RETRIABLE_HEADER_NAMES: HeaderName =
    HeaderName::from_static("x-envoy-retriable-header-names");
pub static X_ENVOY_ATTEMPT_COUNT: HeaderName = HeaderName::from_static("x-envoy-attempt-count");
static X_ENVOY_RATELIMITED: HeaderName = HeaderName::from_static("x-envoy-ratelimited");
static GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");

/// How an attempt ended without a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The connection could not be made.
    Connect,
    /// The connection or stream was reset before response headers.
    Reset,
    /// The HTTP/2 stream was refused (REFUSED_STREAM).
    Refused,
    /// The per-try timeout or per-try idle timeout fired.
    Timeout,
}

pub struct RetryState<'a> {
    policy: &'a RetryPolicy,
    on: u32,
    remaining: u32,
    /// `x-envoy-retriable-status-codes` beyond the policy's.
    extra_codes: Vec<u16>,
    /// `x-envoy-retriable-header-names`.
    extra_headers: Vec<HeaderName>,
    /// The next back-off ceiling in milliseconds (starts at the base interval).
    backoff_next: u64,
}

impl<'a> RetryState<'a> {
    /// The request's retry state, or `None` when nothing would be retried. The retry headers
    /// are taken out of `headers`.
    pub fn new(policy: Option<&'a RetryPolicy>, headers: &mut HeaderMap) -> Option<Self> {
        static NONE: std::sync::OnceLock<RetryPolicy> = std::sync::OnceLock::new();
        let text = |h: &mut HeaderMap, n: &HeaderName| {
            h.remove(n)
                .and_then(|v| v.to_str().ok().map(str::to_string))
        };
        let retry_on = text(headers, &X_ENVOY_RETRY_ON);
        let grpc_on = text(headers, &X_ENVOY_RETRY_GRPC_ON);
        let max = text(headers, &X_ENVOY_MAX_RETRIES);
        let codes = text(headers, &X_ENVOY_RETRIABLE_STATUS_CODES);
        let names = text(headers, &X_ENVOY_RETRIABLE_HEADER_NAMES);
        let policy = policy.unwrap_or_else(|| NONE.get_or_init(RetryPolicy::default));
        let mut on_bits = policy.on;
        // gRPC names are not read from x-envoy-retry-on (only from x-envoy-retry-grpc-on).
        if let Some(s) = &retry_on {
            on_bits |= parse_list(s, false) & !on::GRPC;
        }
        if let Some(s) = &grpc_on {
            on_bits |= parse_list(s, true);
        }
        let mut remaining = policy.num_retries;
        if let Some(n) = max.and_then(|m| m.trim().parse::<u32>().ok()) {
            remaining = n;
        }
        if on_bits == 0 || remaining == 0 {
            return None;
        }
        if !policy.retriable_request_headers.is_empty()
            && !policy
                .retriable_request_headers
                .iter()
                .any(|m| m.matches(headers))
        {
            return None;
        }
        Some(RetryState {
            policy,
            on: on_bits,
            remaining,
            extra_codes: codes
                .iter()
                .flat_map(|c| c.split(','))
                .filter_map(|c| c.trim().parse().ok())
                .collect(),
            extra_headers: names
                .iter()
                .flat_map(|c| c.split(','))
                .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
                .collect(),
            backoff_next: policy.back_off.0.as_millis().max(1) as u64,
        })
    }

    pub fn policy(&self) -> &RetryPolicy {
        self.policy
    }

    /// Whether a response with these headers would be retried.
    pub fn retriable_response(&self, status: StatusCode, headers: &HeaderMap) -> bool {
        if headers.contains_key(&X_ENVOY_RATELIMITED) {
            return self.on & on::ENVOY_RATELIMITED != 0;
        }
        let code = status.as_u16();
        let has = |bit| self.on & bit != 0;
        if has(on::X5XX) && status.is_server_error() {
            return true;
        }
        if has(on::GATEWAY_ERROR) && matches!(code, 502..=504) {
            return true;
        }
        if has(on::RETRIABLE_4XX) && code == 409 {
            return true;
        }
        if has(on::RETRIABLE_STATUS_CODES)
            && (self.policy.retriable_status_codes.contains(&code)
                || self.extra_codes.contains(&code))
        {
            return true;
        }
        if has(on::RETRIABLE_HEADERS)
            && (self
                .policy
                .retriable_headers
                .iter()
                .any(|m| m.matches(headers))
                || self.extra_headers.iter().any(|n| headers.contains_key(n)))
        {
            return true;
        }
        if self.on & on::GRPC != 0 {
            if let Some(g) = headers
                .get(&GRPC_STATUS)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u32>().ok())
            {
                let bit = match g {
                    1 => on::GRPC_CANCELLED,
                    4 => on::GRPC_DEADLINE_EXCEEDED,
                    8 => on::GRPC_RESOURCE_EXHAUSTED,
                    13 => on::GRPC_INTERNAL,
                    14 => on::GRPC_UNAVAILABLE,
                    _ => 0,
                };
                return self.on & bit != 0;
            }
        }
        false
    }

    /// Whether an attempt that ended without a response would be retried. `sent`: the
    /// request reached the upstream connection.
    pub fn retriable_failure(&self, f: Failure, sent: bool) -> bool {
        let has = |bit| self.on & bit != 0;
        if has(on::X5XX | on::GATEWAY_ERROR | on::RESET) {
            return true;
        }
        if has(on::RESET_BEFORE_REQUEST) && !sent {
            return true;
        }
        match f {
            Failure::Connect => has(on::CONNECT_FAILURE),
            Failure::Refused => has(on::REFUSED_STREAM),
            Failure::Reset | Failure::Timeout => false,
        }
    }

    /// Takes one retry; `false` when none is left.
    pub fn take(&mut self) -> bool {
        if self.remaining == 0 {
            return false;
        }
        self.remaining -= 1;
        true
    }

    /// The wait before the next attempt: uniformly random below a ceiling that starts at the
    /// base interval and doubles while under half the maximum, then is the maximum.
    pub fn back_off(&mut self) -> Duration {
        let max_ms = (self.policy.back_off.1.as_millis() as u64).max(1);
        let ceiling = self.backoff_next.max(1);
        self.backoff_next = if ceiling < max_ms / 2 {
            ceiling * 2
        } else {
            max_ms
        };
        Duration::from_millis(fastrand::u64(..) % ceiling)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(p: &RetryPolicy, h: &[(&str, &str)]) -> Option<RetryState<'static>> {
        let p: &'static RetryPolicy = Box::leak(Box::new(p.clone()));
        let mut m = HeaderMap::new();
        for (k, v) in h {
            m.insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        RetryState::new(Some(p), &mut m)
    }

    #[test]
    fn conditions_and_headers() {
        let none = RetryPolicy::default();
        assert!(state(&none, &[]).is_none());
        let s = state(&none, &[("x-envoy-retry-on", "5xx")]).unwrap();
        assert!(s.retriable_response(StatusCode::BAD_GATEWAY, &HeaderMap::new()));
        assert!(!s.retriable_response(StatusCode::CONFLICT, &HeaderMap::new()));
        assert!(s.retriable_failure(Failure::Connect, false));
        let mut p = RetryPolicy {
            on: on::CONNECT_FAILURE | on::RETRIABLE_STATUS_CODES | on::GRPC_UNAVAILABLE,
            retriable_status_codes: vec![503],
            ..RetryPolicy::default()
        };
        let s = state(&p, &[]).unwrap();
        assert!(s.retriable_response(StatusCode::SERVICE_UNAVAILABLE, &HeaderMap::new()));
        assert!(!s.retriable_response(StatusCode::BAD_GATEWAY, &HeaderMap::new()));
        let mut g = HeaderMap::new();
        g.insert("grpc-status", "14".parse().unwrap());
        assert!(s.retriable_response(StatusCode::OK, &g));
        assert!(!s.retriable_failure(Failure::Reset, true));
        assert!(s.retriable_failure(Failure::Connect, false));
        p.num_retries = 3;
        assert!(state(&p, &[("x-envoy-max-retries", "0")]).is_none());
        let mut s = state(&p, &[]).unwrap();
        assert!(s.take() && s.take() && s.take() && !s.take());
        // A rate-limited answer is retried only under envoy-ratelimited.
        let mut rl = HeaderMap::new();
        rl.insert("x-envoy-ratelimited", "true".parse().unwrap());
        assert!(!s.retriable_response(StatusCode::SERVICE_UNAVAILABLE, &rl));
    }

    #[test]
    fn back_off_is_jittered_and_capped() {
        let p = RetryPolicy {
            on: on::X5XX,
            back_off: (Duration::from_millis(10), Duration::from_millis(50)),
            ..RetryPolicy::default()
        };
        let mut s = state(&p, &[]).unwrap();
        assert!(s.back_off() < Duration::from_millis(10));
        assert!(s.back_off() < Duration::from_millis(20));
        for _ in 0..20 {
            assert!(s.back_off() <= Duration::from_millis(50));
        }
    }
}
