//! The exchange with the upstream: one attempt per host pick, retried as the request's retry
//! state allows, under the route timeout (over all attempts) and the per-try timeout; Envoy's
//! local replies when no attempt gives a response.

use super::attempt::{attempt_request, failure, pick};
use super::body::{Replay, ReqBody};

use super::retry::{Failure, RetryState};
use crate::cluster::pool::UpstreamError;
use crate::cluster::{ActiveRequest, ClusterRt, Host, LbContext};
use crate::config::cluster::UpstreamProtocol;
use crate::config::route::HostRewrite;
use http::{Response, Version};
use hyper::body::Incoming;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// The request as it goes upstream, before the per-attempt parts (host, protocol, body).
pub(super) struct Outgoing {
    pub parts: http::request::Parts,
    /// The path and query sent upstream.
    pub path: String,
    pub body: Option<ReqBody>,
    /// Makes the body of a retry (none: the request cannot be sent again).
    pub replay: Option<Replay>,
    pub upgrade: bool,
    pub host_rewrite: HostRewrite,
    /// Route timeout over all attempts.
    pub timeout: Option<Duration>,
    /// The stream's own limits while it waits for a response: its maximum duration (from
    /// its start) and its idle timeout.
    pub max_duration: Option<Instant>,
    pub idle: Option<Duration>,
    /// The connection manager's `request_timeout`: the downstream request must be complete
    /// by then; `body` tells whether it is.
    pub request_deadline: Option<(Instant, Replay)>,
    /// Send `x-envoy-expected-rq-timeout-ms` (not under "new" timeouts).
    pub expected_header: bool,
    pub per_try: Option<Duration>,
    /// `per_try_idle_timeout`: no upstream activity for this long ends the attempt (while
    /// waiting for the response here; on the response body in [`super::throttle::Watched`]).
    pub per_try_idle: Option<Duration>,
    pub attempt_count_header: bool,
    pub suppress_envoy_headers: bool,
    /// `istio.alpn`: the ALPN lists of new TLS connections.
    pub alpn: Option<Arc<crate::istio::alpn::AlpnOverride>>,
}

pub(super) struct Answer {
    pub resp: Response<Incoming>,
    pub active: ActiveRequest,
    pub host: Arc<Host>,
    pub attempts: u32,
}

/// What the exchange did, for the stream's info (access logs): the last host tried, whether
/// retries ran out, and the upstream connection's local address.
#[derive(Debug, Default)]
pub(super) struct Trail {
    pub host: Option<std::net::SocketAddr>,
    pub local: Option<std::net::SocketAddr>,
    pub peer_san: Option<Arc<str>>,
    /// The identity this proxy presented on that connection (its TLS context's URI SAN).
    pub local_san: Option<Arc<str>>,
    pub retries_exhausted: bool,
}

/// Why no upstream response is passed on.
pub(super) enum Local {
    NoHealthyUpstream,
    Timeout,
    /// The stream's `max_stream_duration` passed.
    MaxDuration,
    /// The stream was idle for its idle timeout.
    Idle,
    /// The downstream request was not complete by `request_timeout`.
    RequestTimeout,
    Overflow,
    /// The downstream request body failed.
    DownstreamBody,
    /// The last attempt failed; whether there were retries.
    Failed(UpstreamError, bool),
}

/// One attempt's result.
enum Tried {
    Answer(Response<Incoming>, ActiveRequest),
    Failed(UpstreamError),
    /// The per-try timeout fired.
    PerTryTimeout,
    /// The route timeout or a stream limit fired.
    Timeout(End),
}

/// Which overall limit ended the exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Route,
    MaxDuration,
    Idle,
    Request,
}

/// The earliest of the exchange's overall limits.
fn first_end(limits: &[(Option<Instant>, End)]) -> Option<(Instant, End)> {
    limits
        .iter()
        .filter_map(|(at, e)| at.map(|at| (at, *e)))
        .min_by_key(|(at, _)| *at)
}

