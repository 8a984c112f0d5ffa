//! Upstream resilience against Envoy: circuit breakers (and, as they land, outlier detection,
//! health checks and priorities) on the same config and traffic.

use ferry_tests::client::{self, HttpRequest};
use ferry_tests::conn::stat;
use ferry_tests::proxy::{self, Proxy};
use ferry_tests::{echo, ProxyKind};
use std::collections::BTreeMap;
use std::time::Duration;

/// Echo upstreams "a", "b" and "c", and their ports as `UP_A`, `UP_B`, `UP_C`.
async fn three_echoes() -> (Vec<echo::Upstream>, BTreeMap<String, String>) {
    let mut ups = Vec::new();
    let mut shared = BTreeMap::new();
    for name in ["a", "b", "c"] {
        let u = echo::start_http(name).await;
        shared.insert(format!("UP_{}", name.to_uppercase()), u.port().to_string());
        ups.push(u);
    }
    (ups, shared)
}

/// The proxies to compare: Envoy (when present) first, then Ferry.
fn kinds() -> Vec<(ProxyKind, std::path::PathBuf)> {
    let mut kinds = vec![(ProxyKind::Ferry, proxy::ferry_bin())];
    if let Some(envoy) = proxy::envoy_or_skip() {
        kinds.insert(0, (ProxyKind::Envoy, envoy));
    }
    kinds
}

