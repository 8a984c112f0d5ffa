//! Local rate limiting against Envoy: the filter's bucket with `x-ratelimit-*` headers and a
//! configured response header, per-route buckets (enforced with another status, not enforced,
//! not enabled), gRPC answers, and the `http_local_rate_limit.*` stats.

use ferry_tests::{Case, Setup};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_rate_limit() {
    let Some(env) = Setup::new("ratelimit", include_str!("../configs/ratelimit.yaml"))
        .echo("UP_A", "a")
        .start()
        .await
    else {
        return;
    };
    let mut report = env.report();
    let cases = vec![
        Case::get("first token", "/x")
            .expect_status(200)
            .expect("header:x-ratelimit-limit", "2")
            .expect("header:x-ratelimit-remaining", "1")
            .expect("header:x-ratelimit-reset", "0"),
        Case::get("last token", "/x")
            .expect_status(200)
            .expect("header:x-ratelimit-remaining", "0"),
        Case::get("bucket empty", "/x")
            .expect_status(429)
            .expect_body("local_rate_limited")
            .expect("header:x-local-rate-limit", "true")
            .expect("header:x-ratelimit-remaining", "0"),
        Case::get("bucket empty, h2", "/x").h2().expect_status(429),
        Case::get("per-route bucket", "/limited/x").expect_status(200),
        Case::get("per-route bucket empty", "/limited/x")
            .expect_status(503)
            .expect_body("local_rate_limited")
            .expect_absent("header:x-ratelimit-limit"),
        Case::get("per-route bucket empty, gRPC", "/limited/x")
            .method("POST")
            .h2()
            .header("content-type", "application/grpc")
            .expect_status(200)
            .expect("header:grpc-status", "14")
            .expect("header:grpc-message", "local_rate_limited"),
        Case::get("not enforced", "/notenforced/x")
            .expect("statuses", "200,200,200")
            .repeat(3),
        Case::get("not enabled", "/disabled/x")
            .expect("statuses", "200,200,200")
            .repeat(3),
    ];
    env.run_cases(&mut report, &cases).await;
    let mut names = Vec::new();
    for prefix in [
        "http_local_rate_limiter",
        "per_route",
        "not_enforced",
        "disabled",
    ] {
        for name in ["enabled", "enforced", "ok", "rate_limited", "shadow_mode"] {
            names.push(format!("{prefix}.http_local_rate_limit.{name}"));
        }
    }
    env.compare_stats(&mut report, &names).await;
    report.finish();
}
