//! Request tracing as Envoy's connection manager does it with the Zipkin tracer: the sampling
//! decision (stamped into `x-request-id`), B3 propagation to the upstream, and one span per
//! sampled request, reported when the stream ends.

mod batch;
pub mod otel;
pub mod otlp;
pub mod zipkin;

use crate::config::trace::{TagValue, Tracer, TracingCfg};
use http::{HeaderMap, HeaderName, HeaderValue};
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

static TRACE_ID: HeaderName = HeaderName::from_static("x-b3-traceid");
static SPAN_ID: HeaderName = HeaderName::from_static("x-b3-spanid");
static PARENT_ID: HeaderName = HeaderName::from_static("x-b3-parentspanid");
static SAMPLED: HeaderName = HeaderName::from_static("x-b3-sampled");
static B3: HeaderName = HeaderName::from_static("b3");

/// What every span says of this proxy: `node.id`, `node.cluster`, the zone, the host's IP.
#[derive(Debug, Default)]
pub struct Local {
    pub node_id: String,
    pub service: String,
    pub zone: String,
    pub ip: Option<std::net::IpAddr>,
}

static LOCAL: OnceLock<Local> = OnceLock::new();
static BOOTSTRAP_TRACER: OnceLock<Tracer> = OnceLock::new();
static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
static TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// Set once at start-up: the node, and the bootstrap's `tracing.http` tracer.
pub fn init(local: Local, tracer: Option<Tracer>) {
    let _ = LOCAL.set(local);
    if let Some(t) = tracer {
        let _ = BOOTSTRAP_TRACER.set(t);
    }
}

/// Whether the bootstrap names a tracer.
pub fn bootstrap_tracer() -> bool {
    BOOTSTRAP_TRACER.get().is_some()
}

/// `http.<prefix>.tracing.*`.
#[derive(Debug)]
pub struct TracingStats {
    pub random_sampling: crate::stats::Counter,
    pub service_forced: crate::stats::Counter,
    pub client_enabled: crate::stats::Counter,
    pub not_traceable: crate::stats::Counter,
    pub health_check: crate::stats::Counter,
}

impl TracingStats {
    pub fn new(prefix: &str) -> TracingStats {
        let r = crate::stats::registry();
        let c = |n: &str| r.counter(crate::stats::Scope::Http(prefix), &format!("tracing.{n}"));
        TracingStats {
            random_sampling: c("random_sampling"),
            service_forced: c("service_forced"),
            client_enabled: c("client_enabled"),
            not_traceable: c("not_traceable"),
            health_check: c("health_check"),
        }
    }
}

/// A sampled request's span, until its stream ends.
#[derive(Debug, Clone)]
pub struct Span {
    trace_hi: u64,
    trace_lo: u64,
    id: u64,
    parent: Option<u64>,
    shared: bool,
    name: String,
    client: bool,
    start: SystemTime,
    started: std::time::Instant,
    max_path: usize,
    /// Custom tags resolved at the start of the request.
    tags: Vec<(String, String)>,
    /// W3C `tracestate` (OpenTelemetry).
    trace_state: String,
    reporter: Reporter,
}

/// Where a span goes when it ends.
#[derive(Debug, Clone)]
enum Reporter {
    Zipkin(Arc<zipkin::Reporter>),
    Otel(Arc<otel::Reporter>),
}

/// The first 8 hex digits of an `x-request-id`, as Envoy samples on them.
fn rid_value(rid: &str) -> Option<u64> {
    u64::from_str_radix(rid.get(..8)?, 16).ok()
}

/// Envoy's trace decision for a request: the reason it is traced, or none.
fn decide(cfg: &TracingCfg, h: &mut HeaderMap, internal: bool, stats: &TracingStats) -> bool {
    let Some(rid) = h
        .get(&crate::http::headers::X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
    else {
        stats.not_traceable.inc();
        return false;
    };
    let Some(v) = rid_value(&rid) else {
        stats.not_traceable.inc();
        return false;
    };
    let sample = |per_10k: u32| v % 10_000 < u64::from(per_10k);
    let stamped = rid.len() == 36 && matches!(rid.as_bytes()[14], b'9' | b'a' | b'b');
    let (traced, mark) = if stamped {
        stats.random_sampling.inc();
        (true, None)
    } else if h.contains_key("x-client-trace-id") && sample(cfg.client) {
        stats.client_enabled.inc();
        (true, Some(b'b'))
    } else if internal && h.contains_key("x-envoy-force-trace") {
        stats.service_forced.inc();
        (true, Some(b'a'))
    } else if sample(cfg.random) {
        stats.random_sampling.inc();
        (true, Some(b'9'))
    } else {
        stats.not_traceable.inc();
        (false, None)
    };
    if !traced || !sample(cfg.overall) {
        return false;
    }
    if let (Some(m), true) = (mark, rid.len() == 36) {
        let mut b = rid.into_bytes();
        b[14] = m;
        if let Ok(v) = HeaderValue::from_bytes(&b) {
            h.insert(crate::http::headers::X_REQUEST_ID.clone(), v);
        }
    }
    true
}

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

/// What the router knows of a request when tracing starts.
pub struct Start<'a> {
    pub cfg: &'a TracingCfg,
    pub stats: &'a TracingStats,
    pub server: &'a Arc<crate::snapshot::Server>,
    pub internal: bool,
    /// The listener's direction is OUTBOUND: the span is a CLIENT span.
    pub outbound: bool,
    pub operation: Option<&'a str>,
}

