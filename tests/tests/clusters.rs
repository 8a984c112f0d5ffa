//! Cluster types, load balancing and upstream protocol selection.

use ferry_tests::{Case, Setup};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_types() {
    let Some(env) = Setup::new("cluster_types", include_str!("../configs/clusters.yaml"))
        .echo("UP_A", "a")
        .echo("UP_B", "b")
        .start()
        .await
    else {
        return;
    };
    const VERSION: &str = "upstream.version";
    env.run(vec![
        Case::get("STATIC round robin over two endpoints", "/rr")
            .repeat(4)
            .expect("upstreams", "a,a,b,b"),
        Case::get("STRICT_DNS localhost", "/strict-dns").expect_upstream("a"),
        Case::get("LOGICAL_DNS localhost", "/logical-dns").expect_upstream("b"),
        Case::get("upstream HTTP/2", "/h2-upstream/x?y=1")
            .expect(VERSION, "HTTP/2.0")
            .expect("upstream.path", "/h2-upstream/x?y=1")
            .expect("upstream.authority", "example.com")
            .expect_absent("upstream.header:host"),
        Case::get("upstream HTTP/2 with POST body", "/h2-upstream")
            .method("POST")
            .body("payload")
            .expect(VERSION, "HTTP/2.0")
            .expect("upstream.body", "payload"),
        Case::get("upstream HTTP/2 from h2 downstream", "/h2-upstream")
            .h2()
            .expect(VERSION, "HTTP/2.0"),
        Case::get("downstream protocol: HTTP/1.1", "/downstream-protocol")
            .expect(VERSION, "HTTP/1.1"),
        Case::get("downstream protocol: HTTP/2", "/downstream-protocol")
            .h2()
            .expect(VERSION, "HTTP/2.0"),
        Case::get(
            "ORIGINAL_DST from the header, port overridden",
            "/original-dst",
        )
        .header("x-envoy-original-dst-host", "127.0.0.1:9")
        .expect_upstream("a"),
        Case::get("ORIGINAL_DST header not an address", "/original-dst")
            .header("x-envoy-original-dst-host", "not-an-address")
            .expect_status(503),
        // The connection to the listener was not captured: no original destination.
        Case::get(
            "ORIGINAL_DST without header or captured destination",
            "/original-dst",
        )
        .expect_status(503),
    ])
    .await;
}

/// Load balancing by counts (the pick order is each proxy's own; the proportions are Envoy's):
/// endpoint weights 1:3 give exactly 10 and 30 of 40 requests under ROUND_ROBIN and under
/// LEAST_REQUEST (its EDF schedule for unequal weights); RANDOM and LEAST_REQUEST with equal
/// weights spread sequential requests over both endpoints.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_balancing_proportions() {
    use ferry_tests::client::{self, HttpRequest};
    use ferry_tests::proxy::{self, Proxy};
    use ferry_tests::{echo, ProxyKind};
    let (a, b) = (echo::start_http("a").await, echo::start_http("b").await);
    let mut shared = std::collections::BTreeMap::new();
    shared.insert("UP_A".to_string(), a.port().to_string());
    shared.insert("UP_B".to_string(), b.port().to_string());
    let template = include_str!("../configs/clusters.yaml");
    let mut kinds = vec![(ProxyKind::Ferry, proxy::ferry_bin())];
    if let Some(envoy) = proxy::envoy_or_skip() {
        kinds.insert(0, (ProxyKind::Envoy, envoy));
    }
    for (kind, bin) in kinds {
        let p: Proxy = proxy::start(kind, &bin, template, &shared, &[]).await;
        let mut counts = std::collections::BTreeMap::new();
        for path in ["/weighted", "/random", "/least", "/weighted-least"] {
            for _ in 0..40 {
                let up = match client::send(p.port("L1"), &HttpRequest::get(path)).await {
                    Ok(r) => r.header("x-upstream").unwrap_or("?").to_string(),
                    Err(e) => format!("error {e}"),
                };
                *counts.entry(format!("{path} {up}")).or_insert(0u32) += 1;
            }
        }
        assert_eq!(counts.get("/weighted a"), Some(&10), "{kind}: {counts:?}");
        assert_eq!(counts.get("/weighted b"), Some(&30), "{kind}: {counts:?}");
        // Sequential requests: no active ones, so the weights alone decide.
        assert_eq!(
            counts.get("/weighted-least a"),
            Some(&10),
            "{kind}: {counts:?}"
        );
        assert_eq!(
            counts.get("/weighted-least b"),
            Some(&30),
            "{kind}: {counts:?}"
        );
        for path in ["/random", "/least"] {
            let (na, nb) = (
                counts.get(&format!("{path} a")).copied().unwrap_or(0),
                counts.get(&format!("{path} b")).copied().unwrap_or(0),
            );
            assert!(
                na > 0 && nb > 0 && na + nb == 40,
                "{kind} {path}: {counts:?}"
            );
        }
    }
}
