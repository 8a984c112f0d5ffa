//! Route actions: cluster selection, rewrites, timeouts, redirects and
//! direct responses.

use ferry_tests::{Case, Setup};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_actions() {
    let Some(env) = Setup::new(
        "route_actions",
        include_str!("../configs/route_actions.yaml"),
    )
    .echo("UP_A", "a")
    .echo("UP_B", "b")
    .start()
    .await
    else {
        return;
    };
    env.run(vec![
        Case::get("cluster a", "/to-a").expect_upstream("a"),
        Case::get("cluster b", "/to-b").expect_upstream("b"),
        Case::get("weighted_clusters 0/100", "/weighted")
            .repeat(4)
            .expect("upstreams", "b,b,b,b"),
        Case::get("cluster_header selects b", "/by-header")
            .header("x-cluster", "b")
            .expect_upstream("b"),
        Case::get("cluster_header missing", "/by-header")
            .expect_status(503)
            .expect_body(""),
        Case::get("cluster_header unknown cluster", "/by-header")
            .header("x-cluster", "nope")
            .expect_status(503)
            .expect_body(""),
        Case::get("prefix_rewrite", "/old/x/y?q=1")
            .expect("upstream.path", "/new/x/y?q=1")
            .expect("upstream.header:x-envoy-original-path", "/old/x/y?q=1"),
        Case::get("prefix_rewrite to /", "/strip/x").expect("upstream.path", "/x"),
        Case::get("regex_rewrite", "/rx/first/second/third?k=v")
            .expect("upstream.path", "/second/third/first?k=v"),
        Case::get("host_rewrite_literal", "/host-literal")
            .expect("upstream.header:host", "rewritten.example")
            .expect("upstream.header:x-envoy-original-host", "example.com"),
        // With a STATIC endpoint there is no hostname: Host is left alone.
        Case::get("auto_host_rewrite STATIC", "/auto-host-static")
            .expect("upstream.header:host", "example.com"),
        // With STRICT_DNS the hostname (no port) replaces Host.
        Case::get("auto_host_rewrite STRICT_DNS", "/auto-host-dns")
            .expect("upstream.header:host", "localhost"),
        Case::get("route timeout not hit", "/slow/10")
            .expect_status(200)
            .expect("upstream.header:x-envoy-expected-rq-timeout-ms", "200"),
        Case::get("route timeout hit", "/slow/1000")
            .expect_status(504)
            .expect_body("upstream request timeout"),
        Case::get("timeout 0s disables", "/no-timeout/10")
            .expect_status(200)
            .expect_absent("upstream.header:x-envoy-expected-rq-timeout-ms"),
        Case::get("h2 downstream, prefix_rewrite", "/old/h2")
            .h2()
            .expect("upstream.path", "/new/h2"),
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_and_direct_responses() {
    let Some(env) = Setup::new("redirects", include_str!("../configs/redirects.yaml"))
        .start()
        .await
    else {
        return;
    };
    const LOCATION: &str = "header:location";
    env.run(vec![
        Case::get("https_redirect", "/https/x?q=1")
            .expect_status(301)
            .expect(LOCATION, "https://example.com/https/x?q=1"),
        Case::get("host_redirect drops the port", "/host/x?q=1")
            .host("old.example.com:8080")
            .expect(LOCATION, "http://new.example.com/host/x?q=1"),
        Case::get("path_redirect keeps query", "/path?q=1")
            .expect(LOCATION, "http://example.com/elsewhere?q=1"),
        Case::get("path_redirect with own query", "/path-with-query?q=1")
            .expect(LOCATION, "http://example.com/elsewhere?fixed=1"),
        Case::get("prefix_rewrite redirect", "/prefix/a/b?q=1")
            .expect(LOCATION, "http://example.com/replaced/a/b?q=1"),
        Case::get("response_code TEMPORARY_REDIRECT", "/code").expect_status(307),
        Case::get("response_code FOUND", "/found").expect_status(302),
        Case::get("strip_query", "/strip?q=1&r=2").expect(LOCATION, "http://example.com/stripped"),
        Case::get("port_redirect", "/port/x")
            .host("example.com:8080")
            .expect(LOCATION, "http://example.com:8443/port/x"),
        Case::get("direct_response body", "/direct")
            .expect_status(200)
            .expect_body("hello from direct_response\n")
            .expect("header:content-type", "text/plain"),
        Case::get("direct_response 418", "/teapot")
            .expect_status(418)
            .expect_body("short and stout"),
        Case::get("direct_response 204", "/empty")
            .expect_status(204)
            .expect_absent("header:content-length"),
        Case::get("direct_response 503 no body", "/unavailable")
            .expect_status(503)
            .expect("header:content-length", "0"),
        Case::get("direct_response over h2", "/direct")
            .h2()
            .expect_body("hello from direct_response\n"),
        Case::get("redirect over h2", "/https/y")
            .h2()
            .expect(LOCATION, "https://example.com/https/y"),
    ])
    .await;
}
