//! OpenTelemetry spans (OTLP) and their reporter: buffered and exported to the collector
//! cluster over gRPC (`TraceService/Export`) or HTTP (protobuf) when five are waiting or
//! every five seconds, as Envoy does; nothing is retried.

use super::batch::{shared, Pending, Pushed};
use super::otlp::{
    self, kv, ExportTraceServiceRequest, InstrumentationScope, Resource, ResourceSpans, ScopeSpans,
};
use super::Span;
use crate::config::trace::{OtelCfg, OtelExport};
use crate::stats::{registry, Counter, Scope};
use crate::stream_info::StreamInfo;
use bytes::{BufMut, BytesMut};
use prost::Message;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::UNIX_EPOCH;

struct Stats {
    spans_sent: Counter,
    spans_dropped: Counter,
    timer_flushed: Counter,
}

fn stats() -> &'static Stats {
    static S: OnceLock<Stats> = OnceLock::new();
    S.get_or_init(|| {
        let c = |n: &str| registry().counter(Scope::Named("tracing.opentelemetry"), n);
        Stats {
            spans_sent: c("spans_sent"),
            spans_dropped: c("spans_dropped"),
            timer_flushed: c("timer_flushed"),
        }
    })
}

/// This build as the telemetry SDK and instrumentation scope version.
fn version() -> String {
    format!("ferry/{}/Clean/RELEASE/rustls", crate::VERSION)
}

#[derive(Debug)]
pub struct Reporter {
    cfg: Arc<OtelCfg>,
    server: Weak<crate::snapshot::Server>,
    pending: Pending<otlp::Span>,
}

impl Reporter {
    /// The reporter of this tracer config (one per distinct config, made on first use).
    pub fn for_tracer(cfg: &Arc<OtelCfg>, server: &Arc<crate::snapshot::Server>) -> Arc<Reporter> {
        static ALL: OnceLock<Mutex<Vec<Arc<Reporter>>>> = OnceLock::new();
        shared(
            ALL.get_or_init(Default::default),
            |r| *r.cfg == **cfg,
            || Reporter {
                cfg: cfg.clone(),
                server: Arc::downgrade(server),
                pending: Pending::new(cfg.max_cache_size),
            },
            |r| {
                stats().timer_flushed.inc();
                r.send(r.pending.take());
            },
        )
    }

    pub fn push(self: &Arc<Self>, span: otlp::Span) {
        match self.pending.push(span) {
            Pushed::Kept => {}
            Pushed::Full(spans) => self.send(spans),
            Pushed::Dropped(spans) => {
                stats().spans_dropped.inc();
                self.send(spans);
            }
        }
    }

    fn send(&self, spans: Vec<otlp::Span>) {
        if spans.is_empty() {
            return;
        }
        stats().spans_sent.add(spans.len() as u64);
        let Some(server) = self.server.upgrade() else {
            return;
        };
        let Some(cluster) = server.snapshot.load().cluster(&self.cfg.cluster).cloned() else {
            return;
        };
        let v = version();
        let body = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![
                        kv("service.name", self.cfg.service_name.clone()),
                        kv("telemetry.sdk.language", "cpp"),
                        kv("telemetry.sdk.name", "envoy"),
                        kv("telemetry.sdk.version", v.clone()),
                    ],
                }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "envoy".into(),
                        version: v.clone(),
                        ..Default::default()
                    }),
                    spans,
                }],
            }],
        }
        .encode_to_vec();
        let cfg = self.cfg.clone();
        tokio::spawn(async move {
            let lb = crate::cluster::LbContext {
                original_dst: None,
                headers: None,
                hash: None,
                local_cluster: None,
            };
            let Some(host) = cluster.pick(&lb) else {
                return;
            };
            let agent = format!("OTel-OTLP-Exporter-Envoy/{v}");
            let (req, h2) = match &cfg.export {
                OtelExport::Grpc {
                    authority,
                    metadata,
                } => {
                    let mut frame = BytesMut::with_capacity(5 + body.len());
                    frame.put_u8(0);
                    frame.put_u32(body.len() as u32);
                    frame.put_slice(&body);
                    let mut b = http::Request::post(format!(
                        "http://{authority}/opentelemetry.proto.collector.trace.v1.TraceService/Export"
                    ))
                    .version(http::Version::HTTP_2)
                    .header(http::header::TE, "trailers")
                    .header(http::header::CONTENT_TYPE, "application/grpc");
                    for (k, v) in metadata {
                        b = b.header(k.as_str(), v.as_str());
                    }
                    (b.header(http::header::USER_AGENT, agent), frame.freeze())
                }
                OtelExport::Http {
                    path,
                    host: authority,
                    headers,
                    timeout_ms,
                } => {
                    let mut b = http::Request::post(path.as_str())
                        .header(http::header::HOST, authority.as_str())
                        .header(http::header::CONTENT_TYPE, "application/x-protobuf")
                        .header(http::header::USER_AGENT, agent);
                    for (k, v) in headers {
                        b = b.header(k.as_str(), v.as_str());
                    }
                    (
                        b.header("x-envoy-expected-rq-timeout-ms", timeout_ms.to_string()),
                        body.into(),
                    )
                }
            };
            let mut req = req.header("x-envoy-internal", "true");
            if let Some(ip) = crate::util::local_address() {
                req = req.header("x-forwarded-for", ip.to_string());
            }
            let Ok(req) = req.body(crate::http::body::ReqBody::Full(Some(h2))) else {
                return;
            };
            let grpc = matches!(cfg.export, OtelExport::Grpc { .. });
            let sent = if grpc {
                host.pool.send_h2(&host, req, None).await
            } else {
                host.pool.send_h1(&host, req, None).await
            };
            if let Ok((resp, _active)) = sent {
                let _ = http_body_util::BodyExt::collect(resp.into_body()).await;
            }
        });
    }
}

fn nanos(t: std::time::SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// A finished stream's span in OTLP.
pub fn span(span: &Span, info: &StreamInfo) -> otlp::Span {
    let mut trace_id = Vec::with_capacity(16);
    trace_id.extend_from_slice(&span.trace_hi.to_be_bytes());
    trace_id.extend_from_slice(&span.trace_lo.to_be_bytes());
    let end = span.start + span.started.elapsed();
    otlp::Span {
        trace_id,
        span_id: span.id.to_be_bytes().to_vec(),
        trace_state: span.trace_state.clone(),
        parent_span_id: span
            .parent
            .map(|p| p.to_be_bytes().to_vec())
            .unwrap_or_default(),
        name: span.name.clone(),
        kind: if span.client { 3 } else { 2 },
        start_time_unix_nano: nanos(span.start),
        end_time_unix_nano: nanos(end),
        attributes: super::tags::request_tags(span, info)
            .into_iter()
            .map(|(k, v)| kv(&k, v))
            .collect(),
        status: (info.code >= 500).then(|| otlp::Status {
            message: String::new(),
            code: 2,
        }),
        flags: 0,
    }
}
