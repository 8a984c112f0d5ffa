//! CORS against Envoy: simple requests from allowed and other origins, preflights answered
//! (merged route and virtual-host policies, wildcards echoing the request) or forwarded, a
//! shadow-only policy, and the `cors.*` stats.

use ferry_tests::{Case, Setup};

fn preflight(name: &str, path: &str, origin: &str) -> Case {
    Case::get(name, path)
        .method("OPTIONS")
        .header("origin", origin)
        .header("access-control-request-method", "PUT")
        .header("access-control-request-headers", "x-a")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors() {
    let Some(env) = Setup::new("cors", include_str!("../configs/cors.yaml"))
        .echo("UP_A", "a")
        .start()
        .await
    else {
        return;
    };
    let mut report = env.report();
    let good = "https://good.example";
    let cases = vec![
        Case::get("simple request, allowed origin", "/x")
            .header("origin", good)
            .expect("header:access-control-allow-origin", good)
            .expect("header:access-control-allow-credentials", "true")
            .expect("header:access-control-expose-headers", "x-exposed"),
        Case::get("simple request, other origin", "/x")
            .header("origin", "https://bad.example")
            .expect_absent("header:access-control-allow-origin"),
        Case::get("no origin", "/x").expect_absent("header:access-control-allow-origin"),
        preflight("preflight, allowed origin", "/x", good)
            .expect_status(200)
            .expect_absent("upstream")
            .expect("header:access-control-allow-methods", "GET,POST")
            .expect(
                "header:access-control-allow-headers",
                "content-type,x-custom",
            )
            .expect("header:access-control-max-age", "100"),
        preflight(
            "preflight, other origin, forwarded",
            "/x",
            "https://bad.example",
        )
        .expect("upstream", "a"),
        preflight(
            "preflight, other origin, answered",
            "/no-forward/x",
            "https://bad.example",
        )
        .expect_absent("upstream")
        .expect_absent("header:access-control-allow-origin"),
        preflight(
            "route origin, virtual-host methods",
            "/route-origin/x",
            "https://other.example",
        )
        .expect(
            "header:access-control-allow-origin",
            "https://other.example",
        )
        .expect("header:access-control-allow-methods", "GET,POST"),
        preflight(
            "route origin replaces the virtual host's",
            "/route-origin/x",
            good,
        )
        .expect("upstream", "a"),
        preflight(
            "wildcards echo the request",
            "/wild/x",
            "https://any.example",
        )
        .expect("header:access-control-allow-methods", "PUT")
        .expect("header:access-control-allow-headers", "x-a"),
        preflight("shadow only", "/shadow/x", good).expect("upstream", "a"),
        Case::get("OPTIONS without a request method", "/x")
            .method("OPTIONS")
            .header("origin", good)
            .expect("upstream", "a")
            .expect("header:access-control-allow-origin", good),
        preflight("preflight over h2", "/x", good)
            .h2()
            .expect_status(200),
    ];
    env.run_cases(&mut report, &cases).await;
    env.compare_stats(
        &mut report,
        &[
            "http.cors.cors.origin_valid",
            "http.cors.cors.origin_invalid",
        ],
    )
    .await;
    report.finish();
}
