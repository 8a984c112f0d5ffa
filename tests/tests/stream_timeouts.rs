//! Stream timeouts against Envoy: route `idle_timeout`, `max_stream_duration` on the route and
//! the connection manager (and its switch to "new" timeouts), the `grpc-timeout` header with
//! `grpc_timeout_header_max` as Istio sets it, the deprecated `max_grpc_timeout`, and the
//! connection manager's `stream_idle_timeout` and `request_timeout`; the `grpc-timeout` the
//! upstream sees.

use ferry_tests::{Case, Setup};

fn grpc(c: Case, timeout: Option<&str>) -> Case {
    let c = c
        .method("POST")
        .h2()
        .header("content-type", "application/grpc");
    match timeout {
        Some(t) => c.header("grpc-timeout", t),
        None => c,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_timeouts() {
    let Some(env) = Setup::new(
        "stream_timeouts",
        include_str!("../configs/stream_timeouts.yaml"),
    )
    .echo("UP_A", "a")
    .start()
    .await
    else {
        return;
    };
    let mut report = env.report();
    let cases = vec![
        Case::get("route idle timeout", "/idle/delay/600")
            .expect_status(504)
            .expect_body("stream timeout"),
        Case::get("route idle timeout not reached", "/idle/delay/50").expect_status(200),
        Case::get("route max stream duration", "/maxdur/delay/600")
            .expect_status(504)
            .expect_body("downstream duration timeout"),
        Case::get(
            "max_stream_duration turns the route timeout off",
            "/maxdur-no-route-timeout/delay/300",
        )
        .expect_status(200)
        .expect_absent("upstream.header:x-envoy-expected-rq-timeout-ms"),
        grpc(
            Case::get("grpc-timeout header passes", "/grpc-header/delay/50"),
            Some("2S"),
        )
        .expect_status(200)
        .expect("upstream.header:grpc-timeout", "2000m"),
        grpc(
            Case::get("grpc-timeout header expires", "/grpc-header/delay/600"),
            Some("200m"),
        )
        .expect_status(200)
        .expect("header:grpc-status", "4")
        .expect("header:grpc-message", "downstream duration timeout"),
        grpc(
            Case::get(
                "grpc-timeout capped, less the offset",
                "/grpc-header-capped/delay/20",
            ),
            Some("5S"),
        )
        .expect("upstream.header:grpc-timeout", "200m"),
        grpc(
            Case::get("no grpc-timeout header", "/grpc-header/delay/20"),
            None,
        )
        .expect_status(200)
        .expect_absent("upstream.header:grpc-timeout"),
        grpc(
            Case::get("legacy max_grpc_timeout", "/legacy-grpc/delay/20"),
            Some("300m"),
        )
        .expect("upstream.header:grpc-timeout", "200m"),
        grpc(
            Case::get(
                "legacy max_grpc_timeout, no header",
                "/legacy-grpc/delay/20",
            ),
            None,
        )
        .expect("upstream.header:grpc-timeout", "500m"),
        grpc(
            Case::get("legacy max_grpc_timeout expires", "/legacy-grpc/delay/900"),
            Some("5S"),
        )
        .expect("header:grpc-status", "14"),
        Case::get("connection manager stream idle timeout", "/delay/700")
            .listener("L2")
            .expect_status(504)
            .expect_body("stream timeout"),
        Case::get(
            "route turns the stream idle timeout off",
            "/no-idle/delay/500",
        )
        .listener("L2")
        .expect_status(200),
        Case::raw(
            "request_timeout: a body that never completes",
            "POST /x HTTP/1.1\r\nHost: example.com\r\ncontent-length: 10\r\n\r\nhello",
        )
        .listener("L4")
        .expect("status", "408"),
        Case::get(
            "request_timeout does not limit a slow upstream",
            "/delay/600",
        )
        .listener("L4")
        .expect_status(200),
        Case::get("connection manager max stream duration", "/delay/700")
            .listener("L3")
            .expect_status(504)
            .expect_body("downstream duration timeout"),
    ];
    env.run_cases(&mut report, &cases).await;
    env.compare_stats(
        &mut report,
        &[
            "http.st1.downstream_rq_idle_timeout",
            "http.st1.downstream_rq_max_duration_reached",
            "http.st2.downstream_rq_idle_timeout",
            "http.st3.downstream_rq_max_duration_reached",
            "http.st4.downstream_rq_timeout",
            "cluster.up.upstream_rq_timeout",
            "cluster.up.upstream_rq_504",
        ],
    )
    .await;
    report.finish();
}
