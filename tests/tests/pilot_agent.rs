//! Under a pilot-agent stand-in, as in an Istio pod: Istio's rendered sidecar bootstrap (the
//! fixture, with its ports and pipe paths moved into the test's sandbox), xDS over a Unix
//! socket (delta ADS, node on the first message only), the agent's readiness endpoint behind
//! the 15021-style listener, and the proxy started with pilot-agent's command line. Both Envoy
//! and Ferry must report ready the way pilot-agent polls, carry traffic from the pushed
//! listener, serve `/stats/prometheus` through the 15090-style listener (gzip, as Prometheus
//! asks) with the same metric families, label keys and counter values, drain on
//! `/drain_listeners?inboundonly&graceful` and exit on `/quitquitquit`.

use ferry_tests::client::{self, HttpRequest};
use ferry_tests::proxy::{self, Proxy, TempDir};
use ferry_tests::xds_server::{resources, XdsServer, CLUSTER, LISTENER};
use ferry_tests::{echo, ports, ProxyKind};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::time::{Duration, Instant};

/// pilot-agent's command line for Envoy (pkg/envoy/proxy.go), after `-c`.
const AGENT_ARGS: &[&str] = &[
    "--drain-time-s",
    "2",
    "--drain-strategy",
    "immediate",
    "--local-address-ip-version",
    "v4",
    "--file-flush-interval-msec",
    "1000",
    "--disable-hot-restart",
    "--allow-unknown-static-fields",
    "-l",
    "warning",
    "--component-log-level",
    "misc:error",
    "--concurrency",
    "2",
    "--skip-deprecated-logs",
];

struct Pod {
    proxy: Proxy,
    _xds: XdsServer,
    _dir: TempDir,
    admin: u16,
    prometheus: u16,
    readiness: u16,
    outbound: u16,
}

fn set_endpoint_port(cluster: &mut Value, port: u16) {
    cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"] =
        json!({"socket_address": {"address": "127.0.0.1", "port_value": port}});
}

/// The fixture bootstrap with this test's ports and sockets.
fn render(
    template: &Value,
    dir: &std::path::Path,
    admin: u16,
    prom: u16,
    ready: u16,
    agent: u16,
) -> String {
    let mut b = template.clone();
    b["admin"]["address"]["socket_address"]["port_value"] = json!(admin);
    for l in b["static_resources"]["listeners"]
        .as_array_mut()
        .into_iter()
        .flatten()
    {
        let port = match l["address"]["socket_address"]["port_value"].as_u64() {
            Some(15090) => prom,
            Some(15021) => ready,
            other => panic!("unexpected static listener port {other:?}"),
        };
        l["address"]["socket_address"]["address"] = json!("127.0.0.1");
        l["address"]["socket_address"]["port_value"] = json!(port);
    }
    for c in b["static_resources"]["clusters"]
        .as_array_mut()
        .into_iter()
        .flatten()
    {
        match c["name"].as_str() {
            Some("prometheus_stats") => set_endpoint_port(c, admin),
            Some("agent") => set_endpoint_port(c, agent),
            Some(name @ ("xds-grpc" | "sds-grpc")) => {
                let sock = dir.join(if name == "xds-grpc" { "XDS" } else { "SDS" });
                c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"] =
                    json!({"pipe": {"path": sock.display().to_string()}});
            }
            other => panic!("unexpected static cluster {other:?}"),
        }
    }
    b["admin"]["access_log"][0]["typed_config"]["path"] =
        json!(dir.join("admin.log").display().to_string());
    serde_json::to_string_pretty(&b).expect("render bootstrap")
}

