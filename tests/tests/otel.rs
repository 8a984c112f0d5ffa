//! OpenTelemetry tracing against Envoy (`configs/otel.yaml`): W3C trace context to the
//! upstream (new traces, a caller's, an unsampled caller, a malformed header), and the OTLP
//! the collector receives over gRPC and over HTTP (names, kinds, parents, trace state,
//! attributes in order, status, resource and scope), ids, times and versions aside.

use ferry::trace::otlp::{any_value, ExportTraceServiceRequest};
use ferry_tests::client::{self, HttpRequest};
use ferry_tests::{echo, proxy};
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost::Message;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const RID: &str = "11111111-2222-4333-8444-555555555555";
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER: &str = "00f067aa0ba902b7";

type Seen = Arc<Mutex<Vec<String>>>;

/// One export, summarised: how it came, the resource and scope, each span.
fn summarise(how: &str, req: &http::request::Parts, body: &[u8], seen: &Seen) {
    let Ok(e) = ExportTraceServiceRequest::decode(body) else {
        seen.lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(format!("{how}: undecodable"));
        return;
    };
    let h = |n: &str| {
        req.headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_string()
    };
    let mut out = Vec::new();
    for rs in &e.resource_spans {
        let mut res: Vec<String> = rs
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .map(|kv| {
                let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                    Some(any_value::Value::StringValue(s)) if kv.key == "telemetry.sdk.version" => {
                        format!("<version, {} chars>", (!s.is_empty()) as u8)
                    }
                    Some(any_value::Value::StringValue(s)) => s.clone(),
                    other => format!("{other:?}"),
                };
                format!("{}={v}", kv.key)
            })
            .collect();
        res.sort();
        for ss in &rs.scope_spans {
            let scope = ss
                .scope
                .as_ref()
                .map_or("-".to_string(), |s| s.name.clone());
            for s in &ss.spans {
                let attrs: Vec<String> = s
                    .attributes
                    .iter()
                    .map(
                        |kv| match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                            Some(any_value::Value::StringValue(_)) if kv.key == "response_size" => {
                                format!("{}=<n>", kv.key)
                            }
                            Some(any_value::Value::StringValue(v)) => format!("{}={v}", kv.key),
                            other => format!("{}={other:?}", kv.key),
                        },
                    )
                    .collect();
                let parent = match s.parent_span_id.as_slice() {
                    [] => "-".to_string(),
                    p if hex(p) == CALLER => "caller's span".to_string(),
                    p => format!("{} bytes", p.len()),
                };
                out.push(format!(
                    "{how} path={} authority/host={} ct={} te={} agent={} | resource={res:?} scope={scope} | span name={} kind={} trace={} id={} parent={parent} state={:?} flags={} start<end={} status={:?} attrs={attrs:?}",
                    req.uri.path(),
                    req.uri.authority().map_or(h("host"), |a| a.to_string()),
                    h("content-type"),
                    h("te"),
                    h("user-agent").starts_with("OTel-OTLP-Exporter-Envoy/"),
                    s.name,
                    s.kind,
                    if hex(&s.trace_id) == TRACE { "caller's".to_string() } else { format!("{} bytes", s.trace_id.len()) },
                    s.span_id.len(),
                    s.trace_state,
                    s.flags,
                    s.start_time_unix_nano < s.end_time_unix_nano,
                    s.status.as_ref().map(|st| (st.code, st.message.clone())),
                ));
            }
        }
    }
    seen.lock().unwrap_or_else(|e| e.into_inner()).extend(out);
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A collector: OTLP over gRPC (HTTP/2) on one port, over HTTP/1.1 on another.
async fn collector() -> (u16, u16, Seen) {
    let seen: Seen = Arc::default();
    let mut ports = Vec::new();
    for grpc in [true, false] {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        ports.push(l.local_addr().expect("addr").port());
        let s = seen.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = l.accept().await {
                let s = s.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(
                        move |req: http::Request<hyper::body::Incoming>| {
                            let s = s.clone();
                            async move {
                                let (parts, body) = req.into_parts();
                                let body = http_body_util::BodyExt::collect(body)
                                    .await
                                    .map(|b| b.to_bytes())
                                    .unwrap_or_default();
                                let r = http::Response::builder();
                                let r = if grpc {
                                    summarise(
                                        "grpc",
                                        &parts,
                                        body.get(5..).unwrap_or_default(),
                                        &s,
                                    );
                                    r.header("content-type", "application/grpc")
                                        .header("grpc-status", "0")
                                } else {
                                    summarise("http", &parts, &body, &s);
                                    r.header("content-type", "application/x-protobuf")
                                };
                                Ok::<_, std::convert::Infallible>(
                                    r.body(http_body_util::Full::new(bytes::Bytes::new()))
                                        .unwrap_or_default(),
                                )
                            }
                        },
                    );
                    if grpc {
                        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(stream), svc)
                            .await;
                    } else {
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), svc)
                            .await;
                    }
                });
            }
        });
    }
    (ports[0], ports[1], seen)
}

