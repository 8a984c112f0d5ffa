//! The parts of one upstream attempt: the host it goes to (avoiding earlier ones under
//! `previous_hosts`), the request it sends, and how a failure reads for retries.

use super::body::ReqBody;
use super::headers::X_ENVOY_EXPECTED_TIMEOUT;
use super::retry::{Failure, X_ENVOY_ATTEMPT_COUNT};
use super::upstream::Outgoing;
use crate::cluster::pool::UpstreamError;
use crate::cluster::{ClusterRt, Host, LbContext};
use crate::config::route::HostRewrite;
use http::header::{self, HeaderValue};
use http::{Request, Uri, Version};
use std::sync::Arc;
use std::time::Duration;

/// How an attempt's error reads for the retry policy.
pub(super) fn failure(e: &UpstreamError) -> Failure {
    match e {
        UpstreamError::ConnectFailed(_) | UpstreamError::ConnectTimeout => Failure::Connect,
        UpstreamError::Reset(h) => {
            let refused = std::error::Error::source(h)
                .and_then(|s| s.downcast_ref::<h2::Error>())
                .and_then(h2::Error::reason)
                == Some(h2::Reason::REFUSED_STREAM);
            if refused {
                Failure::Refused
            } else {
                Failure::Reset
            }
        }
        UpstreamError::Overflow => Failure::Reset,
    }
}

/// The host for this attempt; a retry under `previous_hosts` tries up to `max_attempts` picks
/// for one not tried yet.
pub(super) fn pick(
    cluster: &ClusterRt,
    lb: &LbContext<'_>,
    max_attempts: Option<u32>,
    tried: &[Arc<Host>],
) -> Option<Arc<Host>> {
    let mut host = cluster.pick(lb)?;
    if let Some(n) = max_attempts.filter(|_| !tried.is_empty()) {
        for _ in 1..n {
            if !tried.iter().any(|t| Arc::ptr_eq(t, &host)) {
                break;
            }
            host = cluster.pick(lb)?;
        }
    }
    Some(host)
}

/// This attempt's request: the host rewrite for the picked host, the URI and version of the
/// upstream protocol, the expected timeout and attempt count.
pub(super) fn attempt_request(
    out: &Outgoing,
    host: &Host,
    body: ReqBody,
    use_h2: bool,
    attempt: u32,
    expected: Option<Duration>,
) -> Request<ReqBody> {
    let mut req = Request::new(body);
    *req.method_mut() = out.parts.method.clone();
    *req.headers_mut() = out.parts.headers.clone();
    let h = req.headers_mut();
    match &out.host_rewrite {
        HostRewrite::Keep | HostRewrite::Literal(_) | HostRewrite::Header(_) => {}
        HostRewrite::Auto => {
            if !host.hostname.is_empty() {
                if let Ok(v) = HeaderValue::from_str(&host.hostname) {
                    let orig = h.insert(header::HOST, v);
                    if let (Some(o), false) = (orig, out.suppress_envoy_headers) {
                        if h.get(header::HOST) != Some(&o) {
                            h.insert(super::headers::X_ENVOY_ORIGINAL_HOST.clone(), o);
                        }
                    }
                }
            }
        }
    }
    if let (Some(t), false) = (expected, out.suppress_envoy_headers) {
        h.insert(
            X_ENVOY_EXPECTED_TIMEOUT.clone(),
            HeaderValue::from(t.as_millis() as u64),
        );
    }
    if out.attempt_count_header {
        h.insert(X_ENVOY_ATTEMPT_COUNT.clone(), HeaderValue::from(attempt));
    }
    let authority = h
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    if use_h2 {
        *req.version_mut() = Version::HTTP_2;
        *req.uri_mut() = Uri::try_from(format!("http://{authority}{}", out.path))
            .unwrap_or_else(|_| Uri::from_static("/"));
        req.headers_mut().remove(header::HOST);
    } else {
        *req.version_mut() = Version::HTTP_11;
        *req.uri_mut() = Uri::try_from(out.path.as_str()).unwrap_or_else(|_| Uri::from_static("/"));
    }
    req
}
