//! Retries against Envoy: route and virtual-host `retry_policy`, each `retry_on` condition,
//! per-try timeouts, the request's `x-envoy-retry-on` headers, bodies sent again, and the
//! retry stats. The upstream counts the attempts of each request (`/flaky/N/HOW` fails the
//! first N attempts of a request, keyed by its `x-request-id`).

use ferry_tests::{Case, Setup};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries() {
    let Some(env) = Setup::new("retries", include_str!("../configs/retries.yaml"))
        .echo("UP_A", "a")
        .refusing("DEAD")
        .start()
        .await
    else {
        return;
    };
    let mut report = env.report();
    // A retry carries the route timeout less what the earlier attempts took: timing.
    let attempts = |c: Case, n: &str| {
        let c = c.expect("header:x-envoy-attempt-count", n);
        if n == "1" {
            c
        } else {
            c.differs_field(
                "upstream.header:x-envoy-expected-rq-timeout-ms",
                "the route timeout less the time the earlier attempts took",
            )
        }
    };
    let cases = vec![
        attempts(
            Case::get("5xx: one failure, retried", "/r5xx/flaky/1/503").expect_status(200),
            "2",
        )
        .expect("header:x-echo-attempt", "2"),
        attempts(
            Case::get("5xx: retries exhausted, the last answer passes", "/r5xx/flaky/5/503")
                .expect_status(503),
            "3",
        )
        .expect("header:x-echo-attempt", "3"),
        attempts(
            Case::get("5xx: a reset is retried", "/r5xx/flaky/1/close").expect_status(200),
            "2",
        ),
        attempts(
            Case::get("5xx over h2", "/r5xx/flaky/2/500").h2().expect_status(200),
            "3",
        ),
        attempts(
            Case::get("gateway-error: 500 is not retried", "/rgw/flaky/1/500").expect_status(500),
            "1",
        ),
        attempts(
            Case::get("gateway-error: 504 is retried", "/rgw/flaky/1/504").expect_status(200),
            "2",
        ),
        attempts(
            Case::get("retriable-status-codes", "/rcodes/flaky/1/418").expect_status(200),
            "2",
        ),
        attempts(
            Case::get("retriable-4xx: 409", "/rcodes/flaky/1/409").expect_status(200),
            "2",
        ),
        attempts(
            Case::get("a code not listed is not retried", "/rcodes/flaky/1/503")
                .expect_status(503),
            "1",
        ),
        attempts(
            Case::get("reset: retried", "/rreset/flaky/1/close").expect_status(200),
            "2",
        ),
        attempts(
            Case::get("reset: exhausted", "/rreset/flaky/2/close")
                .expect_status(503)
                .expect_body(
                    "upstream connect error or disconnect/reset before headers. retried and the latest reset reason: connection termination",
                ),
            "2",
        ),
        attempts(
            Case::get("reset does not retry a 503", "/rreset/flaky/1/503").expect_status(503),
            "1",
        ),
        Case::get("connect-failure with previous_hosts", "/rconn/status/200")
            .expect("statuses", "200,200,200,200")
            .repeat(4),
        attempts(
            Case::get("per-try timeout, retried", "/rpertry/flaky/1/slow600").expect_status(200),
            "2",
        ),
        attempts(
            Case::get("per-try idle timeout, retried", "/ridle/flaky/1/slow600").expect_status(200),
            "2",
        ),
        attempts(
            Case::get("per-try idle timeout, exhausted", "/ridle/flaky/2/slow600")
                .expect_status(504)
                .expect_body("upstream request timeout"),
            "2",
        ),
        attempts(
            Case::get("per-try timeout without retry_on", "/pertry/flaky/1/slow600")
                .expect_status(504)
                .expect_body("upstream request timeout"),
            "1",
        ),
        attempts(
            Case::get("gRPC unavailable is retried", "/rgrpc/flaky/1/grpc14").expect_status(200),
            "2",
        ),
        attempts(
            Case::get("gRPC internal is not", "/rgrpc/flaky/1/grpc13").expect_status(200),
            "1",
        )
        .expect("header:grpc-status", "13"),
        attempts(
            Case::get("back-off between three retries", "/rbackoff/flaky/3/502")
                .expect_status(200),
            "4",
        ),
        attempts(
            Case::get("retriable-headers", "/rheaders/flaky/1/500").expect_status(200),
            "2",
        ),
        attempts(
            Case::get("no policy: no retry", "/plain/flaky/1/503").expect_status(503),
            "1",
        ),
        attempts(
            Case::get("x-envoy-retry-on", "/plain/flaky/1/503")
                .header("x-envoy-retry-on", "5xx")
                .expect_status(200),
            "2",
        ),
        attempts(
            Case::get("x-envoy-max-retries", "/plain/flaky/2/503")
                .header("x-envoy-retry-on", "5xx")
                .header("x-envoy-max-retries", "2")
                .expect_status(200),
            "3",
        ),
        attempts(
            Case::get("x-envoy-retriable-status-codes", "/plain/flaky/1/429")
                .header("x-envoy-retry-on", "retriable-status-codes")
                .header("x-envoy-retriable-status-codes", "429,430")
                .expect_status(200),
            "2",
        ),
        attempts(
            Case::get("x-envoy-retry-grpc-on", "/plain/flaky/1/grpc4")
                .header("x-envoy-retry-grpc-on", "deadline-exceeded")
                .expect_status(200),
            "2",
        ),
        Case::get("virtual-host policy", "/flaky/1/503")
            .host("vh.example")
            .expect_status(200)
            .expect("header:x-envoy-attempt-count", "2")
            .differs_field(
                "upstream.header:x-envoy-expected-rq-timeout-ms",
                "the route timeout less the time the earlier attempts took",
            ),
        attempts(
            Case::get("a body is sent again", "/r5xx/flaky/1/503")
                .method("POST")
                .body("the same body on every attempt")
                .expect_status(200),
            "2",
        )
        .expect("upstream.body", "the same body on every attempt"),
        attempts(
            Case::get("a body is sent again over h2", "/r5xx/flaky/1/503")
                .method("POST")
                .h2()
                .body("h2 body")
                .expect_status(200),
            "2",
        )
        .expect("upstream.body", "h2 body"),
        Case::get("a body over the buffer limit is not retried", "/rsmall/flaky/1/503")
            .method("POST")
            .body("this body is longer than sixteen bytes")
            .expect_status(503),
        Case::get("a body over the listener's per_connection_buffer_limit_bytes is not retried", "/r5xx/flaky/1/503")
            .listener("L2")
            .method("POST")
            .body("this body is longer than sixteen bytes")
            .expect_status(503),
        attempts(
            Case::get("a body within the listener's buffer limit is retried", "/r5xx/flaky/1/503")
                .listener("L2")
                .method("POST")
                .body("short body")
                .expect_status(200),
            "2",
        ),
    ];
    env.run_cases(&mut report, &cases).await;
    let names: Vec<String> = [
        "upstream_rq_retry",
        "upstream_rq_retry_success",
        "upstream_rq_retry_limit_exceeded",
        "upstream_rq_retry_overflow",
        "upstream_rq_retry_backoff_exponential",
        "upstream_rq_per_try_timeout",
        "upstream_rq_per_try_idle_timeout",
        "upstream_rq_timeout",
        "retry_or_shadow_abandoned",
        "upstream_rq_total",
        "upstream_rq_200",
        "upstream_rq_503",
        "upstream_rq_504",
    ]
    .iter()
    .map(|n| format!("cluster.up.{n}"))
    .collect();
    env.compare_stats(&mut report, &names).await;
    report.finish();
}