/// Waits (up to 5 s) until stat `name` reads `want`.
async fn wait_stat(admin: u16, name: &str, want: &str) -> String {
    let mut v = String::new();
    for _ in 0..100 {
        v = stat(admin, name).await;
        if v == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    v
}

fn spawn_get(
    port: u16,
    path: &'static str,
) -> tokio::task::JoinHandle<Result<client::HttpResponse, String>> {
    tokio::spawn(async move { client::send(port, &HttpRequest::get(path)).await })
}

fn describe(r: Result<client::HttpResponse, String>) -> String {
    match r {
        Ok(r) => format!(
            "{} overloaded={} flags-body={}",
            r.status,
            r.header("x-envoy-overloaded").unwrap_or("-"),
            if r.status == 503 {
                r.text()
            } else {
                String::new()
            }
        ),
        Err(e) => format!("error {e}"),
    }
}

/// One connection, one pending request: a request in flight holds the connection, the next
/// waits for it, the third overflows with 503 UO; the waiting one is then served on the same
/// connection. One active request: the second concurrent request overflows. One connection
/// per host (`per_host_thresholds`) queues the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn circuit_breakers_trip_at_the_same_limits() {
    let up = echo::start_http("a").await;
    let mut shared = BTreeMap::new();
    shared.insert("UP_A".to_string(), up.port().to_string());
    let template = include_str!("../configs/circuit_breakers.yaml");
    let mut seen: Vec<(ProxyKind, Vec<String>)> = Vec::new();
    for (kind, bin) in kinds() {
        let p: Proxy = proxy::start(kind, &bin, template, &shared, &[]).await;
        let (l1, l2, admin) = (p.port("L1"), p.port("L2"), p.admin_port());
        let mut obs = Vec::new();
        let c = "cluster.one_connection";
        let slow = spawn_get(l1, "/delay/1500");
        obs.push(format!(
            "first in flight: rq_active={}",
            wait_stat(admin, &format!("{c}.upstream_rq_active"), "1").await
        ));
        let queued = spawn_get(l1, "/delay/0");
        obs.push(format!(
            "second pending: pending_active={}",
            wait_stat(admin, &format!("{c}.upstream_rq_pending_active"), "1").await
        ));
        for s in [
            "rq_pending_open",
            "cx_open",
            "remaining_pending",
            "remaining_cx",
        ] {
            obs.push(format!(
                "{s}={}",
                stat(admin, &format!("{c}.circuit_breakers.default.{s}")).await
            ));
        }
        obs.push(format!(
            "third: {}",
            describe(client::send(l1, &HttpRequest::get("/")).await)
        ));
        obs.push(format!("first: {}", describe(slow.await.expect("task"))));
        obs.push(format!("second: {}", describe(queued.await.expect("task"))));
        for s in [
            "upstream_rq_pending_overflow",
            "upstream_rq_pending_total",
            "upstream_cx_total",
            "upstream_rq_total",
            "upstream_rq_503",
            "upstream_rq_completed",
            "upstream_rq_200",
        ] {
            obs.push(format!("{s}={}", stat(admin, &format!("{c}.{s}")).await));
        }
        let overflowed = stat(admin, &format!("{c}.upstream_cx_overflow")).await;
        obs.push(format!(
            "cx_overflow counted: {}",
            overflowed.parse::<u64>().unwrap_or(0) >= 1
        ));
        obs.push(format!(
            "remaining_cx after={}",
            wait_stat(
                admin,
                &format!("{c}.circuit_breakers.default.remaining_pending"),
                "1"
            )
            .await
        ));

        let c = "cluster.one_request";
        let slow = spawn_get(l2, "/delay/1000");
        wait_stat(admin, &format!("{c}.upstream_rq_active"), "1").await;
        obs.push(format!(
            "rq_open={}",
            stat(admin, &format!("{c}.circuit_breakers.default.rq_open")).await
        ));
        obs.push(format!(
            "over max_requests: {}",
            describe(client::send(l2, &HttpRequest::get("/")).await)
        ));
        obs.push(format!(
            "in flight: {}",
            describe(slow.await.expect("task"))
        ));
        for s in [
            "upstream_rq_pending_overflow",
            "upstream_rq_active_overflow",
            "upstream_rq_total",
            "upstream_rq_completed",
        ] {
            obs.push(format!("{s}={}", stat(admin, &format!("{c}.{s}")).await));
        }

        // One connection per host: the same queueing, by the per-host limit.
        let (l3, c) = (p.port("L3"), "cluster.one_per_host");
        let slow = spawn_get(l3, "/delay/1000");
        wait_stat(admin, &format!("{c}.upstream_rq_active"), "1").await;
        let queued = spawn_get(l3, "/delay/0");
        obs.push(format!(
            "per host: second pending={}",
            wait_stat(admin, &format!("{c}.upstream_rq_pending_active"), "1").await
        ));
        obs.push(format!(
            "per host: third: {}",
            describe(client::send(l3, &HttpRequest::get("/")).await)
        ));
        obs.push(format!(
            "per host: first: {}",
            describe(slow.await.expect("task"))
        ));
        obs.push(format!(
            "per host: second: {}",
            describe(queued.await.expect("task"))
        ));
        obs.extend(
            stats(
                admin,
                c,
                &["upstream_cx_total", "upstream_rq_pending_overflow"],
            )
            .await,
        );
        seen.push((kind, obs));
    }
    for (kind, obs) in &seen {
        eprintln!("{kind}:\n  {}", obs.join("\n  "));
    }
    let ferry = &seen.last().expect("ferry ran").1;
    assert!(
        ferry
            .iter()
            .any(|o| o.starts_with("third: 503 overloaded=true")),
        "{ferry:?}"
    );
    if let [(_, envoy), (_, ferry)] = seen.as_slice() {
        assert_eq!(envoy, ferry, "Envoy and Ferry differ");
    }
}

/// Sends `n` sequential requests for `path` and counts `upstream status` outcomes.
async fn spread(port: u16, path: &str, n: usize) -> BTreeMap<String, u32> {
    let mut counts = BTreeMap::new();
    for _ in 0..n {
        let key = match client::send(port, &HttpRequest::get(path)).await {
            Ok(r) => format!("{} {}", r.header("x-upstream").unwrap_or("local"), r.status),
            Err(e) => format!("error {e}"),
        };
        *counts.entry(key).or_insert(0) += 1;
    }
    counts
}

