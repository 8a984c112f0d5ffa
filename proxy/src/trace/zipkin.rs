//! Zipkin v2 JSON spans and their reporter: spans are buffered and POSTed to the collector
//! cluster when five are waiting or every five seconds, as Envoy does; only a 202 counts as
//! sent, and nothing is retried.

use super::Span;
use crate::config::trace::ZipkinCfg;
use crate::stats::{registry, Counter, Scope};
use crate::stream_info::StreamInfo;
use serde_json::{json, Map, Value};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, UNIX_EPOCH};

const MIN_FLUSH_SPANS: usize = 5;
const FLUSH_INTERVAL: Duration = Duration::from_secs(5);
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
    pending: Mutex<Vec<Value>>,
}

impl Reporter {
    /// The reporter of this tracer config (one per distinct config, made on first use).
    pub fn for_tracer(
        cfg: &Arc<ZipkinCfg>,
        server: &Arc<crate::snapshot::Server>,
    ) -> Arc<Reporter> {
        static ALL: OnceLock<Mutex<Vec<Arc<Reporter>>>> = OnceLock::new();
        let mut all = ALL
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(r) = all.iter().find(|r| *r.cfg == **cfg) {
            return r.clone();
        }
        let r = Arc::new(Reporter {
            cfg: cfg.clone(),
            server: Arc::downgrade(server),
            pending: Mutex::default(),
        });
        let weak = Arc::downgrade(&r);
        crate::util::every(FLUSH_INTERVAL, move || {
            let Some(r) = weak.upgrade() else {
                return false;
            };
            stats().timer_flushed.inc();
            r.flush();
            true
        });
        all.push(r.clone());
        r
    }

    pub fn push(self: &Arc<Self>, span: Value) {
        let full = {
            let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            p.push(span);
            p.len() >= MIN_FLUSH_SPANS
        };
        if full {
            self.flush();
        }
    }

    fn flush(&self) {
        let spans = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
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
    let mut tags = Map::new();
    let mut tag = |k: &str, v: String| {
        tags.insert(k.to_string(), Value::String(v));
    };
    tag("component", "proxy".into());
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
    tag("http.protocol", info.protocol.unwrap_or("").to_string());
    tag(
        "downstream_cluster",
        header("x-envoy-downstream-service-cluster").unwrap_or_else(|| "-".into()),
    );
    tag(
        "user_agent",
        header("user-agent").unwrap_or_else(|| "-".into()),
    );
    tag(
        "peer.address",
        info.downstream.remote.ip().to_canonical().to_string(),
    );
    tag("request_size", info.bytes_received.to_string());
    tag("response_size", info.bytes_sent.to_string());
    let flags: Vec<&str> = info.flags.iter().map(|f| f.code()).collect();
    tag(
        "response_flags",
        if flags.is_empty() {
            "-".into()
        } else {
            flags.join(",")
        },
    );
    if let Some((name, observed)) = &info.upstream.cluster {
        tag("upstream_cluster", name.to_string());
        tag("upstream_cluster.name", observed.to_string());
    }
    tag("http.status_code", info.code.to_string());
    if info.code >= 500 {
        tag("error", "true".into());
    }
    for (k, v) in &span.tags {
        tag(k, v.clone());
    }
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
