//! Connection handling: tcp_proxy `max_connect_attempts` and
//! `idle_timeout`, the HTTP connection manager's connection idle timeout,
//! and upstream connection reuse (HTTP/1.1 keep-alive, HTTP/2
//! multiplexing), compared through stats.

use std::time::Duration;

use ferry_tests::client::response_complete;
use ferry_tests::conn::{self, close_verdict, time_until_closed};
use ferry_tests::{Case, Observation, Setup, Target};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TIMEOUTS: &str = include_str!("../configs/timeouts.yaml");
const POOL: &str = include_str!("../configs/upstream_pool.yaml");

/// The window an idle close (idle_timeout 0.5s) must fall into.
const EARLIEST: Duration = Duration::from_millis(300);
const LATEST: Duration = Duration::from_secs(3);
/// Envoy closes an idle HTTP/1.1 connection only after the drain sequence
/// the idle timeout starts: idle_timeout 0.5s + drain_timeout (default 5s)
/// + delayed_close_timeout (default 1s) = 6.5 s.
const DRAIN_EARLIEST: Duration = Duration::from_secs(4);
const DRAIN_LATEST: Duration = Duration::from_secs(8);

async fn stats(obs: &mut Observation, t: &Target, names: &[&str]) {
    for name in names {
        obs.insert(
            format!("stat {name}"),
            conn::stat(t.admin_port(), name).await,
        );
    }
}

async fn connect(port: u16) -> Result<TcpStream, String> {
    TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| format!("connect failed: {:?}", e.kind()))
}

/// Envoy counts attempts_exceeded on the cluster, not under `tcp.`.
const RETRY_STATS: &[&str] = &[
    "cluster.refused.upstream_cx_connect_fail",
    "cluster.refused.upstream_cx_total",
    "cluster.refused.upstream_cx_connect_attempts_exceeded",
    "tcp.tcp_retry.downstream_cx_total",
    "tcp.tcp_retry.upstream_connect_attempts_exceeded",
];