/// The `health_flags` of each host of `cluster` in `/clusters`, by upstream name.
async fn health_flags(admin: u16, cluster: &str, names: &BTreeMap<u16, &str>) -> Vec<String> {
    let text = client::admin_get(admin, "/clusters")
        .await
        .map(|r| r.text())
        .unwrap_or_default();
    let mut out: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix(&format!("{cluster}::127.0.0.1:")))
        .filter_map(|l| {
            let (port, rest) = l.split_once("::")?;
            let flags = rest.strip_prefix("health_flags::")?;
            let name = names.get(&port.parse().ok()?)?;
            Some(format!("{name}={flags}"))
        })
        .collect();
    out.sort();
    out
}

/// Outlier detection, priority failover and panic, on the same config and traffic: the
/// same requests reach the same upstreams, the same host is ejected (with the same stats and
/// `/clusters` flags), and Envoy's max_ejection_percent rule keeps the only other host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outliers_priorities_and_panic() {
    let (a, b, bad) = (
        echo::start_http("a").await,
        echo::start_http("b").await,
        echo::start_http("bad").await,
    );
    let mut shared = BTreeMap::new();
    shared.insert("UP_A".to_string(), a.port().to_string());
    shared.insert("UP_B".to_string(), b.port().to_string());
    shared.insert("UP_BAD".to_string(), bad.port().to_string());
    let names: BTreeMap<u16, &str> = [(a.port(), "a"), (b.port(), "b"), (bad.port(), "bad")]
        .into_iter()
        .collect();
    let template = include_str!("../configs/outlier.yaml");
    let mut seen: Vec<(ProxyKind, Vec<String>)> = Vec::new();
    for (kind, bin) in kinds() {
        let p: Proxy = proxy::start(kind, &bin, template, &shared, &[]).await;
        let admin = p.admin_port();
        let mut obs = Vec::new();
        // Ejection after 3 consecutive 500s from "bad".
        obs.push(format!(
            "ejecting: {:?}",
            spread(p.port("L1"), "/fail/bad/500", 20).await
        ));
        let od = "cluster.ejecting.outlier_detection";
        for s in [
            "ejections_active",
            "ejections_enforced_total",
            "ejections_enforced_consecutive_5xx",
            "ejections_detected_consecutive_5xx",
            "ejections_detected_consecutive_gateway_failure",
            "ejections_overflow",
            "ejections_total",
        ] {
            obs.push(format!("{s}={}", stat(admin, &format!("{od}.{s}")).await));
        }
        obs.push(format!(
            "flags: {:?}",
            health_flags(admin, "ejecting", &names).await
        ));
        obs.push(format!(
            "membership_healthy={}",
            stat(admin, "cluster.ejecting.membership_healthy").await
        ));
        // The default 10% never allows one host of two.
        obs.push(format!(
            "never_ejecting: {:?}",
            spread(p.port("L2"), "/fail/bad/503", 20).await
        ));
        let od = "cluster.never_ejecting.outlier_detection";
        for s in [
            "ejections_active",
            "ejections_overflow",
            "ejections_detected_consecutive_5xx",
            "ejections_detected_consecutive_gateway_failure",
        ] {
            obs.push(format!("{s}={}", stat(admin, &format!("{od}.{s}")).await));
        }
        // Failover to priority 1.
        obs.push(format!(
            "failover: {:?}",
            spread(p.port("L3"), "/", 10).await
        ));
        // Panic: all three hosts of the only priority.
        obs.push(format!("panic: {:?}", spread(p.port("L4"), "/", 12).await));
        obs.push(format!(
            "lb_healthy_panic={}",
            stat(admin, "cluster.panic.lb_healthy_panic").await
        ));
        obs.push(format!(
            "panic flags: {:?}",
            health_flags(admin, "panic", &names).await
        ));
        // The whole /clusters text (its lines sorted: Envoy lists clusters in no set order).
        let text = client::admin_get(admin, "/clusters")
            .await
            .map(|r| r.text())
            .unwrap_or_default();
        let mut lines: Vec<&str> = text.lines().collect();
        lines.sort();
        obs.push(format!("text:\n{}", lines.join("\n")));
        // The whole /clusters JSON document.
        let doc = client::admin_get(admin, "/clusters?format=json")
            .await
            .ok()
            .and_then(|r| serde_json::from_slice::<serde_json::Value>(&r.body).ok())
            .unwrap_or_default();
        // Envoy lists clusters in no particular order.
        let mut clusters = doc["cluster_statuses"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        clusters.sort_by_key(|c| c["name"].as_str().unwrap_or("").to_string());
        for c in clusters {
            obs.push(format!("json: {c}"));
        }
        seen.push((kind, obs));
    }
    for (kind, obs) in &seen {
        eprintln!("{kind}:\n  {}", obs.join("\n  "));
    }
    let ferry = &seen.last().expect("ferry ran").1;
    assert!(
        ferry
            .iter()
            .any(|o| o == "ejections_enforced_consecutive_5xx=1"),
        "{ferry:?}"
    );
    if let [(_, envoy), (_, ferry)] = seen.as_slice() {
        assert_eq!(envoy, ferry, "Envoy and Ferry differ");
    }
}

