//! Istio's telemetry between two Ferry sidecars, productpage (client) → reviews (server) → the
//! application: the HTTP metadata exchange (`io.istio.http.peer_metadata.Config`, given as a
//! TypedStruct) and `istio.stats` (`stats.PluginConfig`, bare and as a TypedStruct) on both.
//!
//! Stock Envoy 1.39.3 has neither extension (istio-proxy is a patched Envoy), so this test has
//! no Envoy side: the expected series are Istio's documented ones — reporter, the 25 standard
//! labels with their `unknown`/`latest` fallbacks, `istio_build`, and the three histograms with
//! Envoy's default buckets.

use ferry_tests::client::{self, HttpRequest};
use ferry_tests::echo;
use ferry_tests::proxy::{self, ProxyKind};
use std::collections::BTreeMap;

const PRODUCTPAGE: [(&str, &str); 8] = [
    ("source_workload", "productpage-v1"),
    ("source_canonical_service", "productpage"),
    ("source_canonical_revision", "v1"),
    ("source_workload_namespace", "default"),
    ("source_principal", "unknown"),
    ("source_app", "productpage"),
    ("source_version", "v1"),
    ("source_cluster", "Kubernetes"),
];

fn series(labels: &[(&str, &str)]) -> String {
    let l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    format!("{{{}}}", l.join(","))
}

fn labels(
    reporter: &str,
    code: &str,
    flags: &str,
    rest: &[(&'static str, &'static str)],
) -> Vec<(&'static str, String)> {
    let mut v = vec![("reporter", reporter.to_string())];
    v.extend(rest.iter().map(|(k, val)| (*k, val.to_string())));
    v.extend([
        ("request_protocol", "http".to_string()),
        ("response_code", code.to_string()),
        ("grpc_response_status", String::new()),
        ("response_flags", flags.to_string()),
        (
            "connection_security_policy",
            if reporter == "source" {
                "unknown"
            } else {
                "none"
            }
            .to_string(),
        ),
    ]);
    v
}

