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
