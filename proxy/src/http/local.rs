//! Envoy's local replies when an upstream exchange gives no response to pass on: no healthy
//! upstream, timeouts, resets and connect failures, circuit breaker overflow.

use super::reply::{local, Body, Flag, GrpcReply};
use super::upstream::Local;
use crate::cluster::pool::UpstreamError;
use crate::cluster::ClusterRt;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

/// Envoy's local reply for an exchange that gave no response to pass on.
pub(super) fn reply(
    cluster: &ClusterRt,
    why: Local,
    suppress_envoy_headers: bool,
    grpc: GrpcReply,
) -> Response<Body> {
    let cs = &cluster.stats;
    match why {
        Local::NoHealthyUpstream => {
            tracing::debug!(flag = Flag::NoHealthyUpstream.code(), cluster = %cluster.cfg.name, "no healthy upstream");
            grpc.reply(StatusCode::SERVICE_UNAVAILABLE, "no healthy upstream", None)
        }
        Local::Timeout => {
            cs.charge(504);
            tracing::debug!(
                flag = Flag::UpstreamRequestTimeout.code(),
                "upstream request timeout"
            );
            grpc.reply(
                StatusCode::GATEWAY_TIMEOUT,
                "upstream request timeout",
                None,
            )
        }
        Local::MaxDuration => {
            tracing::debug!("max stream duration reached");
            grpc.reply(
                StatusCode::GATEWAY_TIMEOUT,
                "downstream duration timeout",
                Some(4),
            )
        }
        Local::RequestTimeout => {
            tracing::debug!("request timeout");
            let mut r = grpc.reply(StatusCode::REQUEST_TIMEOUT, "request timeout", None);
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            r
        }
        Local::Idle => {
            tracing::debug!(flag = "SI", "stream idle timeout");
            grpc.reply(StatusCode::GATEWAY_TIMEOUT, "stream timeout", None)
        }
        Local::DownstreamBody => {
            let mut r = local(StatusCode::BAD_REQUEST, "Bad Request");
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            r
        }
        Local::Overflow => overflow(cluster, suppress_envoy_headers),
        Local::Failed(e, retried) if e.is_protocol() => {
            cs.charge(502);
            cs.upstream_rq_rx_reset.inc();
            tracing::debug!(
                flag = Flag::UpstreamProtocolError.code(),
                "upstream failure: {e}"
            );
            grpc.reply(StatusCode::BAD_GATEWAY, &reset_body(&e, retried), None)
        }
        Local::Failed(e, retried) => {
            cs.charge(503);
            if !e.is_connect() {
                cs.upstream_rq_rx_reset.inc();
            }
            let flag = if e.is_connect() {
                Flag::UpstreamConnectFailure
            } else {
                Flag::UpstreamConnectionTermination
            };
            tracing::debug!(flag = flag.code(), "upstream failure: {e}");
            grpc.reply(
                StatusCode::SERVICE_UNAVAILABLE,
                &reset_body(&e, retried),
                None,
            )
        }
    }
}

/// Envoy's local reply body for an upstream failure before response headers.
fn reset_body(e: &UpstreamError, retried: bool) -> String {
    let reason = match e {
        UpstreamError::ConnectFailed(_) => "remote connection failure",
        UpstreamError::ConnectTimeout => "connection timeout",
        UpstreamError::Reset(_) if e.is_protocol() => "protocol error",
        UpstreamError::Reset(_) => "connection termination",
        UpstreamError::Overflow => "overflow",
    };
    let latest = if retried {
        "retried and the latest reset reason"
    } else {
        "reset reason"
    };
    format!("upstream connect error or disconnect/reset before headers. {latest}: {reason}")
}

/// Envoy's answer when a circuit breaker is open: 503, flag UO.
fn overflow(cluster: &ClusterRt, suppress_envoy_headers: bool) -> Response<Body> {
    let cs = &cluster.stats;
    cs.charge(503);
    cs.upstream_rq_completed.inc();
    tracing::debug!(
        flag = Flag::UpstreamOverflow.code(),
        "circuit breaker overflow"
    );
    let mut r = local(
        StatusCode::SERVICE_UNAVAILABLE,
        "upstream connect error or disconnect/reset before headers. reset reason: overflow",
    );
    if !suppress_envoy_headers {
        r.headers_mut().insert(
            super::headers::X_ENVOY_OVERLOADED.clone(),
            HeaderValue::from_static("true"),
        );
    }
    r
}

/// How a local reply for `why` reads in access logs: its response flag, its details and the
/// transport failure reason.
pub(super) fn log_tag(
    why: &Local,
) -> (Option<Flag>, std::borrow::Cow<'static, str>, Option<String>) {
    use std::borrow::Cow::{Borrowed, Owned};
    match why {
        Local::NoHealthyUpstream => (
            Some(Flag::NoHealthyUpstream),
            Borrowed("no_healthy_upstream"),
            None,
        ),
        Local::Timeout => (
            Some(Flag::UpstreamRequestTimeout),
            Borrowed("response_timeout"),
            None,
        ),
        Local::MaxDuration => (
            Some(Flag::DurationTimeout),
            Borrowed("max_duration_timeout"),
            None,
        ),
        Local::RequestTimeout => (None, Borrowed("request_overall_timeout"), None),
        Local::Idle => (
            Some(Flag::StreamIdleTimeout),
            Borrowed("stream_idle_timeout"),
            None,
        ),
        Local::DownstreamBody => (
            Some(Flag::DownstreamProtocolError),
            Borrowed("downstream_remote_disconnect"),
            None,
        ),
        Local::Overflow => (
            Some(Flag::UpstreamOverflow),
            Borrowed("upstream_reset_before_response_started{overflow}"),
            None,
        ),
        Local::Failed(e, _) => match e {
            UpstreamError::ConnectFailed(io) => {
                let reason = crate::stream_info::connect_failure(io);
                (
                    Some(Flag::UpstreamConnectFailure),
                    Owned(format!(
                        "upstream_reset_before_response_started{{remote_connection_failure|{reason}}}"
                    )),
                    Some(reason),
                )
            }
            UpstreamError::ConnectTimeout => (
                Some(Flag::UpstreamConnectFailure),
                Borrowed("upstream_reset_before_response_started{connection_timeout}"),
                None,
            ),
            UpstreamError::Reset(_) if e.is_protocol() => (
                Some(Flag::UpstreamProtocolError),
                Borrowed("upstream_reset_before_response_started{protocol_error}"),
                None,
            ),
            UpstreamError::Reset(_) => (
                Some(Flag::UpstreamConnectionTermination),
                Borrowed("upstream_reset_before_response_started{connection_termination}"),
                None,
            ),
            UpstreamError::Overflow => (
                Some(Flag::UpstreamOverflow),
                Borrowed("upstream_reset_before_response_started{overflow}"),
                None,
            ),
        },
    }
}