pub(super) async fn exchange(
    cluster: &Arc<ClusterRt>,
    lb: &LbContext<'_>,
    mut out: Outgoing,
    mut retry: Option<RetryState<'_>>,
    trail: &mut Trail,
) -> Result<Answer, (Local, u32)> {
    let cs = &cluster.stats;
    let started = Instant::now();
    let mut ends = [
        (out.timeout.map(|t| started + t), End::Route),
        (out.max_duration, End::MaxDuration),
        (out.idle.map(|t| started + t), End::Idle),
        (
            out.request_deadline.as_ref().map(|(at, _)| *at),
            End::Request,
        ),
    ];
    let mut first_body = out.body.take();
    let lb = LbContext {
        headers: Some(&out.parts.headers),
        ..*lb
    };
    let lb = &lb;
    let mut tried: Vec<Arc<Host>> = Vec::new();
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let end = first_end(&ends);
        let deadline = end.map(|(at, _)| at);
        let avoid = retry.as_ref().filter(|r| r.policy().previous_hosts);
        let Some(host) = pick(
            cluster,
            lb,
            avoid.map(|r| r.policy().host_selection_max_attempts),
            &tried,
        ) else {
            return Err((Local::NoHealthyUpstream, attempt));
        };
        trail.host = Some(host.addr);
        let body = if attempt == 1 {
            first_body.take().unwrap_or_else(ReqBody::empty)
        } else {
            match out.replay.as_ref().and_then(Replay::again) {
                Some(b) => ReqBody::Replay(b),
                None => ReqBody::empty(),
            }
        };
        // Before response headers nothing moves upstream: the idle timeout counts like the
        // per-try one (whichever is shorter), each with its own stat.
        let idle_first = match (out.per_try_idle, out.per_try) {
            (Some(i), Some(p)) => i < p,
            (i, _) => i.is_some(),
        };
        let per_try = match (out.per_try, out.per_try_idle) {
            (Some(p), Some(i)) => Some(p.min(i)),
            (p, i) => p.or(i),
        };
        let try_end = per_try.map(|p| Instant::now() + p);
        let use_h2 = !out.upgrade
            && match cluster.cfg.protocol {
                UpstreamProtocol::Http2 => true,
                UpstreamProtocol::Http1 => false,
                UpstreamProtocol::Downstream => out.parts.version == Version::HTTP_2,
                UpstreamProtocol::Auto => host.pool.auto_is_h2(&host).await.unwrap_or(false),
            };
        // Envoy's expected timeout: the route timeout less the whole milliseconds elapsed,
        // or the per-try timeout when shorter.
        let elapsed = Duration::from_millis(started.elapsed().as_millis() as u64);
        let expected = match (out.per_try, out.timeout.map(|t| t.saturating_sub(elapsed))) {
            (Some(p), Some(r)) => Some(p.min(r)),
            (p, r) => p.or(r),
        };
        let expected = expected.filter(|_| out.expected_header);
        let req = attempt_request(&out, &host, body, use_h2, attempt, expected);
        let alpn = out
            .alpn
            .as_deref()
            .and_then(|a| a.for_upstream(use_h2, out.parts.version == Version::HTTP_10));
        let send = async {
            if use_h2 {
                host.pool.send_h2(&host, req, alpn).await
            } else {
                host.pool.send_h1(&host, req, alpn).await
            }
        };
        let tried_now = {
            let mut send = std::pin::pin!(send);
            loop {
                let end = first_end(&ends);
                let per_try_first = match (try_end, end) {
                    (Some(t), Some((e, _))) => t < e,
                    (t, _) => t.is_some(),
                };
                let at = if per_try_first {
                    try_end
                } else {
                    end.map(|(at, _)| at)
                };
                let result = match at {
                    None => Some(send.as_mut().await),
                    Some(at) => tokio::select! {
                        r = send.as_mut() => Some(r),
                        () = tokio::time::sleep_until(at) => None,
                    },
                };
                match result {
                    Some(Ok((r, a))) => break Tried::Answer(r, a),
                    Some(Err(e)) => break Tried::Failed(e),
                    None if per_try_first => break Tried::PerTryTimeout,
                    None => {
                        let e = end.map_or(End::Route, |(_, e)| e);
                        // The request deadline only counts while the request is incomplete.
                        let complete = out
                            .request_deadline
                            .as_ref()
                            .is_some_and(|(_, b)| b.finished());
                        if e == End::Request && complete {
                            ends[3].0 = None;
                            continue;
                        }
                        break Tried::Timeout(e);
                    }
                }
            }
        };
        report(cluster, &host, &tried_now);
        if !matches!(tried_now, Tried::Failed(UpstreamError::Overflow)) {
            cs.upstream_rq_total.inc();
            host.stats.rq_total.fetch_add(1, Relaxed);
        }
        let retriable = match (&tried_now, retry.as_ref()) {
            (_, None) => false,
            (Tried::Answer(r, _), Some(s)) => s.retriable_response(r.status(), r.headers()),
            (Tried::Failed(UpstreamError::Overflow), _) => false,
            (Tried::Failed(e), _) if e.is_downstream_body() => false,
            (Tried::Failed(e), Some(s)) => s.retriable_failure(failure(e), !e.is_connect()),
            (Tried::PerTryTimeout, Some(s)) => s.retriable_failure(Failure::Timeout, true),
            (Tried::Timeout(_), _) => false,
        };
        if let Tried::PerTryTimeout = tried_now {
            if idle_first {
                cs.upstream_rq_per_try_idle_timeout.inc();
            } else {
                cs.upstream_rq_per_try_timeout.inc();
            }
            host.stats.rq_timeout.fetch_add(1, Relaxed);
        }
        if retriable {
            let scheduled = schedule_retry(cluster, retry.as_mut(), out.replay.as_ref());
            trail.retries_exhausted = scheduled.is_err();
            if let Ok(wait) = scheduled {
                // A retried answer is not charged to `upstream_rq_<code>`, as in Envoy.
                if let Tried::Answer(..) = &tried_now {
                    host.stats.rq_error.fetch_add(1, Relaxed);
                }
                drop(tried_now);
                tried.push(host);
                let slept = match deadline {
                    Some(d) => tokio::time::timeout_at(d, tokio::time::sleep(wait))
                        .await
                        .is_ok(),
                    None => {
                        tokio::time::sleep(wait).await;
                        true
                    }
                };
                cluster.limits.retries.release();
                if !slept {
                    let e = end.map_or(End::Route, |(_, e)| e);
                    return Err((timeout(cluster, &host_of(&tried), e), attempt));
                }
                continue;
            }
        }
        return match tried_now {
            Tried::Answer(resp, active) => {
                if let Some(c) = &active.conn {
                    trail.local = c.local;
                    trail.peer_san = c.peer_san.clone();
                }
                trail.local_san = host.pool.tls().and_then(|t| t.local_uri_cached());
                if attempt > 1 && !retriable {
                    cs.upstream_rq_retry_success.inc();
                }
                Ok(Answer {
                    resp,
                    active,
                    host,
                    attempts: attempt,
                })
            }
            Tried::Failed(UpstreamError::Overflow) => Err((Local::Overflow, attempt)),
            Tried::Failed(e) if e.is_downstream_body() => Err((Local::DownstreamBody, attempt)),
            Tried::Failed(e) => {
                host.stats.rq_error.fetch_add(1, Relaxed);
                Err((Local::Failed(e, attempt > 1), attempt))
            }
            Tried::PerTryTimeout => Err((Local::Timeout, attempt)),
            Tried::Timeout(e) => Err((timeout(cluster, &host, e), attempt)),
        };
    }
}

