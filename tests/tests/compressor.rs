//! Compressor filters against Envoy: Istio's three-filter chain (brotli, zstd, gzip) choosing
//! one encoding from `accept-encoding` (q-values, `*`, `identity`, ties), and a single gzip
//! filter's content-type, size, `cache-control`, ETag and method rules; bodies are decoded
//! and compared, and every compressor counter is compared.

use ferry_tests::client::{self, HttpRequest};
use ferry_tests::{Case, Observation, Setup};
use std::io::Read;

struct Req {
    name: &'static str,
    listener: &'static str,
    method: &'static str,
    path: &'static str,
    headers: &'static [(&'static str, &'static str)],
}

const fn req(
    name: &'static str,
    listener: &'static str,
    path: &'static str,
    ae: &'static [(&'static str, &'static str)],
) -> Req {
    Req {
        name,
        listener,
        method: "GET",
        path,
        headers: ae,
    }
}

fn decode(encoding: Option<&str>, body: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let r = match encoding {
        None | Some("identity") => {
            out.extend_from_slice(body);
            Ok(0)
        }
        Some("gzip") => flate2::read::GzDecoder::new(body).read_to_end(&mut out),
        Some("br") => brotli::Decompressor::new(body, 4096).read_to_end(&mut out),
        Some("zstd") => {
            zstd::stream::read::Decoder::new(body).and_then(|mut d| d.read_to_end(&mut out))
        }
        Some(other) => return Err(format!("unexpected content-encoding {other}")),
    };
    r.map(|_| out).map_err(|e| format!("cannot decode: {e}"))
}

