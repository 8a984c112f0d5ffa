//! Zipkin v2 JSON spans and their reporter: spans are buffered and POSTed to the collector
//! cluster when five are waiting or every five seconds, as Envoy does; only a 202 counts as
//! sent, and nothing is retried.

use super::batch::{shared, Pending, Pushed};
use super::Span;
use crate::config::trace::ZipkinCfg;
use crate::stats::{registry, Counter, Scope};
use crate::stream_info::StreamInfo;
use serde_json::{json, Map, Value};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, UNIX_EPOCH};

const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

struct Stats {
    spans_sent: Counter,
    reports_sent: Counter,
    reports_dropped: Counter,
    reports_failed: Counter,
    reports_skipped_no_cluster: Counter,
    timer_flushed: Counter,
}

fn stats() -> &'static Stats {
    static S: OnceLock<Stats> = OnceLock::new();
    S.get_or_init(|| {
        let c = |n: &str| registry().counter(Scope::Named("tracing.zipkin"), n);
        Stats {
            spans_sent: c("spans_sent"),
            reports_sent: c("reports_sent"),
            reports_dropped: c("reports_dropped"),
            reports_failed: c("reports_failed"),
            reports_skipped_no_cluster: c("reports_skipped_no_cluster"),
            timer_flushed: c("timer_flushed"),
        }
    })
}

/// One collector's buffer.
#[derive(Debug)]
pub struct Reporter {
    cfg: Arc<ZipkinCfg>,
    server: Weak<crate::snapshot::Server>,
    pending: Pending<Value>,
}

impl Reporter {
    /// The reporter of this tracer config (one per distinct config, made on first use).
    pub fn for_tracer(
        cfg: &Arc<ZipkinCfg>,
        server: &Arc<crate::snapshot::Server>,
    ) -> Arc<Reporter> {
        static ALL: OnceLock<Mutex<Vec<Arc<Reporter>>>> = OnceLock::new();
        shared(
            ALL.get_or_init(Default::default),
            |r| *r.cfg == **cfg,
            || Reporter {
                cfg: cfg.clone(),
                server: Arc::downgrade(server),
                pending: Pending::new(usize::MAX),
            },
            |r| {
                stats().timer_flushed.inc();
                r.send(r.pending.take());
            },
        )
    }

    pub fn push(self: &Arc<Self>, span: Value) {
        if let Pushed::Full(spans) | Pushed::Dropped(spans) = self.pending.push(span) {
            self.send(spans);
        }
    }

    fn send(&self, spans: Vec<Value>) {
        if spans.is_empty() {
            return;
        }
        let st = stats();
        st.spans_sent.add(spans.len() as u64);
        let Some(server) = self.server.upgrade() else {
            return;
        };
        let Some(cluster) = server
            .snapshot
            .load()
            .cluster(&self.cfg.collector_cluster)
            .cloned()
        else {
            st.reports_skipped_no_cluster.inc();
            return;
        };
        let body = Value::Array(spans).to_string();
        let cfg = self.cfg.clone();
        tokio::spawn(async move {
            let lb = crate::cluster::LbContext {
                original_dst: None,
                headers: None,
                hash: None,
                local_cluster: None,
            };
            let Some(host) = cluster.pick(&lb) else {
                st.reports_dropped.inc();
                return;
            };
            let req = http::Request::post(cfg.collector_endpoint.as_str())
                .header(http::header::HOST, cfg.collector_host.as_str())
                .header(http::header::CONTENT_TYPE, "application/json")
                .header("x-envoy-internal", "true")
                .header(
                    "x-envoy-expected-rq-timeout-ms",
                    REQUEST_TIMEOUT.as_millis().to_string(),
                )
                .body(crate::http::body::ReqBody::Full(Some(body.into())));
            let Ok(req) = req else { return };
            let sent = tokio::time::timeout(REQUEST_TIMEOUT, async {
                let (resp, _active) = host.pool.send_h1(&host, req, None).await.ok()?;
                let status = resp.status();
                let _ = http_body_util::BodyExt::collect(resp.into_body()).await;
                Some(status)
            })
            .await;
            match sent {
                Ok(Some(s)) if s == http::StatusCode::ACCEPTED => st.reports_sent.inc(),
                Ok(Some(_)) => st.reports_dropped.inc(),
                _ => st.reports_failed.inc(),
            }
        });
    }
}

fn micros(t: std::time::SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// The span of a finished stream, in Zipkin's v2 JSON.
pub fn span_json(span: &Span, info: &StreamInfo) -> Value {
    let local = super::LOCAL.get();
    let tags: Map<String, Value> = super::tags::request_tags(span, info)
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    let duration = span.started.elapsed().as_micros() as u64;
    let mut endpoint = json!({
        "serviceName": local.map_or("", |l| l.service.as_str()),
        "port": 0,
    });
    match local.and_then(|l| l.ip) {
        Some(std::net::IpAddr::V4(ip)) => endpoint["ipv4"] = ip.to_string().into(),
        Some(std::net::IpAddr::V6(ip)) => endpoint["ipv6"] = ip.to_string().into(),
        None => {}
    }
    let trace = if span.trace_hi != 0 {
        format!("{:016x}{:016x}", span.trace_hi, span.trace_lo)
    } else {
        format!("{:016x}", span.trace_lo)
    };
    let mut v = json!({
        "traceId": trace,
        "id": format!("{:016x}", span.id),
        "name": span.name,
        "kind": if span.client { "CLIENT" } else { "SERVER" },
        "timestamp": micros(span.start),
        "duration": duration,
        "localEndpoint": endpoint,
        "annotations": [{
            "timestamp": micros(std::time::SystemTime::now()),
            "value": if span.client { "cr" } else { "ss" },
        }],
        "tags": tags,
    });
    if let Some(p) = span.parent {
        v["parentId"] = format!("{p:016x}").into();
    }
    if span.shared {
        v["shared"] = true.into();
    }
    v
}