async fn connect_attempts(t: Target) -> Observation {
    let mut obs = Observation::new();
    match connect(t.port("L1")).await {
        Err(e) => {
            obs.insert("downstream".into(), e);
        }
        Ok(mut s) => {
            let _ = s.write_all(b"anyone?").await;
            let closed = time_until_closed(&mut s, Duration::from_secs(5)).await;
            let verdict = if closed.is_some() {
                "closed"
            } else {
                "open after 5 s"
            };
            obs.insert("downstream".into(), verdict.into());
        }
    }
    stats(&mut obs, &t, RETRY_STATS).await;
    if std::env::var_os("FERRY_TESTS_DUMP").is_some() {
        let all = ferry_tests::client::admin_get(t.admin_port(), "/stats").await;
        for line in all.map(|r| r.text()).unwrap_or_default().lines() {
            if (line.starts_with("cluster.refused.") || line.starts_with("tcp.tcp_retry"))
                && !line.ends_with(": 0")
            {
                eprintln!("{}: {line}", t.kind);
            }
        }
    }
    obs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_proxy_max_connect_attempts() {
    let Some(env) = timeouts_env("tcp_proxy_max_connect_attempts").await else {
        return;
    };
    let mut report = env.report();
    let case = Case::get("max_connect_attempts 3 to a refused port", "/")
        .expect("downstream", "closed")
        .expect("stat cluster.refused.upstream_cx_connect_fail", "3");
    let (envoy, ferry) = tokio::join!(
        connect_attempts(env.envoy.target()),
        connect_attempts(env.ferry.target())
    );
    report.compare_case(&case, &envoy, &ferry);
    report.finish();
}

/// Starts both proxies on timeouts.yaml.
async fn timeouts_env(title: &str) -> Option<ferry_tests::DiffEnv> {
    Setup::new(title, TIMEOUTS)
        .refusing("DEAD")
        .tcp_echo("TCP_ECHO", "tcp_echo")
        .echo("UP_A", "a")
        .start()
        .await
}

fn dump_close(t: &Target, what: &str, closed: Option<Duration>) {
    if std::env::var_os("FERRY_TESTS_DUMP").is_some() {
        eprintln!("{}: {what} closed after {closed:?}", t.kind);
    }
}

/// tcp_proxy idle_timeout 0.5s on L2: one echo round trip, then silence.
async fn tcp_idle(t: Target) -> Observation {
    let mut obs = Observation::new();
    let mut s = match connect(t.port("L2")).await {
        Ok(s) => s,
        Err(e) => {
            obs.insert("idle connection".into(), e);
            return obs;
        }
    };
    let mut buf = [0u8; 16];
    let echoed = match s.write_all(b"hi").await {
        Ok(()) => tokio::time::timeout(LATEST, s.read(&mut buf)).await,
        Err(e) => Ok(Err(e)),
    };
    let echoed = match echoed {
        Ok(Ok(n)) => String::from_utf8_lossy(&buf[..n]).into_owned(),
        Ok(Err(e)) => format!("error: {:?}", e.kind()),
        Err(_) => "nothing".into(),
    };
    obs.insert("echo".into(), echoed);
    let closed = time_until_closed(&mut s, LATEST).await;
    dump_close(&t, "tcp idle", closed);
    obs.insert("idle connection".into(), close_verdict(closed, EARLIEST));
    stats(&mut obs, &t, &["tcp.tcp_idle.idle_timeout"]).await;
    obs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_proxy_idle_timeout() {
    let Some(env) = timeouts_env("tcp_proxy_idle_timeout").await else {
        return;
    };
    let mut report = env.report();
    let case = Case::get("tcp_proxy idle_timeout 0.5s", "/")
        .expect("echo", "hi")
        .expect("idle connection", "closed in window")
        .expect("stat tcp.tcp_idle.idle_timeout", "1");
    let (envoy, ferry) = tokio::join!(tcp_idle(env.envoy.target()), tcp_idle(env.ferry.target()));
    report.compare_case(&case, &envoy, &ferry);
    report.finish();
}

/// HCM idle_timeout 0.5s on `listener`: one keep-alive request, then
/// silence; the close must come between `earliest` and `latest`.
async fn http_idle(t: Target, listener: &str, earliest: Duration, latest: Duration) -> Observation {
    let mut obs = Observation::new();
    let mut s = match connect(t.port(listener)).await {
        Ok(s) => s,
        Err(e) => {
            obs.insert("idle connection".into(), e);
            return obs;
        }
    };
    let req = b"GET /idle HTTP/1.1\r\nhost: example.com\r\n\r\n";
    let _ = s.write_all(req).await;
    let mut bytes = Vec::new();
    let mut buf = [0u8; 8192];
    while !response_complete(&bytes) {
        match tokio::time::timeout(LATEST, s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => bytes.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&bytes);
    let status_line = text.split("\r\n").next().unwrap_or("").to_string();
    obs.insert("response".into(), status_line);
    let closed = time_until_closed(&mut s, latest).await;
    dump_close(&t, listener, closed);
    obs.insert("idle connection".into(), close_verdict(closed, earliest));
    obs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_idle_timeout() {
    let Some(env) = timeouts_env("http_idle_timeout").await else {
        return;
    };
    let mut report = env.report();
    let case = Case::get("HCM idle_timeout 0.5s, drain_timeout 0.1s", "/")
        .expect("response", "HTTP/1.1 200 OK")
        .expect("idle connection", "closed in window")
        .expect("stat http.http_idle.downstream_cx_idle_timeout", "1");
    let observe = |t: Target| async move {
        let mut o = http_idle(t.clone(), "L3", EARLIEST, LATEST).await;
        stats(&mut o, &t, &["http.http_idle.downstream_cx_idle_timeout"]).await;
        o
    };
    let (envoy, ferry) = tokio::join!(observe(env.envoy.target()), observe(env.ferry.target()));
    report.compare_case(&case, &envoy, &ferry);
    report.finish();
}

/// With the default drain_timeout (5s) Envoy keeps the idle HTTP/1.1
/// connection open through the drain sequence before closing it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_idle_timeout_default_drain() {
    let Some(env) = timeouts_env("http_idle_timeout_default_drain").await else {
        return;
    };
    let mut report = env.report();
    let case = Case::get("HCM idle_timeout 0.5s, default drain_timeout", "/")
        .expect("response", "HTTP/1.1 200 OK")
        .expect("idle connection", "closed in window");
    let observe = |t: Target| http_idle(t, "L4", DRAIN_EARLIEST, DRAIN_LATEST);
    let (envoy, ferry) = tokio::join!(observe(env.envoy.target()), observe(env.ferry.target()));
    report.compare_case(&case, &envoy, &ferry);
    report.finish();
}

const H1_STATS: [&str; 2] = [
    "cluster.h1_pool.upstream_cx_total",
    "cluster.h1_pool.upstream_rq_total",
];
const H2_STATS: [&str; 2] = [
    "cluster.h2_pool.upstream_cx_total",
    "cluster.h2_pool.upstream_rq_total",
];

async fn pool_env(title: &str) -> Option<ferry_tests::DiffEnv> {
    Setup::new(title, POOL).echo("UP_A", "a").start().await
}

fn reuse_case(name: &str, cluster: &str) -> Case {
    let ok5 = format!("{:?}", vec![Ok::<u16, String>(200); 5]);
    Case::get(name, "/")
        .expect("statuses", &ok5)
        .expect(&format!("stat cluster.{cluster}.upstream_cx_total"), "1")
        .expect(&format!("stat cluster.{cluster}.upstream_rq_total"), "5")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_h1_connection_reuse() {
    let Some(env) = pool_env("upstream_h1_connection_reuse").await else {
        return;
    };
    let mut report = env.report();
    let case = reuse_case(
        "5 sequential requests, one keep-alive connection",
        "h1_pool",
    );
    let observe = |t: Target| async move {
        let paths = ["/h1/1", "/h1/2", "/h1/3", "/h1/4", "/h1/5"];
        let statuses = conn::h1_sequential(t.port("L1"), &paths).await;
        let mut o = Observation::from([("statuses".to_string(), format!("{statuses:?}"))]);
        stats(&mut o, &t, &H1_STATS).await;
        o
    };
    let (envoy, ferry) = tokio::join!(observe(env.envoy.target()), observe(env.ferry.target()));
    report.compare_case(&case, &envoy, &ferry);
    report.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_h2_connection_reuse() {
    let Some(env) = pool_env("upstream_h2_connection_reuse").await else {
        return;
    };
    let mut report = env.report();
    let case = reuse_case("5 concurrent h2 streams to an HTTP/2 cluster", "h2_pool");
    let observe = |t: Target| async move {
        let statuses = conn::h2_concurrent(t.port("L1"), &["/h2/delay/200"; 5]).await;
        let mut o = Observation::from([("statuses".to_string(), format!("{statuses:?}"))]);
        stats(&mut o, &t, &H2_STATS).await;
        o
    };
    let (envoy, ferry) = tokio::join!(observe(env.envoy.target()), observe(env.ferry.target()));
    report.compare_case(&case, &envoy, &ferry);
    report.finish();
}