async fn observe(port: u16, r: &Req) -> Observation {
    let mut obs = Observation::new();
    let mut hr = HttpRequest::get(r.path);
    hr.method = r.method.to_string();
    hr.headers = r
        .headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let resp = match client::send(port, &hr).await {
        Ok(resp) => resp,
        Err(e) => {
            obs.insert("error".into(), e);
            return obs;
        }
    };
    obs.insert("status".into(), resp.status.to_string());
    for h in [
        "content-encoding",
        "vary",
        "content-length",
        "etag",
        "transfer-encoding",
    ] {
        obs.insert(
            format!("header:{h}"),
            resp.header(h).unwrap_or("<absent>").to_string(),
        );
    }
    match decode(resp.header("content-encoding"), &resp.body) {
        Err(e) => {
            obs.insert("body".into(), e);
        }
        Ok(body) => {
            obs.insert("body.len".into(), body.len().to_string());
            let text = String::from_utf8_lossy(&body);
            let echo: Option<serde_json::Value> = serde_json::from_str(&text).ok();
            let seen = echo.as_ref().and_then(|e| {
                e["headers"]["accept-encoding"][0]
                    .as_str()
                    .map(str::to_string)
            });
            obs.insert(
                "upstream.accept-encoding".into(),
                seen.unwrap_or_else(|| "<absent>".into()),
            );
            if echo.is_none() {
                let xs = body.iter().all(|b| *b == b'x');
                obs.insert("body.all-x".into(), xs.to_string());
            }
        }
    }
    obs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressor() {
    let Some(env) = Setup::new("compressor", include_str!("../configs/compressor.yaml"))
        .echo("UP_A", "a")
        .start()
        .await
    else {
        return;
    };
    let mut report = env.report();
    let big = "/big/4000";
    let mut reqs = vec![
        req("gzip", "L1", big, &[("accept-encoding", "gzip")]),
        req("br", "L1", big, &[("accept-encoding", "br")]),
        req("zstd", "L1", big, &[("accept-encoding", "zstd")]),
        req(
            "gzip, br: first listed",
            "L1",
            big,
            &[("accept-encoding", "gzip, br")],
        ),
        req(
            "br, gzip: first listed",
            "L1",
            big,
            &[("accept-encoding", "br, gzip")],
        ),
        req(
            "q-values",
            "L1",
            big,
            &[("accept-encoding", "br;q=0.5, gzip")],
        ),
        req(
            "q-values pick zstd",
            "L1",
            big,
            &[("accept-encoding", "gzip;q=0.5, zstd;q=0.9, br;q=0.5")],
        ),
        req(
            "wildcard: first of the chain",
            "L1",
            big,
            &[("accept-encoding", "*")],
        ),
        req(
            "wildcard without br",
            "L1",
            big,
            &[("accept-encoding", "br;q=0, *")],
        ),
        req("identity", "L1", big, &[("accept-encoding", "identity")]),
        req(
            "identity first",
            "L1",
            big,
            &[("accept-encoding", "identity, gzip")],
        ),
        req("gzip;q=0", "L1", big, &[("accept-encoding", "gzip;q=0")]),
        req(
            "unknown encoding",
            "L1",
            big,
            &[("accept-encoding", "deflate")],
        ),
        req("upper-case name", "L1", big, &[("accept-encoding", "GZIP")]),
        req("no accept-encoding", "L1", big, &[]),
        req("too small", "L1", "/big/20", &[("accept-encoding", "gzip")]),
        req(
            "exactly 30 bytes",
            "L1",
            "/big/30",
            &[("accept-encoding", "gzip")],
        ),
        req(
            "type not listed (JSON)",
            "L1",
            "/x",
            &[("accept-encoding", "gzip")],
        ),
        req(
            "default types: JSON",
            "L2",
            "/x",
            &[("accept-encoding", "gzip")],
        ),
        req(
            "strong etag removed",
            "L2",
            "/x",
            &[
                ("accept-encoding", "gzip"),
                ("x-echo-response", "etag=\"abc\""),
            ],
        ),
        req(
            "weak etag kept",
            "L2",
            "/x",
            &[
                ("accept-encoding", "gzip"),
                ("x-echo-response", "etag=W/\"abc\""),
            ],
        ),
        req(
            "no-transform",
            "L2",
            "/x",
            &[
                ("accept-encoding", "gzip"),
                ("x-echo-response", "cache-control=public, No-Transform"),
            ],
        ),
        req(
            "upstream already encoded",
            "L2",
            "/x",
            &[
                ("accept-encoding", "gzip"),
                ("x-echo-response", "content-encoding=identity"),
            ],
        ),
        req(
            "vary appended",
            "L2",
            "/x",
            &[
                ("accept-encoding", "gzip"),
                ("x-echo-response", "vary=Origin"),
            ],
        ),
        req(
            "404 compressed too",
            "L2",
            "/status/404",
            &[("accept-encoding", "gzip")],
        ),
    ];
    reqs.push(Req {
        name: "HEAD",
        listener: "L2",
        method: "HEAD",
        path: "/x",
        headers: &[("accept-encoding", "gzip")],
    });
    for r in &reqs {
        let case = Case::get(r.name, r.path);
        let e = observe(env.envoy.port(r.listener), r).await;
        let f = observe(env.ferry.port(r.listener), r).await;
        report.compare_case(&case, &e, &f);
    }
    let mut names = Vec::new();
    for (prefix, lib) in [
        ("istio.compressor.stats_brotli.brotli", true),
        ("istio.compressor.stats_zstd.zstd", true),
        ("istio.compressor.stats_gzip.gzip", true),
        ("single.compressor.g.gzip", false),
    ] {
        let resp = if lib { "response." } else { "" };
        for s in [
            "compressed",
            "not_compressed",
            "total_uncompressed_bytes",
            "content_length_too_small",
        ] {
            names.push(format!("http.{prefix}.{resp}{s}"));
        }
        for s in [
            "no_accept_header",
            "header_identity",
            "header_compressor_used",
            "header_compressor_overshadowed",
            "header_wildcard",
            "header_not_valid",
            "not_compressed_etag",
            "request.not_compressed",
        ] {
            names.push(format!("http.{prefix}.{s}"));
        }
    }
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    env.compare_stats(&mut report, &names).await;
    report.finish();
}