/// Each stat `prefix.name` as `name=value`.
async fn stats(admin: u16, prefix: &str, names: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for s in names {
        out.push(format!(
            "{s}={}",
            stat(admin, &format!("{prefix}.{s}")).await
        ));
    }
    out
}

/// Active health checks: an HTTP check that one host fails with 503, a TCP check that one host
/// refuses and a gRPC check that one host answers NOT_SERVING take that host out of rotation
/// on both proxies, with the same flags.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_health_checks() {
    let (a, bad) = (echo::start_http("a").await, echo::start_http("bad").await);
    let refusing = echo::refusing("refusing");
    let serving = echo::start_grpc_health("serving", true).await;
    let not_serving = echo::start_grpc_health("not_serving", false).await;
    let mut shared = BTreeMap::new();
    shared.insert("UP_A".to_string(), a.port().to_string());
    shared.insert("UP_BAD".to_string(), bad.port().to_string());
    shared.insert("UP_REFUSING".to_string(), refusing.port().to_string());
    shared.insert("UP_SERVING".to_string(), serving.port().to_string());
    shared.insert("UP_NOT_SERVING".to_string(), not_serving.port().to_string());
    let names: BTreeMap<u16, &str> = [
        (a.port(), "a"),
        (bad.port(), "bad"),
        (refusing.port(), "refusing"),
        (serving.port(), "serving"),
        (not_serving.port(), "not_serving"),
    ]
    .into_iter()
    .collect();
    let template = include_str!("../configs/health_checks.yaml");
    let mut seen: Vec<(ProxyKind, Vec<String>)> = Vec::new();
    for (kind, bin) in kinds() {
        let p: Proxy = proxy::start(kind, &bin, template, &shared, &[]).await;
        let admin = p.admin_port();
        let mut obs = Vec::new();
        for (cluster, listener) in [
            ("http_checked", "L1"),
            ("tcp_checked", "L2"),
            ("grpc_checked", "L3"),
        ] {
            let prefix = format!("cluster.{cluster}.health_check");
            obs.push(format!(
                "{cluster} healthy={}",
                wait_stat(admin, &format!("{prefix}.healthy"), "1").await
            ));
            // (The gRPC health servers answer nothing else.)
            if cluster != "grpc_checked" {
                obs.push(format!(
                    "{cluster}: {:?}",
                    spread(p.port(listener), "/", 10).await
                ));
            }
            obs.push(format!("{:?}", health_flags(admin, cluster, &names).await));
            let counts = stats(
                admin,
                &prefix,
                &["attempt", "success", "failure", "network_failure"],
            )
            .await;
            let positive = |name: &str| {
                counts
                    .iter()
                    .find_map(|c| c.strip_prefix(&format!("{name}=")))
                    .and_then(|v| v.parse::<u64>().ok())
                    .is_some_and(|v| v > 0)
            };
            obs.push(format!(
                "success>0={} failure>0={} network_failure>0={}",
                positive("success"),
                positive("failure"),
                positive("network_failure")
            ));
            obs.push(format!(
                "membership_healthy={}",
                stat(admin, &format!("cluster.{cluster}.membership_healthy")).await
            ));
        }
        seen.push((kind, obs));
    }
    for (kind, obs) in &seen {
        eprintln!("{kind}:\n  {}", obs.join("\n  "));
    }
    let ferry = &seen.last().expect("ferry ran").1;
    assert!(
        ferry.iter().any(|o| o == "http_checked: {\"a 200\": 10}"),
        "{ferry:?}"
    );
    if let [(_, envoy), (_, ferry)] = seen.as_slice() {
        assert_eq!(envoy, ferry, "Envoy and Ferry differ");
    }
}

