//! Header manipulation and the headers the proxy sets by itself.

use ferry_tests::{Case, Setup};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_manipulation() {
    let Some(env) = Setup::new(
        "header_manipulation",
        include_str!("../configs/headers.yaml"),
    )
    .echo("UP_A", "a")
    .start()
    .await
    else {
        return;
    };
    env.run(vec![
        Case::get("append adds to client value", "/append")
            .header("x-append", "client")
            .expect("upstream.header:x-append", "client | route")
            .expect("upstream.header:x-vh", "vh")
            .expect("upstream.header:x-rc", "rc")
            .expect("header:x-vh-resp", "vh")
            .expect("header:x-rc-resp", "rc"),
        Case::get("append adds when absent", "/append").expect("upstream.header:x-append", "route"),
        Case::get("overwrite replaces client value", "/overwrite")
            .header("x-over", "client")
            .expect("upstream.header:x-over", "route"),
        Case::get("add_if_absent keeps client value", "/absent")
            .header("x-absent", "client")
            .expect("upstream.header:x-absent", "client"),
        Case::get("add_if_absent adds when absent", "/absent")
            .expect("upstream.header:x-absent", "route"),
        Case::get("remove at route, vhost, route_config", "/remove")
            .header("x-secret", "1")
            .header("x-other-secret", "2")
            .header("x-remove-vh", "3")
            .header("x-remove-rc", "4")
            .header("x-kept", "5")
            .expect_absent("upstream.header:x-secret")
            .expect_absent("upstream.header:x-other-secret")
            .expect_absent("upstream.header:x-remove-vh")
            .expect_absent("upstream.header:x-remove-rc")
            .expect("upstream.header:x-kept", "5"),
        Case::get("response remove at all levels", "/remove")
            .header("x-echo-response", "x-remove-resp-route=1")
            .header("x-echo-response", "x-remove-resp-vh=2")
            .header("x-echo-response", "x-remove-resp-rc=3")
            .header("x-echo-response", "x-kept-resp=4")
            .expect_absent("header:x-upstream")
            .expect_absent("header:x-remove-resp-route")
            .expect_absent("header:x-remove-resp-vh")
            .expect_absent("header:x-remove-resp-rc")
            .expect("header:x-kept-resp", "4"),
        // Route-level additions come first, then virtual host, then route_config.
        Case::get("evaluation order of the three levels", "/order")
            .expect(
                "upstream.header:x-order",
                "route | virtual_host | route_config",
            )
            .expect("header:x-order-resp", "route | virtual_host | route_config"),
        Case::get("response header actions", "/response")
            .header("x-echo-response", "x-resp-append=upstream")
            .header("x-echo-response", "x-resp-absent=upstream")
            .expect("header:x-upstream", "replaced")
            .expect("header:x-resp-append", "upstream | added")
            .expect("header:x-resp-absent", "upstream")
            .expect("header:x-resp-multi", "one | two"),
        Case::get("response header actions, upstream silent", "/response")
            .expect("header:x-resp-append", "added")
            .expect("header:x-resp-absent", "added"),
        Case::get("direct_response gets response headers", "/direct")
            .expect("header:x-direct", "yes")
            .expect("header:x-vh-resp", "vh")
            .expect("header:x-rc-resp", "rc"),
        Case::get("h2 downstream header actions", "/append")
            .h2()
            .header("x-append", "client")
            .expect("upstream.header:x-append", "client | route"),
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_set_headers() {
    let Some(env) = Setup::new(
        "proxy_set_headers",
        include_str!("../configs/envoy_headers.yaml"),
    )
    .echo("UP_A", "a")
    .start()
    .await
    else {
        return;
    };
    const XFF: &str = "upstream.header:x-forwarded-for";
    const RID: &str = "upstream.header:x-request-id";
    env.run(vec![
        Case::get("defaults", "/")
            .expect("header:server", "envoy")
            .expect("header:x-envoy-upstream-service-time", "<number>")
            .expect_absent("header:x-request-id")
            .expect_absent(XFF)
            .expect(RID, "<uuid>")
            .expect("upstream.header:x-forwarded-proto", "http")
            .expect("upstream.header:x-envoy-expected-rq-timeout-ms", "15000"),
        Case::get("defaults, client xff kept", "/")
            .header("x-forwarded-for", "1.2.3.4")
            .expect(XFF, "1.2.3.4"),
        Case::get("defaults, client request id kept", "/")
            .header("x-request-id", "client-id-1")
            .expect(RID, "client-id-1"),
        Case::get("defaults, client x-forwarded-proto kept", "/")
            .header("x-forwarded-proto", "https")
            .expect("upstream.header:x-forwarded-proto", "https"),
        Case::get("defaults, client upstream timeout header", "/")
            .header("x-envoy-upstream-rq-timeout-ms", "500")
            .expect_absent("upstream.header:x-envoy-upstream-rq-timeout-ms"),
        Case::get("defaults, upstream server header overwritten", "/")
            .header("x-echo-response", "server=upstream-server")
            .expect("header:server", "envoy"),
        Case::get("defaults, h2", "/")
            .h2()
            .expect("upstream.header:x-forwarded-proto", "http"),
        // 127.0.0.1 counts as external without internal_address_config; for a
        // loopback peer the proxy's own non-loopback address goes into XFF.
        Case::get("use_remote_address", "/")
            .listener("L2")
            .expect("header:server", "custom-server")
            .expect("header:via", "test-via")
            .expect("header:x-request-id", "<uuid>")
            .expect("upstream.header:via", "test-via")
            .expect("upstream.header:x-envoy-external-address", "127.0.0.1"),
        // One trusted hop: with use_remote_address the last XFF entry is the client (the
        // peer is the trusted proxy); without it, the one before the last.
        Case::get("trusted hop, use_remote_address: external client", "/")
            .listener("L4")
            .header("x-forwarded-for", "10.1.1.1, 192.0.2.7")
            .header("x-forwarded-proto", "https")
            .header("x-envoy-retry-on", "5xx")
            .expect("upstream.header:x-envoy-external-address", "192.0.2.7")
            .expect_absent("upstream.header:x-envoy-internal")
            .expect_absent("upstream.header:x-envoy-retry-on")
            .expect("upstream.header:x-forwarded-proto", "https"),
        // An internal trusted client behind a proxy is still not an internal request: only a
        // request with no x-forwarded-for of its own can be (Envoy's rule).
        Case::get(
            "trusted hop, use_remote_address: internal address behind a proxy",
            "/",
        )
        .listener("L4")
        .header("x-forwarded-for", "192.0.2.7, 10.1.1.1")
        .header("x-envoy-retry-on", "5xx")
        .expect_absent("upstream.header:x-envoy-internal")
        .expect_absent("upstream.header:x-envoy-retry-on")
        .expect("upstream.header:x-envoy-external-address", "10.1.1.1"),
        Case::get("trusted hop, use_remote_address: no xff", "/").listener("L4"),
        Case::get(
            "trusted hop, no use_remote_address: internal address behind a proxy",
            "/",
        )
        .listener("L5")
        .header("x-forwarded-for", "10.1.1.1, 192.0.2.7")
        .header("x-envoy-retry-on", "5xx")
        .expect_absent("upstream.header:x-envoy-retry-on"),
        Case::get("trusted hop, no use_remote_address: external client", "/")
            .listener("L5")
            .header("x-forwarded-for", "192.0.2.7, 10.1.1.1")
            .header("x-envoy-retry-on", "5xx")
            .expect_absent("upstream.header:x-envoy-retry-on"),
        Case::get("trusted hop, no use_remote_address: one entry only", "/")
            .listener("L5")
            .header("x-forwarded-for", "10.1.1.1")
            .header("x-envoy-retry-on", "5xx"),
        Case::get("use_remote_address, client xff appended to", "/")
            .listener("L2")
            .header("x-forwarded-for", "1.2.3.4")
            .expect_contains(XFF, "1.2.3.4,"),
        Case::get("use_remote_address, client request id replaced", "/")
            .listener("L2")
            .header("x-request-id", "client-id-2")
            .expect(RID, "<uuid>"),
        Case::get("use_remote_address, client x-forwarded-proto replaced", "/")
            .listener("L2")
            .header("x-forwarded-proto", "https")
            .expect("upstream.header:x-forwarded-proto", "http"),
        Case::get("via appended to client via", "/")
            .listener("L2")
            .header("via", "1.1 elsewhere")
            .expect("upstream.header:via", "1.1 elsewhere, test-via"),
        Case::get("use_remote_address, h2", "/").listener("L2").h2(),
        Case::get("server header PASS_THROUGH", "/")
            .listener("L3")
            .header("x-echo-response", "server=upstream-server")
            .expect("header:server", "upstream-server"),
        Case::get("server header PASS_THROUGH, upstream has none", "/")
            .listener("L3")
            .expect_absent("header:server"),
    ])
    .await;
}
