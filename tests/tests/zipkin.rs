//! Zipkin tracing against Envoy (`configs/zipkin.yaml`): the B3 headers the upstream gets
//! (new traces, a caller's trace, an unsampled caller, malformed ids), the sampling decision
//! stamped into `x-request-id`, and the spans the collector receives (names, kinds, parents,
//! local endpoint, tags), ids and times aside.

use ferry_tests::client::{self, HttpRequest};
use ferry_tests::{echo, proxy};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const RID: &str = "11111111-2222-4333-8444-555555555555";
const TRACE: &str = "463ac35c9f6413ad48485a3953bb6124";
const CALLER: &str = "a2fb4a1d1a96d312";

/// A Zipkin collector: records the spans POSTed to it and answers 202.
async fn collector() -> (u16, Arc<Mutex<Vec<Value>>>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the collector");
    let port = l.local_addr().expect("addr").port();
    let spans: Arc<Mutex<Vec<Value>>> = Arc::default();
    let s = spans.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = l.accept().await {
            let s = s.clone();
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let s = s.clone();
                        async move {
                            let ok = req.uri().path() == "/api/v2/spans"
                                && req
                                    .headers()
                                    .get("content-type")
                                    .is_some_and(|v| v == "application/json");
                            let body = http_body_util::BodyExt::collect(req.into_body())
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            if let (true, Ok(Value::Array(list))) =
                                (ok, serde_json::from_slice(&body))
                            {
                                s.lock().unwrap_or_else(|e| e.into_inner()).extend(list);
                            }
                            Ok::<_, std::convert::Infallible>(
                                http::Response::builder()
                                    .status(202)
                                    .body(http_body_util::Full::new(bytes::Bytes::new()))
                                    .unwrap_or_default(),
                            )
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (port, spans)
}

/// The B3 headers and x-request-id the upstream saw, as facts rather than random values.
fn upstream_view(body: &[u8]) -> String {
    let v: Value = serde_json::from_slice(body).unwrap_or_default();
    let h = |n: &str| v["headers"][n][0].as_str().unwrap_or("").to_string();
    let (trace, span, parent) = (h("x-b3-traceid"), h("x-b3-spanid"), h("x-b3-parentspanid"));
    let rid = h("x-request-id");
    format!(
        "traceid={} spanid={} parent={} sampled={} rid[14]={}",
        match trace.as_str() {
            "" => "-".to_string(),
            TRACE => "caller's".to_string(),
            t => format!("{} hex, low half = spanid: {}", t.len(), t.ends_with(&span)),
        },
        span.len(),
        match parent.as_str() {
            "" => "-".to_string(),
            CALLER => "caller's span".to_string(),
            _ => "other".to_string(),
        },
        h("x-b3-sampled"),
        rid.chars().nth(14).unwrap_or('-'),
    )
}

/// A span without ids, times and sizes.
fn span_view(s: &Value) -> String {
    let mut tags: BTreeMap<String, String> = s["tags"]
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                .collect()
        })
        .unwrap_or_default();
    tags.remove("response_size");
    let local = format!(
        "{}:{}:ipv4={}",
        s["localEndpoint"]["serviceName"],
        s["localEndpoint"]["port"],
        s["localEndpoint"]["ipv4"].is_string()
    );
    format!(
        "name={} kind={} traceId={} id={} parent={} shared={} local={} annotation={} timestamp={} duration={} tags={tags:?}",
        s["name"],
        s["kind"],
        match s["traceId"].as_str() {
            Some(TRACE) => "caller's".to_string(),
            Some(t) => format!("{} hex", t.len()),
            None => "-".into(),
        },
        s["id"].as_str().map_or(0, str::len),
        match s["parentId"].as_str() {
            Some(CALLER) => "caller's span",
            Some(_) => "other",
            None => "-",
        },
        s["shared"],
        local,
        s["annotations"][0]["value"],
        s["timestamp"].is_u64(),
        s["duration"].is_u64(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zipkin_against_envoy() {
    let up = echo::start_http("echo").await;
    let mut results = Vec::new();
    for (kind, bin) in proxy::kinds() {
        let (port, spans) = collector().await;
        let vars = BTreeMap::from([
            ("UP".to_string(), up.port().to_string()),
            ("COLLECTOR".to_string(), port.to_string()),
        ]);
        let px = proxy::start(
            kind,
            &bin,
            include_str!("../configs/zipkin.yaml"),
            &vars,
            &[],
        )
        .await;
        type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);
        let cases: &[Case] = &[
            ("L1", "/plain?q=1", &[]),
            ("L1", "/deco", &[]),
            (
                "L1",
                "/child",
                &[
                    ("x-b3-traceid", TRACE),
                    ("x-b3-spanid", CALLER),
                    ("x-b3-sampled", "1"),
                ],
            ),
            ("L1", "/unsampled", &[("x-b3-sampled", "0")]),
            (
                "L1",
                "/bad",
                &[("x-b3-traceid", "zzz"), ("x-b3-spanid", CALLER)],
            ),
            ("L2", "/out", &[]),
            (
                "L2",
                "/out-sampled",
                &[("x-b3-sampled", "1"), ("x-foo", "bar")],
            ),
        ];
        let mut got = Vec::new();
        for (listener, path, headers) in cases {
            let mut req = HttpRequest::get(path);
            req.headers.push(("x-request-id".into(), RID.into()));
            for (k, v) in headers.iter() {
                req.headers.push((k.to_string(), v.to_string()));
            }
            let line = match client::send(px.port(listener), &req).await {
                Ok(r) => format!("{} {}", r.status, upstream_view(&r.body)),
                Err(e) => format!("error {e}"),
            };
            got.push(format!("{listener} {path}: {line}"));
        }
        // Four spans: the five-span batch is not reached, the five-second timer sends them.
        for _ in 0..80 {
            if spans.lock().unwrap_or_else(|e| e.into_inner()).len() >= 4 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut views: Vec<String> = spans
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(span_view)
            .collect();
        views.sort();
        got.extend(views.into_iter().map(|v| format!("span {v}")));
        for s in [
            "random_sampling",
            "not_traceable",
            "client_enabled",
            "service_forced",
        ] {
            for hcm in ["in", "out"] {
                let n = format!("http.{hcm}.tracing.{s}");
                got.push(format!(
                    "{n}: {}",
                    ferry_tests::conn::stat(px.admin_port(), &n).await
                ));
            }
        }
        for s in ["spans_sent", "reports_sent", "reports_dropped"] {
            let n = format!("tracing.zipkin.{s}");
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
    assert!(
        ferry.iter().filter(|l| l.starts_with("span ")).count() == 4,
        "{ferry:#?}"
    );
    ferry_tests::diff::assert_lines_equal(&results);
}