/// Sends `GET path` with `headers` and returns the upstream that answered.
async fn upstream_of(port: u16, path: &str, headers: &[(&str, String)]) -> String {
    let mut req = HttpRequest::get(path);
    for (k, v) in headers {
        req.headers.push((k.to_string(), v.clone()));
    }
    match client::send(port, &req).await {
        Ok(r) => r.header("x-upstream").unwrap_or("local").to_string(),
        Err(e) => format!("error {e}"),
    }
}

/// Consistent hashing against Envoy: ring hash (default and a small weighted ring), Maglev
/// (enum and typed config) and the hash policies (header, query parameter, generated cookie,
/// two combined headers, terminal) send each key to exactly the endpoint Envoy sends it to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_hashing_picks_the_same_endpoints() {
    let (_upstreams, shared) = three_echoes().await;
    let template = include_str!("../configs/hashing.yaml");
    let mut seen: Vec<(ProxyKind, Vec<String>)> = Vec::new();
    for (kind, bin) in kinds() {
        let p: Proxy = proxy::start(kind, &bin, template, &shared, &[]).await;
        let l1 = p.port("L1");
        let mut obs = Vec::new();
        for path in ["/ring", "/maglev", "/typed", "/small-ring"] {
            let mut picks = String::new();
            for i in 0..24 {
                picks.push_str(&upstream_of(l1, path, &[("x-user", format!("user-{i}"))]).await);
            }
            obs.push(format!("{path}: {picks}"));
        }
        let mut picks = String::new();
        for i in 0..12 {
            picks.push_str(&upstream_of(l1, &format!("/query?user=u{i}&x=1"), &[]).await);
        }
        obs.push(format!("/query: {picks}"));
        let mut picks = String::new();
        for i in 0..12 {
            let h = [("x-a", format!("a{i}")), ("x-b", format!("b{}", i % 3))];
            picks.push_str(&upstream_of(l1, "/two", &h).await);
            picks.push_str(&upstream_of(l1, "/terminal", &h).await);
        }
        obs.push(format!("/two and /terminal: {picks}"));
        // Sticky cookies: a request carrying one always lands on the same endpoint.
        let mut picks = String::new();
        for i in 0..12 {
            let h = [("cookie", format!("sticky=\"{i:016x}\""))];
            picks.push_str(&upstream_of(l1, "/cookie", &h).await);
        }
        obs.push(format!("/cookie: {picks}"));
        // Without one, the answer sets a cookie generated from the connection.
        let set = client::send(l1, &HttpRequest::get("/cookie"))
            .await
            .ok()
            .and_then(|r| r.header("set-cookie").map(str::to_string))
            .unwrap_or_default();
        let shape = set
            .strip_prefix("sticky=\"")
            .and_then(|s| s.split_once('"'))
            .map(|(v, rest)| {
                format!(
                    "{} hex digits{rest}",
                    v.chars().filter(char::is_ascii_hexdigit).count()
                )
            });
        obs.push(format!("set-cookie: {shape:?}"));
        let admin = p.admin_port();
        for (c, names) in [
            (
                "ring",
                &[
                    "ring_hash_lb.size",
                    "ring_hash_lb.min_hashes_per_host",
                    "ring_hash_lb.max_hashes_per_host",
                ][..],
            ),
            (
                "small_ring",
                &[
                    "ring_hash_lb.size",
                    "ring_hash_lb.min_hashes_per_host",
                    "ring_hash_lb.max_hashes_per_host",
                ][..],
            ),
            (
                "maglev",
                &[
                    "maglev_lb.min_entries_per_host",
                    "maglev_lb.max_entries_per_host",
                ][..],
            ),
        ] {
            obs.push(format!(
                "{c}: {:?}",
                stats(admin, &format!("cluster.{c}"), names).await
            ));
        }
        seen.push((kind, obs));
    }
    for (kind, obs) in &seen {
        eprintln!("{kind}:\n  {}", obs.join("\n  "));
    }
    let ferry = &seen.last().expect("ferry ran").1;
    assert!(
        ferry[0].contains('a') && ferry[0].contains('b') && ferry[0].contains('c'),
        "the ring spreads keys: {ferry:?}"
    );
    if let [(_, envoy), (_, ferry)] = seen.as_slice() {
        assert_eq!(envoy, ferry, "Envoy and Ferry differ");
    }
}