fn render(l: &[(&'static str, String)]) -> String {
    let pairs: Vec<(&str, &str)> = l.iter().map(|(k, v)| (*k, v.as_str())).collect();
    series(&pairs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istio_metrics_between_two_sidecars() {
    let app = echo::start_http("reviews-app").await;
    let ferry = proxy::ferry_bin();
    let mut shared = BTreeMap::new();
    shared.insert("APP".to_string(), app.port().to_string());
    let server = proxy::start(
        ProxyKind::Ferry,
        &ferry,
        include_str!("../configs/istio/server.yaml"),
        &shared,
        &[],
    )
    .await;
    shared.insert("INBOUND".to_string(), server.port("INBOUND").to_string());
    let client = proxy::start(
        ProxyKind::Ferry,
        &ferry,
        include_str!("../configs/istio/client.yaml"),
        &shared,
        &[],
    )
    .await;

    let mut failures = Vec::new();
    for (i, path) in ["/big/10", "/echo/seen", "/missing"].iter().enumerate() {
        let mut r = HttpRequest::get(path);
        r.authority = Some("reviews.default.svc.cluster.local:9080".into());
        r.headers = vec![("x-request-id".into(), format!("istio-telemetry-{i}"))];
        let resp = client::send(client.port("OUT"), &r)
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        // Neither the application nor the client sees the other hop's exchange headers.
        for h in ["x-envoy-peer-metadata", "x-envoy-peer-metadata-id"] {
            if resp.header(h).is_some() {
                failures.push(format!("{path}: the client got {h}"));
            }
        }
        if path.starts_with("/echo") {
            let seen = echo::seen_with_request_id(&format!("istio-telemetry-{i}"));
            let Some(seen) = seen.last() else {
                failures.push(format!("{path}: the application saw no request"));
                continue;
            };
            for h in ["x-envoy-peer-metadata", "x-envoy-peer-metadata-id"] {
                if !seen["headers"][h].is_null() {
                    failures.push(format!("{path}: the application saw {h}"));
                }
            }
        }
    }

    let scrape = |admin: u16| async move {
        client::admin_get(admin, "/stats/prometheus")
            .await
            .map(|r| r.text())
            .unwrap_or_default()
    };
    let client_prom = scrape(client.admin_port()).await;
    let server_prom = scrape(server.admin_port()).await;

    let reviews_dest: [(&str, &str); 11] = [
        ("destination_workload", "reviews-v2"),
        ("destination_workload_namespace", "default"),
        ("destination_principal", "unknown"),
        ("destination_app", "reviews"),
        ("destination_version", "v2"),
        ("destination_service", "reviews.default.svc.cluster.local"),
        ("destination_canonical_service", "reviews"),
        ("destination_canonical_revision", "v2"),
        ("destination_service_name", "reviews"),
        ("destination_service_namespace", "default"),
        ("destination_cluster", "Kubernetes"),
    ];
    let mut source_ok: Vec<(&str, &str)> = PRODUCTPAGE.to_vec();
    source_ok.extend(reviews_dest);
    let client_ok = render(&labels("source", "200", "-", &source_ok));
    // No route: no upstream peer, and the Host stands for the service.
    let mut source_nr: Vec<(&str, &str)> = PRODUCTPAGE.to_vec();
    source_nr.extend([
        ("destination_workload", "unknown"),
        ("destination_workload_namespace", "unknown"),
        ("destination_principal", "unknown"),
        ("destination_app", "unknown"),
        ("destination_version", "unknown"),
        (
            "destination_service",
            "reviews.default.svc.cluster.local:9080",
        ),
        ("destination_canonical_service", "unknown"),
        ("destination_canonical_revision", "latest"),
        (
            "destination_service_name",
            "reviews.default.svc.cluster.local:9080",
        ),
        ("destination_service_namespace", "unknown"),
        ("destination_cluster", "unknown"),
    ]);
    let client_nr = render(&labels("source", "404", "NR", &source_nr));
    // The server: the client from the exchanged metadata; itself from its node; no Host
    // fallback, so the service is its canonical name.
    let mut dest: Vec<(&str, &str)> = PRODUCTPAGE.to_vec();
    dest.extend([
        ("destination_workload", "reviews-v2"),
        ("destination_workload_namespace", "default"),
        ("destination_principal", "unknown"),
        ("destination_app", "reviews"),
        ("destination_version", "v2"),
        ("destination_service", "reviews"),
        ("destination_canonical_service", "reviews"),
        ("destination_canonical_revision", "v2"),
        ("destination_service_name", "reviews"),
        ("destination_service_namespace", "default"),
        ("destination_cluster", "Kubernetes"),
    ]);
    let server_ok = render(&labels("destination", "200", "-", &dest));

    let want: Vec<(&str, &str, String)> = vec![
        (
            "client",
            &client_prom,
            format!("istio_requests_total{client_ok} 2"),
        ),
        (
            "client",
            &client_prom,
            format!("istio_requests_total{client_nr} 1"),
        ),
        (
            "server",
            &server_prom,
            format!("istio_requests_total{server_ok} 2"),
        ),
        (
            "client",
            &client_prom,
            "# TYPE istio_requests_total counter".into(),
        ),
        (
            "client",
            &client_prom,
            "istio_build{component=\"proxy\",tag=\"1.28.0\"} 1".into(),
        ),
        (
            "client",
            &client_prom,
            "# TYPE istio_request_duration_milliseconds histogram".into(),
        ),
        (
            "client",
            &client_prom,
            format!("istio_request_duration_milliseconds_count{client_ok} 2"),
        ),
        (
            "server",
            &server_prom,
            format!(
                "istio_request_bytes_bucket{},le=\"+Inf\"}} 2",
                server_ok.trim_end_matches('}')
            ),
        ),
        (
            "server",
            &server_prom,
            format!(
                "istio_response_bytes_bucket{},le=\"3600000\"}} 2",
                server_ok.trim_end_matches('}')
            ),
        ),
    ];
    for (who, text, line) in want {
        if !text.lines().any(|l| l == line) {
            failures.push(format!("{who} /stats/prometheus lacks:\n  {line}"));
        }
    }
    // The response sizes: a body and its headers, above 10 bytes.
    let bucket = |le: &str| {
        format!(
            "istio_response_bytes_bucket{},le=\"{le}\"}}",
            server_ok.trim_end_matches('}')
        )
    };
    let count_at = |le: &str| {
        server_prom
            .lines()
            .find_map(|l| l.strip_prefix(&bucket(le)))
            .map(|v| v.trim().to_string())
    };
    if count_at("10").as_deref() != Some("0") {
        failures.push(format!("response bytes bucket le=10: {:?}", count_at("10")));
    }
    if !failures.is_empty() {
        panic!(
            "{}\n\nclient:\n{}\nserver:\n{}",
            failures.join("\n"),
            client_prom
                .lines()
                .filter(|l| l.starts_with("istio_requests_total") || l.starts_with("istio_build"))
                .collect::<Vec<_>>()
                .join("\n"),
            server_prom
                .lines()
                .filter(|l| l.starts_with("istio_requests_total"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

/// Two Ferry sidecars over Istio's mTLS: the TCP metadata exchange (Ferry's frames at the front
/// of each direction, taken off before the application sees them), `istio_tcp_*` with the
/// exchanged peer and both SPIFFE principals, and `istio.alpn` sending HTTP with
/// `istio-http/1.1` so that it lands on the server's HTTP chain (with `mutual_tls`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istio_tcp_and_alpn_over_mtls() {
    use ferry_tests::tls::{self, spiffe, Ca};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = proxy::TempDir::new("istio-pki");
    let root = Ca::root("cluster.local root");
    let reviews = root.issue(&spiffe("default", "reviews"), &[]);
    let productpage = root.issue(&spiffe("default", "productpage"), &[]);
    let mut shared = tls::write_files(
        dir.path(),
        &[("reviews", &reviews), ("productpage", &productpage)],
        &[("mesh", &root.root_pem)],
    );
    let app = echo::start_http("reviews-app-tls").await;
    let tcp_app = echo::start_tcp_echo("reviews-tcp").await;
    shared.insert("APP".into(), app.port().to_string());
    shared.insert("TCP_APP".into(), tcp_app.port().to_string());
    let ferry = proxy::ferry_bin();
    let server = proxy::start(
        ProxyKind::Ferry,
        &ferry,
        include_str!("../configs/istio_tls/server.yaml"),
        &shared,
        &[],
    )
    .await;
    shared.insert("INBOUND".into(), server.port("INBOUND").to_string());
    let client = proxy::start(
        ProxyKind::Ferry,
        &ferry,
        include_str!("../configs/istio_tls/client.yaml"),
        &shared,
        &[],
    )
    .await;

    let mut failures = Vec::new();
    // TCP: the bytes come back exactly, with no exchange frame in them.
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", client.port("OUT_TCP")))
        .await
        .expect("connect OUT_TCP");
    s.write_all(b"hello mesh\n").await.expect("write");
    let mut got = [0u8; 11];
    match tokio::time::timeout(std::time::Duration::from_secs(5), s.read_exact(&mut got)).await {
        Ok(Ok(_)) if &got == b"hello mesh\n" => {}
        other => failures.push(format!("TCP echo through both sidecars: {other:?} {got:?}")),
    }
    drop(s);
    // HTTP: istio.alpn picks istio-http/1.1 upstream.
    let mut r = HttpRequest::get("/echo/tls");
    r.authority = Some("reviews.default.svc.cluster.local:9080".into());
    match client::send(client.port("OUT"), &r).await {
        Ok(resp) if resp.status == 200 => {}
        other => failures.push(format!("HTTP through both sidecars: {other:?}")),
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    let client_prom = client::admin_get(client.admin_port(), "/stats/prometheus")
        .await
        .map(|r| r.text())
        .unwrap_or_default();
    let server_prom = client::admin_get(server.admin_port(), "/stats/prometheus")
        .await
        .map(|r| r.text())
        .unwrap_or_default();
    let pp = spiffe("default", "productpage");
    let rv = spiffe("default", "reviews");
    let source = |principal: &str| {
        format!(
            "source_workload=\"productpage-v1\",source_canonical_service=\"productpage\",source_canonical_revision=\"v1\",source_workload_namespace=\"default\",source_principal=\"{principal}\",source_app=\"productpage\",source_version=\"v1\",source_cluster=\"Kubernetes\""
        )
    };
    let dest = |service: &str| {
        format!(
            "destination_workload=\"reviews-v2\",destination_workload_namespace=\"default\",destination_principal=\"{rv}\",destination_app=\"reviews\",destination_version=\"v2\",destination_service=\"{service}\",destination_canonical_service=\"reviews\",destination_canonical_revision=\"v2\",destination_service_name=\"reviews\",destination_service_namespace=\"default\",destination_cluster=\"Kubernetes\""
        )
    };
    let tcp = |reporter: &str, service: &str, policy: &str| {
        format!(
            "{{reporter=\"{reporter}\",{},{},request_protocol=\"tcp\",response_flags=\"-\",connection_security_policy=\"{policy}\"}}",
            source(&pp),
            dest(service)
        )
    };
    let server_tcp = tcp("destination", "reviews", "mutual_tls");
    let client_tcp = tcp("source", "reviews.default.svc.cluster.local", "unknown");
    let want = [
        ("server", &server_prom, format!("istio_tcp_connections_opened_total{server_tcp} 1")),
        ("server", &server_prom, format!("istio_tcp_connections_closed_total{server_tcp} 1")),
        ("server", &server_prom, format!("istio_tcp_received_bytes_total{server_tcp} 11")),
        ("server", &server_prom, format!("istio_tcp_sent_bytes_total{server_tcp} 11")),
        ("client", &client_prom, format!("istio_tcp_connections_opened_total{client_tcp} 1")),
        ("client", &client_prom, format!("istio_tcp_connections_closed_total{client_tcp} 1")),
        ("client", &client_prom, format!("istio_tcp_sent_bytes_total{client_tcp} 11")),
        (
            "server",
            &server_prom,
            format!(
                "istio_requests_total{{reporter=\"destination\",{},{},request_protocol=\"http\",response_code=\"200\",grpc_response_status=\"\",response_flags=\"-\",connection_security_policy=\"mutual_tls\"}} 1",
                source(&pp),
                dest("reviews")
            ),
        ),
        // The client: the principals of its HTTP connection's TLS session, both ways.
        (
            "client",
            &client_prom,
            format!(
                "istio_requests_total{{reporter=\"source\",{},{},request_protocol=\"http\",response_code=\"200\",grpc_response_status=\"\",response_flags=\"-\",connection_security_policy=\"unknown\"}} 1",
                source(&pp),
                dest("reviews.default.svc.cluster.local")
            ),
        ),
    ];
    for (who, text, line) in want {
        if !text.lines().any(|l| l == line) {
            failures.push(format!("{who} /stats/prometheus lacks:\n  {line}"));
        }
    }
    if !failures.is_empty() {
        let istio = |t: &str| {
            t.lines()
                .filter(|l| l.starts_with("istio_tcp") || l.starts_with("istio_requests_total"))
                .collect::<Vec<_>>()
                .join("\n")
        };
        panic!(
            "{}\n\nclient:\n{}\nserver:\n{}",
            failures.join("\n"),
            istio(&client_prom),
            istio(&server_prom)
        );
    }
}