async fn start(
    kind: ProxyKind,
    bin: &std::path::Path,
    template: &Value,
    agent: u16,
    backend: u16,
) -> Pod {
    let dir = TempDir::new(&format!("pod-{kind}"));
    let xds = XdsServer::start_unix(&dir.path().join("XDS")).await;
    let outbound = ports::free_port();
    xds.set(
        CLUSTER,
        vec![resources::static_cluster("backend", "127.0.0.1", backend)],
    );
    xds.set(
        LISTENER,
        vec![resources::listener_to("outbound", outbound, "backend")],
    );
    let (admin, prometheus, readiness) =
        (ports::free_port(), ports::free_port(), ports::free_port());
    let json = render(template, dir.path(), admin, prometheus, readiness, agent);
    let ports = BTreeMap::from([("ADMIN".to_string(), admin)]);
    let proxy = Proxy::spawn_exact(kind, bin, &json, ports, AGENT_ARGS);
    Pod {
        proxy,
        _xds: xds,
        _dir: dir,
        admin,
        prometheus,
        readiness,
        outbound,
    }
}

/// pilot-agent's readiness check: the two gauges, then the agent's own endpoint through the
/// readiness listener.
async fn wait_ready(pod: &mut Pod) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let query =
        "/stats?usedonly&filter=%5E%28server%5C.state%7Clistener_manager%5C.workers_started%29";
    let mut last = String::new();
    loop {
        if let Some(st) = pod.proxy.exited() {
            return Err(format!("exited ({st}):\n{}", pod.proxy.stderr()));
        }
        if let Ok(r) = client::admin_get(pod.admin, query).await {
            let text = r.text();
            last = format!("{} {text:?}", r.status);
            if text.contains("server.state: 0")
                && text.contains("listener_manager.workers_started: 1")
            {
                break;
            }
        }
        if Instant::now() > deadline {
            return Err(format!(
                "not ready in 20 s; last answer {last}:\n{}",
                pod.proxy.stderr()
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = client::send(pod.readiness, &HttpRequest::get("/healthz/ready")).await?;
    if r.status != 200 || r.header("x-upstream") != Some("agent") {
        return Err(format!(
            "/healthz/ready: {} from {:?}",
            r.status,
            r.header("x-upstream")
        ));
    }
    Ok(())
}

/// `/stats/prometheus` through the Prometheus listener, gzip-encoded as Prometheus asks.
async fn scrape(pod: &Pod) -> Result<String, String> {
    let mut req = HttpRequest::get("/stats/prometheus");
    req.headers.push(("accept-encoding".into(), "gzip".into()));
    let r = client::send(pod.prometheus, &req).await?;
    if r.status != 200 || r.header("content-encoding") != Some("gzip") {
        return Err(format!(
            "scrape: {} content-encoding {:?}",
            r.status,
            r.header("content-encoding")
        ));
    }
    let mut text = String::new();
    flate2::read::GzDecoder::new(&r.body[..])
        .read_to_string(&mut text)
        .map_err(|e| format!("scrape: gunzip: {e}"))?;
    Ok(text)
}

/// family → (label keys, value of each counter series by its labels).
type Families = BTreeMap<String, (BTreeSet<String>, BTreeMap<String, String>)>;

fn families(text: &str) -> Families {
    let mut out = Families::new();
    let mut counters = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let Some((name, "counter")) = rest.split_once(' ') {
                counters.insert(name.to_string());
            }
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or((line, ""));
        let (name, labels) = series.split_once('{').unwrap_or((series, "}"));
        let labels = labels.trim_end_matches('}');
        let keys: BTreeSet<String> = labels
            .split("\",")
            .filter_map(|kv| kv.split_once('=').map(|(k, _)| k.to_string()))
            .filter(|k| k != "le")
            .collect();
        let base = name
            .trim_end_matches("_bucket")
            .trim_end_matches("_sum")
            .trim_end_matches("_count");
        let e = out.entry(base.to_string()).or_default();
        e.0.extend(keys);
        if counters.contains(name) {
            e.1.insert(labels.to_string(), value.to_string());
        }
    }
    out
}

async fn run_pod(
    kind: ProxyKind,
    bin: &std::path::Path,
    template: &Value,
) -> Result<Families, String> {
    let agent = echo::start_http("agent").await;
    let backend = echo::start_http("backend").await;
    let mut pod = start(kind, bin, template, agent.port(), backend.port()).await;
    wait_ready(&mut pod).await?;
    for i in 0..3 {
        let r = client::send(pod.outbound, &HttpRequest::get(&format!("/app/{i}"))).await?;
        if r.status != 200 || r.header("x-upstream") != Some("backend") {
            return Err(format!(
                "traffic: {} from {:?}",
                r.status,
                r.header("x-upstream")
            ));
        }
    }
    let fams = families(&scrape(&pod).await?);
    let drain = client::admin_post(pod.admin, "/drain_listeners?inboundonly&graceful").await?;
    if drain.status != 200 {
        return Err(format!("/drain_listeners: {}", drain.status));
    }
    let quit = client::admin_post(pod.admin, "/quitquitquit").await?;
    if quit.status != 200 {
        return Err(format!("/quitquitquit: {}", quit.status));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(st) = pod.proxy.exited() {
            if !st.success() {
                return Err(format!("exit status {st}:\n{}", pod.proxy.stderr()));
            }
            break;
        }
        if Instant::now() > deadline {
            return Err("still running 10 s after /quitquitquit".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(fams)
}

/// Families that must exist in both, with the same label keys: the readiness gauges, the
/// control-plane connection's cluster stats (tagged through `alt_stat_name: xds-grpc;`) and
/// the managers' counters that Istio's dashboards read.
const REQUIRED: &[&str] = &[
    "envoy_server_state",
    "envoy_server_live",
    "envoy_server_uptime",
    "envoy_listener_manager_workers_started",
    "envoy_listener_manager_total_listeners_active",
    "envoy_listener_manager_lds_update_success",
    "envoy_cluster_manager_active_clusters",
    "envoy_cluster_manager_cds_update_success",
    "envoy_cluster_upstream_cx_total",
    "envoy_cluster_upstream_rq_total",
    "envoy_cluster_membership_healthy",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pilot_agent_drop_in() {
    let Some(path) = ferry_tests::fixtures::istio("bootstrap/rendered-sidecar-bootstrap.json")
    else {
        return;
    };
    let template: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("read fixture"))
            .expect("fixture JSON");
    let ferry = run_pod(ProxyKind::Ferry, &proxy::ferry_bin(), &template)
        .await
        .unwrap_or_else(|e| panic!("ferry under the pilot-agent stand-in: {e}"));
    let mut failures = Vec::new();
    for name in REQUIRED {
        if !ferry.contains_key(*name) {
            failures.push(format!("ferry lacks {name}"));
        }
    }
    if let Some((keys, _)) = ferry.get("envoy_cluster_upstream_cx_total") {
        if !keys.contains("cluster_name") {
            failures.push(format!(
                "envoy_cluster_upstream_cx_total labels {keys:?} lack cluster_name"
            ));
        }
    }
    // The stats matcher leaves no per-listener or per-route-cluster stats.
    for name in ferry.keys() {
        if name.starts_with("envoy_listener_downstream")
            || name.starts_with("envoy_http_downstream")
        {
            failures.push(format!(
                "ferry shows {name}, which Istio's stats matcher excludes"
            ));
        }
    }
    if let Some(envoy_bin) = proxy::envoy_or_skip() {
        let envoy = run_pod(ProxyKind::Envoy, &envoy_bin, &template)
            .await
            .unwrap_or_else(|e| panic!("envoy under the pilot-agent stand-in: {e}"));
        let mut missing = Vec::new();
        for (name, (keys, counters)) in &ferry {
            match envoy.get(name) {
                None => failures.push(format!("ferry has {name}, Envoy does not")),
                Some((ekeys, ecounters)) => {
                    if ekeys != keys {
                        failures.push(format!("{name}: label keys {keys:?}, Envoy {ekeys:?}"));
                    }
                    if REQUIRED.contains(&name.as_str())
                        && name.ends_with("_total")
                        && name.contains("upstream")
                        && counters != ecounters
                    {
                        failures.push(format!("{name}: {counters:?}, Envoy {ecounters:?}"));
                    }
                }
            }
        }
        for name in envoy.keys().filter(|n| !ferry.contains_key(*n)) {
            missing.push(name.clone());
        }
        eprintln!(
            "pilot-agent drop-in: {} metric families in Ferry, {} in Envoy; not in Ferry ({}): {}",
            ferry.len(),
            envoy.len(),
            missing.len(),
            missing.join(" ")
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