/// Connection pool limits against Envoy: a connection closes after
/// `max_requests_per_connection` requests (HTTP/1.1 and HTTP/2), and an HTTP/2 connection
/// with `max_concurrent_streams` open streams makes the next request open another one; an
/// upstream's GOAWAY sends the next request to a new connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_limits() {
    let up = echo::start_http("a").await;
    let goaway = echo::start_h2_goaway("g").await;
    let mut shared = BTreeMap::new();
    shared.insert("UP_A".to_string(), up.port().to_string());
    shared.insert("UP_GOAWAY".to_string(), goaway.port().to_string());
    let template = include_str!("../configs/pool_limits.yaml");
    let mut seen: Vec<(ProxyKind, Vec<String>)> = Vec::new();
    let counters = [
        "upstream_cx_total",
        "upstream_cx_max_requests",
        "upstream_rq_total",
    ];
    for (kind, bin) in kinds() {
        let p: Proxy = proxy::start(kind, &bin, template, &shared, &[]).await;
        let admin = p.admin_port();
        let mut obs = Vec::new();
        obs.push(format!("{:?}", spread(p.port("L1"), "/", 6).await));
        obs.extend(stats(admin, "cluster.h1_two_per_connection", &counters).await);
        // Three concurrent slow requests, one stream per connection: three connections.
        let l2 = p.port("L2");
        let slow: Vec<_> = (0..3).map(|_| spread_one(l2, "/delay/400")).collect();
        let mut statuses = Vec::new();
        for s in slow {
            statuses.push(s.await.expect("task"));
        }
        obs.push(format!("concurrent: {statuses:?}"));
        obs.push(format!("{:?}", spread(l2, "/", 3).await));
        obs.extend(
            stats(
                admin,
                "cluster.h2_one_stream",
                &[
                    "upstream_cx_total",
                    "upstream_cx_http2_total",
                    "upstream_rq_total",
                ],
            )
            .await,
        );
        obs.push(format!("{:?}", spread(p.port("L3"), "/", 5).await));
        obs.extend(stats(admin, "cluster.h2_two_per_connection", &counters).await);
        // GOAWAY after every answer: each request goes on a new connection, none fails.
        obs.push(format!("goaway: {:?}", spread(p.port("L4"), "/", 4).await));
        obs.extend(
            stats(
                admin,
                "cluster.h2_goaway",
                &["upstream_cx_total", "upstream_rq_total"],
            )
            .await,
        );
        seen.push((kind, obs));
    }
    for (kind, obs) in &seen {
        eprintln!("{kind}:\n  {}", obs.join("\n  "));
    }
    let ferry = &seen.last().expect("ferry ran").1;
    assert!(
        ferry.iter().any(|o| o == "upstream_cx_max_requests=3"),
        "{ferry:?}"
    );
    if let [(_, envoy), (_, ferry)] = seen.as_slice() {
        assert_eq!(envoy, ferry, "Envoy and Ferry differ");
    }
}

fn spread_one(port: u16, path: &'static str) -> tokio::task::JoinHandle<u16> {
    tokio::spawn(async move {
        client::send(port, &HttpRequest::get(path))
            .await
            .map_or(0, |r| r.status)
    })
}

