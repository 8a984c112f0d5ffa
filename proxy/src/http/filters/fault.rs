//! Fault injection: a delay, then perhaps an abort, on the requests the configuration selects,
//! with the percentages from the configuration or (for `header_*` faults) the request.

use super::FilterRequest;
use crate::config::filters::fault::{AbortKind, DelayKind, FaultCfg};
use crate::config::filters::{FaultStats, Percent};
use crate::http::reply::Body;
use crate::stats::ActiveGuard;
use http::{HeaderMap, Response, StatusCode};
use std::sync::Arc;
use std::time::Duration;

const ABORT: &str = "x-envoy-fault-abort-request";
const ABORT_GRPC: &str = "x-envoy-fault-abort-grpc-request";
const ABORT_PCT: &str = "x-envoy-fault-abort-request-percentage";
const DELAY: &str = "x-envoy-fault-delay-request";
const DELAY_PCT: &str = "x-envoy-fault-delay-request-percentage";
const NODE: &str = "x-envoy-downstream-service-node";
const THROUGHPUT: &str = "x-envoy-fault-throughput-response";
const THROUGHPUT_PCT: &str = "x-envoy-fault-throughput-response-percentage";

fn header<T: std::str::FromStr>(h: &HeaderMap, name: &str) -> Option<T> {
    h.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// A header-controlled fault's percentage: the request's, at most the configuration's.
fn header_percent(h: &HeaderMap, name: &str, cfg: Percent) -> Percent {
    match header::<u32>(h, name) {
        Some(n) => Percent {
            numerator: n.min(cfg.numerator),
            ..cfg
        },
        None => cfg,
    }
}

/// The delay this request gets, if any.
fn delay(cfg: &FaultCfg, h: &HeaderMap) -> Option<Duration> {
    let (kind, pct) = cfg.delay?;
    let d = match kind {
        DelayKind::Fixed(d) => pct.draw().then_some(d)?,
        DelayKind::Header => {
            let ms = header::<u64>(h, DELAY)?;
            header_percent(h, DELAY_PCT, pct)
                .draw()
                .then_some(Duration::from_millis(ms))?
        }
    };
    (d.as_millis() > 0).then_some(d)
}

/// The abort this request gets, if any: an HTTP status or a gRPC status.
fn abort(cfg: &FaultCfg, h: &HeaderMap) -> Option<AbortKind> {
    let (kind, pct) = cfg.abort?;
    match kind {
        AbortKind::Http(_) | AbortKind::Grpc(_) => pct.draw().then_some(kind),
        AbortKind::Header => {
            let http = header::<u16>(h, ABORT).filter(|s| (200..600).contains(s));
            let chosen = match http {
                Some(s) => AbortKind::Http(s),
                None => AbortKind::Grpc(header::<u32>(h, ABORT_GRPC)?),
            };
            header_percent(h, ABORT_PCT, pct).draw().then_some(chosen)
        }
    }
}

/// Counts the request in `active_faults` unless `max_active_faults` is reached.
fn enter(cfg: &FaultCfg, stats: &Arc<FaultStats>) -> Option<ActiveGuard<FaultStats>> {
    if cfg
        .max_active_faults
        .is_some_and(|m| stats.active_faults.get() >= u64::from(m))
    {
        stats.faults_overflow.inc();
        return None;
    }
    Some(ActiveGuard::of(stats, |s| &s.active_faults))
}

/// The response rate this request gets, in bytes a second, if any.
fn rate_limit(cfg: &FaultCfg, h: &HeaderMap) -> Option<u64> {
    let (kbps, pct) = cfg.response_rate_limit?;
    let kbps = match kbps {
        Some(k) => pct.draw().then_some(k)?,
        None => {
            let k = header::<u64>(h, THROUGHPUT).filter(|k| *k > 0)?;
            header_percent(h, THROUGHPUT_PCT, pct).draw().then_some(k)?
        }
    };
    Some(kbps * 1024)
}

pub async fn decode(
    cfg: &FaultCfg,
    stats: &Arc<FaultStats>,
    req: &FilterRequest<'_>,
    effects: &mut super::Effects,
) -> Option<Response<Body>> {
    if cfg.delay.is_none() && cfg.abort.is_none() && cfg.response_rate_limit.is_none() {
        return None;
    }
    if !cfg.upstream_cluster.is_empty() && req.cluster != Some(cfg.upstream_cluster.as_str()) {
        return None;
    }
    let h = req.headers;
    if !cfg.downstream_nodes.is_empty() {
        let node = h.get(NODE).and_then(|v| v.to_str().ok())?;
        if !cfg.downstream_nodes.iter().any(|n| n == node) {
            return None;
        }
    }
    if !cfg.headers.iter().all(|m| m.matches(h)) {
        return None;
    }
    let mut active = None;
    if let Some(rate) = rate_limit(cfg, h) {
        active = Some(enter(cfg, stats)?);
        stats.response_rl_injected.inc();
        effects.throttle = Some(rate);
    }
    if let Some(d) = delay(cfg, h) {
        if active.is_none() {
            active = Some(enter(cfg, stats)?);
        }
        stats.delays_injected.inc();
        tracing::debug!(
            flag = "DI",
            delay_ms = d.as_millis() as u64,
            "fault filter delay"
        );
        tokio::time::sleep(d).await;
    }
    let kind = abort(cfg, h)?;
    if active.is_none() {
        active = Some(enter(cfg, stats)?);
    }
    stats.aborts_injected.inc();
    tracing::debug!(flag = "FI", "fault filter abort");
    let body = if cfg.abort_body.is_empty() {
        "fault filter abort"
    } else {
        cfg.abort_body.as_str()
    };
    let grpc = req.grpc();
    let r = match kind {
        AbortKind::Http(s) => grpc.reply(
            StatusCode::from_u16(s).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
            body,
            None,
        ),
        AbortKind::Grpc(g) => grpc.reply(StatusCode::OK, body, Some(g)),
        AbortKind::Header => return None,
    };
    drop(active);
    Some(r)
}
