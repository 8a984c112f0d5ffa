//! A request's timeouts besides the route timeout: the stream's maximum duration (connection
//! manager or route, or the `grpc-timeout` header), its idle timeout, and the deprecated
//! `max_grpc_timeout` — with the `grpc-timeout` sent upstream rewritten as Envoy does.

use crate::config::hcm::HttpConnMgr;
use crate::config::route::timeouts::{format_grpc_timeout, parse_grpc_timeout};
use crate::config::route::Forward;
use http::{HeaderMap, HeaderValue};
use std::time::Duration;
use tokio::time::Instant;

const GRPC_TIMEOUT: &str = "grpc-timeout";

fn is_grpc(h: &HeaderMap) -> bool {
    h.get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

fn grpc_timeout(h: &HeaderMap) -> Option<Duration> {
    parse_grpc_timeout(h.get(GRPC_TIMEOUT)?.to_str().ok()?)
}

fn set_grpc_timeout(h: &mut HeaderMap, d: Duration) {
    if let Ok(v) = HeaderValue::from_str(&format_grpc_timeout(d)) {
        h.insert(GRPC_TIMEOUT, v);
    }
}

/// `max_grpc_timeout` for a gRPC request: the `grpc-timeout` header less the offset (when
/// it is larger), capped at the maximum; `Some(None)`: no timeout.
pub fn legacy_grpc(fwd: &Forward, h: &mut HeaderMap) -> Option<Option<Duration>> {
    let (max, offset) = fwd.stream.grpc_legacy?;
    if !is_grpc(h) {
        return None;
    }
    let mut t = grpc_timeout(h).unwrap_or_default();
    if offset < t {
        t -= offset;
    }
    if !max.is_zero() && (t.is_zero() || t > max) {
        t = max;
    }
    if t.is_zero() {
        return Some(None);
    }
    set_grpc_timeout(h, t);
    Some(Some(t))
}

/// The stream's end (its maximum duration from now) and idle timeout.
pub fn stream_limits(
    hcm: &HttpConnMgr,
    fwd: &Forward,
    h: &mut HeaderMap,
) -> (Option<Instant>, Option<Duration>) {
    let mut max = hcm.max_stream_duration;
    if let Some(ms) = fwd.stream.max_stream {
        if let Some(d) = ms.duration {
            max = Some(d).filter(|d| !d.is_zero());
        }
        if let (Some(cap), Some(mut t)) = (ms.grpc_header_max, grpc_timeout(h)) {
            if !cap.is_zero() && t > cap {
                t = cap;
            }
            t = t.saturating_sub(ms.grpc_header_offset);
            set_grpc_timeout(h, t);
            max = Some(t);
        }
    }
    let idle = fwd.stream.idle.unwrap_or(hcm.stream_idle_timeout);
    (max.map(|d| Instant::now() + d), idle)
}
