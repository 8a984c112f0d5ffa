//! Process lifecycle: SIGINT and SIGTERM on an idle proxy (both exit at
//! once, like Envoy), and Ferry's SIGTERM drain (stop accepting, finish the
//! in-flight request, exit 0 before `--drain-time-s`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ferry_tests::client::{self, HttpRequest};
use ferry_tests::proxy::{self, Proxy, ProxyKind};
use ferry_tests::{conn, echo, Case, Observation, Setup};

const LIFECYCLE: &str = include_str!("../configs/lifecycle.yaml");

/// Sends `sig` to the proxy and observes how soon it exits (within
/// `limit`) and whether its listener still accepts afterwards.
async fn signal_and_observe(proxy: &mut Proxy, sig: i32, limit: Duration) -> Observation {
    let l1 = proxy.port("L1");
    let mut obs = Observation::new();
    obs.insert("L1 before".into(), conn::probe(l1).await);
    let sent = Instant::now();
    proxy.signal(sig);
    let exit = proxy.wait_exit(limit).await;
    let took = sent.elapsed();
    obs.insert(
        format!("exit within {limit:?}"),
        match exit {
            Some(status) => format!("exited, code {:?}", status.code()),
            None => "still running".into(),
        },
    );
    if std::env::var_os("FERRY_TESTS_DUMP").is_some() {
        eprintln!("{}: exit {took:?} after signal {sig}", proxy.kind);
    }
    obs.insert("L1 after exit".into(), conn::probe(l1).await);
    obs
}

async fn signal_case(title: &str, sig: i32) {
    let Some(mut env) = Setup::new(title, LIFECYCLE).echo("UP_A", "a").start().await else {
        return;
    };
    let mut report = env.report();
    let limit = Duration::from_secs(2);
    let case = Case::get(title, "/")
        .expect("L1 before", "served 200")
        .expect("exit within 2s", "exited, code Some(0)")
        .expect("L1 after exit", "refused");
    let envoy = signal_and_observe(&mut env.envoy, sig, limit).await;
    let ferry = signal_and_observe(&mut env.ferry, sig, limit).await;
    report.compare_case(&case, &envoy, &ferry);
    report.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_exits_promptly() {
    signal_case("SIGINT on an idle proxy", libc::SIGINT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_idle_exits_promptly() {
    signal_case("SIGTERM on an idle proxy", libc::SIGTERM).await;
}

/// Ferry only (Envoy exits at once on SIGTERM): the listener closes at
/// once, the in-flight request still gets its 200, then Ferry exits 0 by
/// itself, well before the 5 s drain time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_request() {
    if proxy::ferry_is_envoy() {
        eprintln!("NOTE: FERRY_BIN is Envoy, which does not drain on SIGTERM; skipped");
        return;
    }
    let upstream = echo::start_http("a").await;
    let shared = BTreeMap::from([("UP_A".to_string(), upstream.port().to_string())]);
    let args = ["--drain-time-s".to_string(), "5".to_string()];
    let mut ferry = proxy::start(
        ProxyKind::Ferry,
        &proxy::ferry_bin(),
        LIFECYCLE,
        &shared,
        &args,
    )
    .await;
    let l1 = ferry.port("L1");
    let in_flight = tokio::spawn(async move {
        let started = Instant::now();
        let resp = client::send(l1, &HttpRequest::get("/delay/800")).await;
        (resp, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let sent = Instant::now();
    ferry.signal(libc::SIGTERM);

    let mut failures = Vec::new();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let probe = conn::probe(l1).await;
    if probe != "refused" {
        failures.push(format!(
            "a new connection 100 ms after SIGTERM: want refused, got {probe}"
        ));
    }
    let (resp, took) = in_flight.await.expect("request task");
    match &resp {
        Ok(r) if r.status == 200 => {}
        Ok(r) => failures.push(format!("in-flight /delay/800 got {} (want 200)", r.status)),
        Err(e) => failures.push(format!(
            "in-flight /delay/800 failed after {took:?} (want 200): {e}"
        )),
    }
    let exit = ferry.wait_exit(Duration::from_millis(4500)).await;
    let exited_after = sent.elapsed();
    match exit {
        Some(status) if status.code() == Some(0) => {}
        Some(status) => failures.push(format!("exited with {status} (want code 0)")),
        None => failures.push(format!(
            "still running {exited_after:?} after SIGTERM (want an exit once the \
             in-flight request is done, before --drain-time-s 5)"
        )),
    }
    assert!(
        failures.is_empty(),
        "ferry SIGTERM drain:\n  {}\nstderr:\n{}",
        failures.join("\n  "),
        ferry.stderr()
    );
}
