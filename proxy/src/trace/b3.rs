//! B3 propagation for the Zipkin tracer: `x-b3-*` (or a single `b3`) in, `x-b3-*` out.

use super::{host_of, start_tags, Reporter, Span, Start};
use crate::config::trace::ZipkinCfg;
use http::{HeaderMap, HeaderName, HeaderValue};
use std::sync::Arc;
use std::time::SystemTime;

static TRACE_ID: HeaderName = HeaderName::from_static("x-b3-traceid");
static SPAN_ID: HeaderName = HeaderName::from_static("x-b3-spanid");
static PARENT_ID: HeaderName = HeaderName::from_static("x-b3-parentspanid");
static SAMPLED: HeaderName = HeaderName::from_static("x-b3-sampled");
static B3: HeaderName = HeaderName::from_static("b3");

fn hex_u64(s: &str) -> Option<u64> {
    (s.len() == 16)
        .then(|| u64::from_str_radix(s, 16).ok())
        .flatten()
}

/// An incoming B3 context: (trace hi, trace lo, span id) and the sampled flag, if given.
type Incoming = (Option<(u64, u64, u64)>, Option<bool>);

fn sampled_flag(s: &str) -> Option<bool> {
    match s {
        "1" | "true" | "d" => Some(true),
        "0" | "false" => Some(false),
        _ => None,
    }
}

/// B3 from the request (`x-b3-*`, else the single `b3` header); `Err` when malformed.
fn incoming(h: &HeaderMap) -> Result<Incoming, ()> {
    let get = |n: &HeaderName| h.get(n).and_then(|v| v.to_str().ok());
    let trace = |t: &str| -> Result<(u64, u64), ()> {
        match t.len() {
            16 => Ok((0, hex_u64(t).ok_or(())?)),
            32 => Ok((hex_u64(&t[..16]).ok_or(())?, hex_u64(&t[16..]).ok_or(())?)),
            _ => Err(()),
        }
    };
    let sampled = get(&SAMPLED).and_then(sampled_flag);
    if let (Some(t), Some(s)) = (get(&TRACE_ID), get(&SPAN_ID)) {
        let (hi, lo) = trace(t)?;
        return Ok((Some((hi, lo, hex_u64(s).ok_or(())?)), sampled));
    }
    if get(&TRACE_ID).is_some() || get(&SPAN_ID).is_some() {
        return Err(());
    }
    if let Some(b) = get(&B3) {
        let parts: Vec<&str> = b.split('-').collect();
        return match parts.as_slice() {
            [one] => Ok((None, sampled_flag(one))),
            [t, s, rest @ ..] => {
                let (hi, lo) = trace(t)?;
                Ok((
                    Some((hi, lo, hex_u64(s).ok_or(())?)),
                    rest.first().and_then(|f| sampled_flag(f)),
                ))
            }
            _ => Err(()),
        };
    }
    Ok((None, sampled))
}

/// The Zipkin side of [`super::start`]: B3 in and out; the caller's sampled flag wins.
pub(super) fn start(
    s: &Start<'_>,
    tracer: &Arc<ZipkinCfg>,
    decided: bool,
    h: &mut HeaderMap,
) -> Option<Box<Span>> {
    let Ok((ctx, sampled_in)) = incoming(h) else {
        return None;
    };
    let sampled = sampled_in.unwrap_or(decided);
    let server_span = !s.outbound;
    let (trace_hi, trace_lo, id, parent, shared) = match ctx {
        Some((hi, lo, caller)) if tracer.shared_span_context && server_span => {
            (hi, lo, caller, None, true)
        }
        Some((hi, lo, caller)) => (hi, lo, fastrand::u64(..), Some(caller), false),
        None => {
            let id = fastrand::u64(..);
            let hi = if tracer.trace_id_128bit {
                fastrand::u64(..)
            } else {
                0
            };
            (hi, id, id, None, tracer.shared_span_context && server_span)
        }
    };
    let trace = if tracer.trace_id_128bit || trace_hi != 0 {
        format!("{trace_hi:016x}{trace_lo:016x}")
    } else {
        format!("{trace_lo:016x}")
    };
    let set = |h: &mut HeaderMap, n: &HeaderName, v: String| {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(n.clone(), v);
        }
    };
    set(h, &TRACE_ID, trace);
    set(h, &SPAN_ID, format!("{id:016x}"));
    match parent {
        Some(p) => set(h, &PARENT_ID, format!("{p:016x}")),
        None => {
            h.remove(&PARENT_ID);
        }
    }
    set(h, &SAMPLED, if sampled { "1" } else { "0" }.into());
    if !sampled {
        return None;
    }
    let host = host_of(h);
    Some(Box::new(Span {
        trace_hi,
        trace_lo,
        id,
        parent,
        shared,
        name: s.operation.map_or_else(|| host.to_string(), str::to_string),
        client: !server_span,
        start: SystemTime::now(),
        started: std::time::Instant::now(),
        max_path: s.cfg.max_path_tag_length,
        tags: start_tags(s, h),
        trace_state: String::new(),
        reporter: Reporter::Zipkin(super::zipkin::Reporter::for_tracer(tracer, s.server)),
    }))
}