/// The trace context the upstream saw, as facts.
fn upstream_view(body: &[u8]) -> String {
    let v: Value = serde_json::from_slice(body).unwrap_or_default();
    let h = |n: &str| {
        v["headers"][n].as_array().map(|a| {
            a.iter()
                .filter_map(|x| x.as_str())
                .collect::<Vec<_>>()
                .join("|")
        })
    };
    let tp = h("traceparent").unwrap_or_else(|| "-".into());
    let parts: Vec<&str> = tp.split('-').collect();
    let tp = match parts.as_slice() {
        [v, t, s, f] if v.len() == 2 => format!(
            "version={v} trace={} span={} flags={f}",
            if *t == TRACE {
                "caller's".into()
            } else {
                format!("{} hex", t.len())
            },
            if *s == CALLER {
                "caller's".into()
            } else {
                format!("{} hex", s.len())
            },
        ),
        _ => tp.clone(),
    };
    let rid = h("x-request-id").unwrap_or_default();
    format!(
        "traceparent {tp} tracestate={:?} b3={:?} rid[14]={}",
        h("tracestate"),
        h("x-b3-traceid").is_some(),
        rid.chars().nth(14).unwrap_or('-')
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otel_against_envoy() {
    let up = echo::start_http("echo").await;
    let mut results = Vec::new();
    for (kind, bin) in proxy::kinds() {
        let (grpc, http, seen) = collector().await;
        let vars = BTreeMap::from([
            ("UP".to_string(), up.port().to_string()),
            ("COLLECTOR_GRPC".to_string(), grpc.to_string()),
            ("COLLECTOR_HTTP".to_string(), http.to_string()),
        ]);
        let px = proxy::start(kind, &bin, include_str!("../configs/otel.yaml"), &vars, &[]).await;
        let caller = format!("00-{TRACE}-{CALLER}-01");
        let unsampled = format!("00-{TRACE}-{CALLER}-00");
        type Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>);
        let cases: Vec<Case> = vec![
            ("L1", "/plain?q=1", vec![]),
            ("L1", "/deco", vec![]),
            (
                "L1",
                "/child",
                vec![
                    ("traceparent", &caller),
                    ("tracestate", "congo=t61rcWkgMzE"),
                ],
            ),
            ("L1", "/unsampled", vec![("traceparent", &unsampled)]),
            ("L1", "/bad", vec![("traceparent", "garbage")]),
            ("L2", "/out", vec![("user-agent", "curl/8")]),
        ];
        let mut got = Vec::new();
        for (listener, path, headers) in &cases {
            let mut req = HttpRequest::get(path);
            req.headers.push(("x-request-id".into(), RID.into()));
            for (k, v) in headers {
                req.headers.push((k.to_string(), v.to_string()));
            }
            let line = match client::send(px.port(listener), &req).await {
                Ok(r) => format!("{} {}", r.status, upstream_view(&r.body)),
                Err(e) => format!("error {e}"),
            };
            got.push(format!("{listener} {path}: {line}"));
        }
        // Four spans: below the five-span batch, so the five-second timer sends them.
        for _ in 0..80 {
            if seen.lock().unwrap_or_else(|e| e.into_inner()).len() >= 4 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut spans = seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
        spans.sort();
        got.extend(spans);
        for s in ["spans_sent", "spans_dropped"] {
            let n = format!("tracing.opentelemetry.{s}");
            got.push(format!(
                "{n}: {}",
                ferry_tests::conn::stat(px.admin_port(), &n).await
            ));
        }
        if std::env::var_os("FERRY_TESTS_DUMP").is_some() {
            eprintln!("{kind:?}: {got:#?}");
        }
        results.push((kind, got));
    }
    let ferry = &results.last().expect("ferry ran").1;
    assert_eq!(
        ferry
            .iter()
            .filter(|l| l.starts_with("grpc ") || l.starts_with("http "))
            .count(),
        4,
        "{ferry:#?}"
    );
    ferry_tests::diff::assert_lines_equal(&results);
}