/// An EDS update that keeps an endpoint keeps its warm connection and its stats: after the
/// assignment grows from one endpoint to two, the first endpoint has still opened exactly one
/// connection, on Envoy and on Ferry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eds_updates_keep_warm_connections() {
    use ferry_tests::xds_server::{resources, UdsProxy};
    let (a, b) = (echo::start_http("a").await, echo::start_http("b").await);
    let mut seen: Vec<(ProxyKind, Vec<String>)> = Vec::new();
    for (kind, bin) in kinds() {
        let cluster = resources::eds_cluster("backend");
        let up = UdsProxy::start(kind, &bin, "warm", cluster, Some(&[a.port()])).await;
        let (listen, admin) = (up.listen, up.admin);
        let mut obs = vec![format!("before: {:?}", spread(listen, "/", 3).await)];
        up.set_endpoints(&[a.port(), b.port()]).await;
        obs.push(format!("after: {:?}", spread(listen, "/", 4).await));
        let text = client::admin_get(admin, "/clusters")
            .await
            .map(|r| r.text())
            .unwrap_or_default();
        for (name, port) in [("a", a.port()), ("b", b.port())] {
            let key = format!("backend::127.0.0.1:{port}::cx_total::");
            let v = text
                .lines()
                .find_map(|l| l.strip_prefix(&key))
                .unwrap_or("?");
            obs.push(format!("{name} cx_total={v}"));
        }
        obs.extend(
            stats(
                admin,
                "cluster.backend",
                &["upstream_cx_total", "membership_change"],
            )
            .await,
        );
        seen.push((kind, obs));
    }
    for (kind, obs) in &seen {
        eprintln!("{kind}:\n  {}", obs.join("\n  "));
    }
    let ferry = &seen.last().expect("ferry ran").1;
    assert!(ferry.iter().any(|o| o == "a cx_total=1"), "{ferry:?}");
    if let [(_, envoy), (_, ferry)] = seen.as_slice() {
        assert_eq!(envoy, ferry, "Envoy and Ferry differ");
    }
}

/// Locality-weighted balancing against Envoy: localities weighted 1:3 take 10 and 30 of 40
/// requests; a locality with half its hosts unhealthy (no overprovisioning) weighs half as much
/// (16 and 24 of 40, ±1 for where each proxy's schedule starts).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locality_weighted_balancing() {
    let (_upstreams, shared) = three_echoes().await;
    let template = include_str!("../configs/localities.yaml");
    for (kind, bin) in kinds() {
        let p: Proxy = proxy::start(kind, &bin, template, &shared, &[]).await;
        let even = spread(p.port("L1"), "/", 40).await;
        eprintln!("{kind} weights 1:3: {even:?}");
        assert_eq!(even.get("a 200"), Some(&10), "{kind}: {even:?}");
        assert_eq!(even.get("b 200"), Some(&30), "{kind}: {even:?}");
        let partial = spread(p.port("L2"), "/", 40).await;
        eprintln!("{kind} half of z2 unhealthy: {partial:?}");
        let na = partial.get("a 200").copied().unwrap_or(0);
        let nb = partial.get("b 200").copied().unwrap_or(0);
        assert!(
            na + nb == 40 && (15..=17).contains(&na),
            "{kind}: {partial:?}"
        );
    }
}

