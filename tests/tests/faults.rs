//! Fault injection against Envoy: per-route aborts and delays (HTTP and gRPC statuses),
//! percentages, header-controlled faults, downstream nodes, header matches, per-route
//! disabling, `max_active_faults`, the response rate limit, and the `fault.*` stats.

use ferry_tests::client::{self, HttpRequest};
use ferry_tests::proxy::Target;
use ferry_tests::{Case, Setup};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

fn grpc(c: Case) -> Case {
    c.method("POST")
        .h2()
        .header("content-type", "application/grpc")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_injection() {
    let Some(env) = Setup::new("faults", include_str!("../configs/faults.yaml"))
        .echo("UP_A", "a")
        .start()
        .await
    else {
        return;
    };
    let mut report = env.report();
    let cases = vec![
        Case::get("per-route abort", "/abort503/x")
            .expect_status(503)
            .expect_body("fault filter abort")
            .expect("header:content-type", "text/plain"),
        Case::get("per-route abort, h2", "/abort503/x")
            .h2()
            .expect_status(503),
        Case::get("an abort without a percentage never fires", "/nopercent/x").expect_status(200),
        grpc(Case::get("HTTP abort of a gRPC request", "/abort503/x"))
            .expect_status(200)
            .expect("header:grpc-status", "14")
            .expect("header:grpc-message", "fault filter abort"),
        grpc(Case::get("gRPC abort", "/grpc/x"))
            .expect_status(200)
            .expect("header:grpc-status", "14"),
        Case::get("gRPC abort of a plain request", "/grpc/x")
            .expect_status(200)
            .expect_body("fault filter abort"),
        Case::get("delay then abort", "/delay-abort/x").expect_status(429),
        Case::get("downstream node listed", "/nodes/x")
            .header("x-envoy-downstream-service-node", "node-a")
            .expect_status(503),
        Case::get("downstream node not listed", "/nodes/x")
            .header("x-envoy-downstream-service-node", "node-b")
            .expect_status(200),
        Case::get("no downstream node", "/nodes/x").expect_status(200),
        Case::get("header match", "/headers/x")
            .header("x-fault", "yes")
            .expect_status(503),
        Case::get("header mismatch", "/headers/x")
            .header("x-fault", "no")
            .expect_status(200),
        Case::get("another upstream cluster", "/other-cluster/x").expect_status(200),
        Case::get("header abort", "/x")
            .header("x-envoy-fault-abort-request", "418")
            .expect_status(418),
        Case::get("header abort out of range", "/x")
            .header("x-envoy-fault-abort-request", "600")
            .expect_status(200),
        Case::get("header abort at 0 percent", "/x")
            .header("x-envoy-fault-abort-request", "418")
            .header("x-envoy-fault-abort-request-percentage", "0")
            .expect_status(200),
        grpc(Case::get("header gRPC abort", "/x"))
            .header("x-envoy-fault-abort-grpc-request", "8")
            .expect("header:grpc-status", "8"),
        Case::get("filter disabled on the route", "/disabled/x")
            .header("x-envoy-fault-abort-request", "418")
            .expect_status(200),
        Case::get("without a route the filter still runs", "/x")
            .host("nowhere.example")
            .header("x-envoy-fault-abort-request", "451")
            .expect_status(451),
        Case::get("without a route nor a fault", "/x")
            .host("nowhere.example")
            .expect_status(404),
    ];
    env.run_cases(&mut report, &cases).await;

    // Delays: fixed, and from the request header; each proxy holds the request that long.
    for (name, path, header, want) in [
        ("fixed delay", "/delay/x", None, 300u64),
        ("header delay", "/x", Some("250"), 250),
    ] {
        env.compare_with(&mut report, name, |t: Target| async move {
            let mut req = HttpRequest::get(path);
            if let Some(ms) = header {
                req.headers
                    .push(("x-envoy-fault-delay-request".into(), ms.into()));
            }
            let started = Instant::now();
            let r = client::send(t.port("L1"), &req).await;
            let took = started.elapsed();
            let held = took >= Duration::from_millis(want - 20) && took < Duration::from_secs(3);
            BTreeMap::from([
                (
                    "status".to_string(),
                    r.map(|r| r.status.to_string()).unwrap_or_else(|e| e),
                ),
                ("held about the delay".to_string(), held.to_string()),
            ])
        })
        .await;
    }

    // A response rate limit of 20 KiB/s: 60 KiB take about three seconds.
    env.compare_with(&mut report, "response rate limit", |t: Target| async move {
        let started = Instant::now();
        let r = client::send(t.port("L1"), &HttpRequest::get("/throttle/big/61440")).await;
        let took = started.elapsed().as_secs_f64();
        BTreeMap::from([
            (
                "status".to_string(),
                r.as_ref().map(|r| r.status.to_string()).unwrap_or_default(),
            ),
            (
                "bytes".to_string(),
                r.map(|r| r.body.len().to_string()).unwrap_or_default(),
            ),
            (
                "took 2.5 to 3.5 s".to_string(),
                (2.5..3.5).contains(&took).to_string(),
            ),
        ])
    })
    .await;

    // max_active_faults 1: of two concurrent requests, one is delayed and one overflows.
    env.compare_with(&mut report, "max_active_faults", |t: Target| async move {
        let port = t.port("L1");
        let one = tokio::spawn(async move {
            let s = Instant::now();
            let _ = client::send(port, &HttpRequest::get("/delay/x")).await;
            s.elapsed()
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let s = Instant::now();
        let _ = client::send(port, &HttpRequest::get("/delay/x")).await;
        let second = s.elapsed();
        let first = one.await.unwrap_or_default();
        BTreeMap::from([
            (
                "first delayed".to_string(),
                (first >= Duration::from_millis(280)).to_string(),
            ),
            (
                "second not delayed".to_string(),
                (second < Duration::from_millis(150)).to_string(),
            ),
        ])
    })
    .await;

    // Counted before the random aborts below.
    let names: Vec<String> = [
        "aborts_injected",
        "delays_injected",
        "faults_overflow",
        "response_rl_injected",
        "active_faults",
    ]
    .iter()
    .map(|n| format!("http.faults.fault.{n}"))
    .collect();
    env.compare_stats(&mut report, &names).await;

    // 50 % of 200 requests aborted, each proxy within a binomial tolerance (±5 σ ≈ ±35).
    env.compare_with(&mut report, "abort percentage", |t: Target| async move {
        let mut aborted = 0;
        for _ in 0..200 {
            if let Ok(r) = client::send(t.port("L1"), &HttpRequest::get("/half/x")).await {
                aborted += usize::from(r.status == 418);
            }
        }
        BTreeMap::from([(
            "aborted within 100 ± 35 of 200".to_string(),
            (65..=135).contains(&aborted).to_string(),
        )])
    })
    .await;

    report.finish();
}