/// Decides, propagates the trace context in `h` (B3 for Zipkin, W3C for OpenTelemetry), and
/// returns the span to finish when the request is sampled.
pub fn start(s: &Start<'_>, h: &mut HeaderMap) -> Option<Box<Span>> {
    let tracer = s.cfg.provider.as_ref().or(BOOTSTRAP_TRACER.get())?;
    let decided = decide(s.cfg, h, s.internal, s.stats);
    let tracer = match tracer {
        Tracer::Zipkin(z) => z,
        Tracer::Otel(o) => return start_otel(s, o, decided, h),
    };
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
        reporter: Reporter::Zipkin(zipkin::Reporter::for_tracer(tracer, s.server)),
    }))
}

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
fn start_otel(
    s: &Start<'_>,
    o: &Arc<crate::config::trace::OtelCfg>,
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
        reporter: Reporter::Otel(otel::Reporter::for_tracer(o, s.server)),
    }))
}

fn host_of(h: &HeaderMap) -> &str {
    h.get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// The custom tags known when the request starts (literals, environment, headers).
fn start_tags(s: &Start<'_>, h: &HeaderMap) -> Vec<(String, String)> {
    s.cfg
        .custom_tags
        .iter()
        .filter_map(|(name, v)| {
            let value = match v {
                TagValue::Literal(l) => Some(l.clone()),
                TagValue::Header(n, d) => h
                    .get(n)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
                    .or_else(|| d.clone()),
                // Read once the filters have written their metadata.
                TagValue::Metadata { .. } => None,
            }?;
            Some((name.clone(), value))
        })
        .collect()
}

impl Span {
    /// Custom tags on the request's dynamic metadata, once the filters wrote it.
    pub fn metadata_tags(&mut self, cfg: &TracingCfg, metadata: &[(&'static str, String, String)]) {
        for (name, v) in &cfg.custom_tags {
            if let TagValue::Metadata {
                filter,
                key,
                default,
            } = v
            {
                let value = metadata
                    .iter()
                    .find(|(f, k, _)| f == filter && k == key)
                    .map(|(_, _, v)| v.clone())
                    .or_else(|| default.clone());
                if let Some(value) = value {
                    self.tags.push((name.clone(), value));
                }
            }
        }
    }
}

/// Reports a finished stream's span.
pub fn finish(span: &Span, info: &crate::stream_info::StreamInfo) {
    match &span.reporter {
        Reporter::Zipkin(r) => r.push(zipkin::span_json(span, info)),
        Reporter::Otel(r) => r.push(otel::span(span, info)),
    }
}

/// The tags Envoy puts on a request's span, in Envoy's OpenTelemetry order (Zipkin's JSON
/// object has no order).
pub(crate) fn request_tags(
    span: &Span,
    info: &crate::stream_info::StreamInfo,
) -> Vec<(String, String)> {
    let local = LOCAL.get();
    let mut tags: Vec<(String, String)> = Vec::with_capacity(24);
    let mut tag = |k: &str, v: String| tags.push((k.to_string(), v));
    if let Some(l) = local {
        tag("node_id", l.node_id.clone());
        tag("zone", l.zone.clone());
    }
    let header = |n: &str| {
        info.request
            .as_ref()
            .and_then(|r| r.headers.get(n))
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    if let Some(r) = &info.request {
        tag(
            "guid:x-request-id",
            header("x-request-id").unwrap_or_default(),
        );
        let host = header("host").unwrap_or_default();
        let path: String = r.path.chars().take(span.max_path).collect();
        tag("http.url", format!("{}://{host}{path}", r.scheme));
        tag("http.method", r.method.clone());
    }
    tag(
        "downstream_cluster",
        header("x-envoy-downstream-service-cluster").unwrap_or_else(|| "-".into()),
    );
    tag(
        "user_agent",
        header("user-agent").unwrap_or_else(|| "-".into()),
    );
    tag("http.protocol", info.protocol.unwrap_or("").to_string());
    tag(
        "peer.address",
        info.downstream.remote.ip().to_canonical().to_string(),
    );
    tag("request_size", info.bytes_received.to_string());
    tag("response_size", info.bytes_sent.to_string());
    tag("component", "proxy".into());
    if let Some((name, observed)) = &info.upstream.cluster {
        tag("upstream_cluster", name.to_string());
        tag("upstream_cluster.name", observed.to_string());
    }
    tag("http.status_code", info.code.to_string());
    let flags: Vec<&str> = info.flags.iter().map(|f| f.code()).collect();
    tag(
        "response_flags",
        if flags.is_empty() {
            "-".into()
        } else {
            flags.join(",")
        },
    );
    if info.code >= 500 {
        tag("error", "true".into());
    }
    for (k, v) in &span.tags {
        if let Some(t) = tags.iter_mut().find(|(n, _)| n == k) {
            t.1 = v.clone();
        } else {
            tags.push((k.clone(), v.clone()));
        }
    }
    tags
}