/// Slow start against Envoy: an endpoint that joins a round-robin cluster with a 3 s
/// `slow_start_window` takes a small share at first (its weight is at the 10 % floor) and about
/// its full share once the window has passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_start_ramps_new_endpoints() {
    use envoy_types::pb::envoy::config::cluster::v3::cluster::{
        LbConfig, RoundRobinLbConfig, SlowStartConfig,
    };
    use ferry_tests::xds_server::{resources, UdsProxy};
    let (a, b) = (echo::start_http("a").await, echo::start_http("b").await);
    let window = Duration::from_secs(3);
    for (kind, bin) in kinds() {
        let mut cluster = resources::eds_cluster_msg("backend");
        cluster.lb_config = Some(LbConfig::RoundRobinLbConfig(RoundRobinLbConfig {
            slow_start_config: Some(SlowStartConfig {
                slow_start_window: Some(envoy_types::pb::google::protobuf::Duration {
                    seconds: window.as_secs() as i64,
                    nanos: 0,
                }),
                ..Default::default()
            }),
        }));
        let cluster = resources::raw("backend", &cluster);
        let up = UdsProxy::start(kind, &bin, "slow", cluster, Some(&[a.port()])).await;
        let listen = up.listen;
        // "a" leaves its own slow start before "b" joins.
        tokio::time::sleep(window + Duration::from_millis(300)).await;
        up.set_endpoints(&[a.port(), b.port()]).await;
        let early = spread(listen, "/", 20).await;
        tokio::time::sleep(window).await;
        // Weights are re-read as hosts come up in the schedule: "b" comes back to its full share
        // within about ten picks.
        let late = spread(listen, "/", 40).await;
        eprintln!("{kind}: just joined {early:?}, after the window {late:?}");
        let b_early = early.get("b 200").copied().unwrap_or(0);
        let b_late = late.get("b 200").copied().unwrap_or(0);
        assert!((1..=5).contains(&b_early), "{kind}: {early:?}");
        assert!((12..=22).contains(&b_late), "{kind}: {late:?}");
    }
}

/// Zone-aware routing against Envoy: with half of the upstream in this proxy's zone, as half of
/// its own service is, every request stays in the zone; with a third of it, about two thirds
/// stay (sampled) and the rest cross zones; a cluster below `min_cluster_size` spreads over all
/// zones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zone_aware_routing() {
    let mut ups = Vec::new();
    let mut shared = BTreeMap::new();
    for name in ["a", "b", "c", "d", "e", "f"] {
        let u = echo::start_http(name).await;
        shared.insert(format!("UP_{}", name.to_uppercase()), u.port().to_string());
        ups.push(u);
    }
    let template = include_str!("../configs/zone_aware.yaml");
    let mut seen: Vec<(ProxyKind, Vec<String>)> = Vec::new();
    for (kind, bin) in kinds() {
        let p: Proxy = proxy::start(kind, &bin, template, &shared, &[]).await;
        let admin = p.admin_port();
        let mut obs = vec![format!("zoned: {:?}", spread(p.port("L1"), "/", 30).await)];
        obs.extend(stats(admin, "cluster.zoned", &["lb_zone_routing_all_directly"]).await);
        obs.push(format!("small: {:?}", spread(p.port("L2"), "/", 30).await));
        // Envoy counts this when it rebuilds its zone routing state (how often is its own).
        let too_small = stat(admin, "cluster.small.lb_zone_cluster_too_small").await;
        obs.push(format!(
            "too small counted: {}",
            too_small.parse::<u64>().is_ok_and(|v| v > 0)
        ));
        // Sampled: about two thirds stay in z1 (binomial over 90: 45..=75 is ±3.3 sd).
        let lopsided = spread(p.port("L3"), "/", 90).await;
        let stayed: u32 = ["a 200", "b 200"]
            .iter()
            .filter_map(|k| lopsided.get(*k))
            .sum();
        eprintln!("{kind} lopsided: {lopsided:?}");
        assert!((45..=75).contains(&stayed), "{kind}: {lopsided:?}");
        let routed = stats(
            admin,
            "cluster.lopsided",
            &["lb_zone_routing_sampled", "lb_zone_routing_cross_zone"],
        )
        .await;
        let total: u64 = routed
            .iter()
            .filter_map(|r| r.split_once('=')?.1.parse::<u64>().ok())
            .sum();
        obs.push(format!("lopsided: sampled + cross zone = {total}"));
        seen.push((kind, obs));
    }
    for (kind, obs) in &seen {
        eprintln!("{kind}:\n  {}", obs.join("\n  "));
    }
    let ferry = &seen.last().expect("ferry ran").1;
    assert_eq!(
        ferry[0], "zoned: {\"a 200\": 10, \"b 200\": 10, \"c 200\": 10}",
        "{ferry:?}"
    );
    if let [(_, envoy), (_, ferry)] = seen.as_slice() {
        assert_eq!(envoy, ferry, "Envoy and Ferry differ");
    }
}
