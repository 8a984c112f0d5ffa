//! Request tracing as Envoy's connection manager does it with the Zipkin tracer: the sampling
//! decision (stamped into `x-request-id`), B3 propagation to the upstream, and one span per
//! sampled request, reported when the stream ends.

mod b3;
mod batch;
pub mod otel;
pub mod otlp;
mod tags;
mod w3c;
pub mod zipkin;

use crate::config::trace::{TagValue, Tracer, TracingCfg};
use http::{HeaderMap, HeaderValue};
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

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

/// Tracing for a request of `ctx`'s connection manager (which traces) about to be routed.
pub fn start_request(
    ctx: &crate::http::ConnCtx,
    route: Option<&crate::config::route::Route>,
    h: &mut HeaderMap,
) -> Option<Box<Span>> {
    let cfg = ctx.hcm.tracing.as_deref()?;
    let s = Start {
        cfg,
        stats: &ctx.hcm.tracing_stats,
        server: &ctx.server,
        internal: h.get("x-envoy-internal").is_some_and(|v| v == "true"),
        outbound: ctx.outbound,
        operation: route.and_then(|r| r.operation.as_deref()),
    };
    start(&s, h)
}

/// Decides, propagates the trace context in `h` (B3 for Zipkin, W3C for OpenTelemetry), and
/// returns the span to finish when the request is sampled.
pub fn start(s: &Start<'_>, h: &mut HeaderMap) -> Option<Box<Span>> {
    let tracer = s.cfg.provider.as_ref().or(BOOTSTRAP_TRACER.get())?;
    let decided = decide(s.cfg, h, s.internal, s.stats);
    let tracer = match tracer {
        Tracer::Zipkin(z) => z,
        Tracer::Otel(o) => return w3c::start(s, o, decided, h),
    };
    b3::start(s, tracer, decided, h)
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
