//! W3C trace context for the OpenTelemetry tracer: `traceparent` and `tracestate`.

use super::{host_of, start_tags, Reporter, Span, Start};
use crate::config::trace::OtelCfg;
use http::{HeaderMap, HeaderName, HeaderValue};
use std::sync::Arc;
use std::time::SystemTime;

static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
static TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// W3C `traceparent`: (trace hi, trace lo, parent span id, sampled).
fn traceparent(v: &str) -> Option<(u64, u64, u64, bool)> {
    let parts: Vec<&str> = v.split('-').collect();
    let [version, trace, span, flags] = parts.as_slice() else {
        return None;
    };
    if version.len() != 2 || trace.len() != 32 || span.len() != 16 || flags.len() != 2 {
        return None;
    }
    u8::from_str_radix(version, 16).ok()?;
    let hi = u64::from_str_radix(&trace[..16], 16).ok()?;
    let lo = u64::from_str_radix(&trace[16..], 16).ok()?;
    let p = u64::from_str_radix(span, 16).ok()?;
    let f = u8::from_str_radix(flags, 16).ok()?;
    ((hi, lo) != (0, 0) && p != 0).then_some((hi, lo, p, f & 1 == 1))
}

/// OpenTelemetry: W3C trace context in and out; sampled only when both this proxy's decision
/// and the caller's flag say so.
pub(super) fn start(
    s: &Start<'_>,
    o: &Arc<OtelCfg>,
    decided: bool,
    h: &mut HeaderMap,
) -> Option<Box<Span>> {
    let incoming = match h.get(&TRACEPARENT) {
        Some(v) => Some(traceparent(v.to_str().ok()?)?),
        None => None,
    };
    let state = if incoming.is_some() {
        h.get_all(&TRACESTATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join(",")
    } else {
        String::new()
    };
    let id = fastrand::u64(..);
    let (trace_hi, trace_lo, parent, sampled) = match incoming {
        Some((hi, lo, p, flag)) => (hi, lo, Some(p), decided && flag),
        None => (fastrand::u64(..), fastrand::u64(..), None, decided),
    };
    let tp = format!(
        "00-{trace_hi:016x}{trace_lo:016x}-{id:016x}-{}",
        if sampled { "01" } else { "00" }
    );
    if let Ok(v) = HeaderValue::from_str(&tp) {
        h.insert(TRACEPARENT.clone(), v);
    }
    if let Ok(v) = HeaderValue::from_str(&state) {
        h.insert(TRACESTATE.clone(), v);
    }
    if !sampled {
        return None;
    }
    let host = host_of(h);
    let name = match (s.operation, s.outbound) {
        (Some(op), _) => op.to_string(),
        (None, true) => format!("egress {host}"),
        (None, false) => "ingress".to_string(),
    };
    Some(Box::new(Span {
        trace_hi,
        trace_lo,
        id,
        parent,
        shared: false,
        name,
        client: s.outbound,
        start: SystemTime::now(),
        started: std::time::Instant::now(),
        max_path: s.cfg.max_path_tag_length,
        tags: start_tags(s, h),
        trace_state: state,
        reporter: Reporter::Otel(super::otel::Reporter::for_tracer(o, s.server)),
    }))
}