fn host_of(tried: &[Arc<Host>]) -> Arc<Host> {
    tried[tried.len() - 1].clone()
}

/// The route timeout or a stream limit fired.
fn timeout(cluster: &ClusterRt, host: &Host, end: End) -> Local {
    match end {
        End::Route => {
            cluster.stats.upstream_rq_timeout.inc();
            host.stats.rq_timeout.fetch_add(1, Relaxed);
            Local::Timeout
        }
        End::MaxDuration => Local::MaxDuration,
        End::Idle => Local::Idle,
        End::Request => Local::RequestTimeout,
    }
}

/// Whether a retry may go ahead (retries left, the retry circuit breaker, a body that can be
/// sent again), with the back-off to wait first; counts Envoy's retry stats either way. The
/// caller releases the retry circuit breaker after the back-off. `Err(true)`: the retries
/// ran out (Envoy's URX).
fn schedule_retry(
    cluster: &ClusterRt,
    retry: Option<&mut RetryState<'_>>,
    replay: Option<&Replay>,
) -> Result<Duration, bool> {
    let Some(retry) = retry else {
        return Err(false);
    };
    let cs = &cluster.stats;
    if replay.is_some_and(Replay::overflowed) {
        cs.retry_or_shadow_abandoned.inc();
        return Err(false);
    }
    if !retry.take() {
        cs.upstream_rq_retry_limit_exceeded.inc();
        return Err(true);
    }
    if !cluster.limits.retries.try_acquire() {
        cs.upstream_rq_retry_overflow.inc();
        return Err(false);
    }
    cs.upstream_rq_retry.inc();
    cs.upstream_rq_retry_backoff_exponential.inc();
    Ok(retry.back_off())
}

/// Tells outlier detection how the attempt went.
fn report(cluster: &ClusterRt, host: &Arc<Host>, t: &Tried) {
    use crate::cluster::outlier::Outcome;
    let outcome = match t {
        Tried::Timeout(_) | Tried::PerTryTimeout => Some(Outcome::Timeout),
        Tried::Answer(r, _) => Some(Outcome::Status(r.status().as_u16())),
        Tried::Failed(UpstreamError::Overflow) => None,
        Tried::Failed(e) if e.is_downstream_body() => None,
        Tried::Failed(e) if e.is_connect() => Some(Outcome::ConnectFailed),
        Tried::Failed(_) => Some(Outcome::Reset),
    };
    if let Some(o) = outcome {
        cluster.report(host, o);
    }
}
