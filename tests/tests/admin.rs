//! Admin API: readiness, server_info, stats in all three formats after the
//! same traffic, /clusters, /config_dump, health-check fail/ok and
//! /quitquitquit.

use std::time::Duration;

use ferry_tests::client::{self, HttpRequest, HttpResponse};
use ferry_tests::ports::unrender_ports;
use ferry_tests::{Observation, ProxyKind, Setup, Target};

/// Adds status, selected headers and (optionally) the body of an admin
/// response under `key.*`.
fn record(
    obs: &mut Observation,
    t: &Target,
    key: &str,
    resp: &Result<HttpResponse, String>,
    body: bool,
) {
    let resp = match resp {
        Ok(r) => r,
        Err(e) => {
            obs.insert(format!("{key}.error"), e.clone());
            return;
        }
    };
    obs.insert(format!("{key}.status"), resp.status.to_string());
    for h in ["content-type", "cache-control", "x-content-type-options"] {
        if let Some(v) = resp.header(h) {
            obs.insert(format!("{key}.header:{h}"), v.to_string());
        }
    }
    if body {
        obs.insert(
            format!("{key}.body"),
            unrender_ports(&resp.text(), &t.port_names()),
        );
    }
}

fn json(resp: &Result<HttpResponse, String>) -> serde_json::Value {
    resp.as_ref()
        .ok()
        .and_then(|r| serde_json::from_slice(&r.body).ok())
        .unwrap_or(serde_json::Value::Null)
}

/// Sends the same traffic to listener L1: 2x 200, 1x upstream 503, 1x no
/// route (404).
async fn traffic(t: &Target) {
    for path in ["/app/one", "/app/two", "/app/status/503", "/nope"] {
        let _ = client::send(t.port("L1"), &HttpRequest::get(path)).await;
    }
}

const STATS: &[&str] = &[
    "http.admin_http.downstream_rq_total",
    "http.admin_http.downstream_rq_2xx",
    "http.admin_http.downstream_rq_4xx",
    "http.admin_http.downstream_rq_5xx",
    "http.admin_http.downstream_cx_total",
    "http.admin_http.no_route",
    "http.admin_http.rq_total",
    "cluster.admin_target.upstream_rq_total",
    "cluster.admin_target.upstream_rq_200",
    "cluster.admin_target.upstream_rq_2xx",
    "cluster.admin_target.upstream_rq_503",
    "cluster.admin_target.upstream_rq_5xx",
    "cluster.admin_target.upstream_cx_total",
    "cluster.admin_target.membership_healthy",
    "cluster.admin_target.membership_total",
    "listener.127.0.0.1_{{L1}}.downstream_cx_total",
    "cluster_manager.active_clusters",
];

async fn observe_admin(t: Target) -> Observation {
    let admin = t.admin_port();
    let names = t.port_names();
    let mut obs = Observation::new();
    traffic(&t).await;

    let ready = client::admin_get(admin, "/ready").await;
    record(&mut obs, &t, "ready", &ready, true);

    let info = client::admin_get(admin, "/server_info").await;
    record(&mut obs, &t, "server_info", &info, false);
    let info = json(&info);
    obs.insert("server_info.state".into(), info["state"].to_string());
    for opt in ["concurrency", "disable_hot_restart", "mode", "log_level"] {
        obs.insert(
            format!("server_info.command_line_options.{opt}"),
            info["command_line_options"][opt].to_string(),
        );
    }

    let stats = client::admin_get(admin, "/stats").await;
    record(&mut obs, &t, "stats", &stats, false);
    let text = stats
        .map(|r| unrender_ports(&r.text(), &names))
        .unwrap_or_default();
    for stat in STATS {
        let value = text
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{stat}: ")))
            .unwrap_or("<absent>");
        obs.insert(format!("stats {stat}"), value.to_string());
    }

    let filtered = client::admin_get(
        admin,
        "/stats?filter=%5Ecluster%5C.admin_target%5C.upstream_rq_%28total%7C2xx%29%24",
    )
    .await;
    record(&mut obs, &t, "stats?filter", &filtered, true);

    let prom = client::admin_get(admin, "/stats/prometheus").await;
    record(&mut obs, &t, "prometheus", &prom, false);
    let prom_text = prom.map(|r| r.text()).unwrap_or_default();
    let wanted = [
        "# TYPE envoy_cluster_upstream_rq_total ",
        "envoy_cluster_upstream_rq_total{envoy_cluster_name=\"admin_target\"}",
        "envoy_http_downstream_rq_total{envoy_http_conn_manager_prefix=\"admin_http\"}",
        "envoy_cluster_upstream_rq{envoy_response_code=\"200\",envoy_cluster_name=\"admin_target\"}",
    ];
    for prefix in wanted {
        let line = prom_text
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or("<absent>");
        obs.insert(format!("prometheus line {prefix}"), line.to_string());
    }

    let clusters = client::admin_get(admin, "/clusters").await;
    record(&mut obs, &t, "clusters", &clusters, false);
    let mut lines: Vec<String> = clusters
        .map(|r| r.text())
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("admin_target::"))
        .map(|l| unrender_ports(l, &names))
        .collect();
    lines.sort();
    obs.insert("clusters admin_target lines".into(), lines.join("\n"));

    let dump = client::admin_get(admin, "/config_dump").await;
    record(&mut obs, &t, "config_dump", &dump, false);
    let dump = json(&dump);
    let types: Vec<String> = dump["configs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| c["@type"].as_str().unwrap_or("?").to_string())
        .collect();
    obs.insert("config_dump @types".into(), types.join(", "));
    let mut names_in_dump = Vec::new();
    for c in dump["configs"].as_array().into_iter().flatten() {
        for l in c["static_listeners"].as_array().into_iter().flatten() {
            names_in_dump.push(format!("listener {}", l["listener"]["name"]));
        }
        for cl in c["static_clusters"].as_array().into_iter().flatten() {
            names_in_dump.push(format!("cluster {}", cl["cluster"]["name"]));
        }
        for rc in c["static_route_configs"].as_array().into_iter().flatten() {
            names_in_dump.push(format!("route_config {}", rc["route_config"]["name"]));
        }
    }
    obs.insert("config_dump static names".into(), names_in_dump.join(", "));

    let unknown = client::admin_get(admin, "/no-such-admin-endpoint").await;
    obs.insert(
        "unknown endpoint.status".into(),
        unknown.map(|r| r.status.to_string()).unwrap_or_else(|e| e),
    );

    // Mutating endpoints need POST.
    let get_fail = client::admin_get(admin, "/healthcheck/fail").await;
    record(&mut obs, &t, "GET /healthcheck/fail", &get_fail, true);

    let fail = client::admin_post(admin, "/healthcheck/fail").await;
    record(&mut obs, &t, "POST /healthcheck/fail", &fail, true);
    let ready = client::admin_get(admin, "/ready").await;
    record(&mut obs, &t, "ready after fail", &ready, true);
    let info = json(&client::admin_get(admin, "/server_info").await);
    obs.insert(
        "server_info.state after fail".into(),
        info["state"].to_string(),
    );
    let app = client::send(t.port("L1"), &HttpRequest::get("/app/after-fail")).await;
    obs.insert(
        "traffic after fail.status".into(),
        app.map(|r| r.status.to_string()).unwrap_or_else(|e| e),
    );
    let ok = client::admin_post(admin, "/healthcheck/ok").await;
    record(&mut obs, &t, "POST /healthcheck/ok", &ok, true);
    let ready = client::admin_get(admin, "/ready").await;
    record(&mut obs, &t, "ready after ok", &ready, true);
    obs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints() {
    let Some(env) = Setup::new("admin_endpoints", include_str!("../configs/admin.yaml"))
        .echo("UP_A", "a")
        .start()
        .await
    else {
        return;
    };
    let mut report = env.report();
    let envoy = observe_admin(env.envoy.target()).await;
    let ferry = observe_admin(env.ferry.target()).await;
    report.compare("admin endpoints after identical traffic", &envoy, &ferry);
    for (kind, obs) in [(ProxyKind::Envoy, &envoy), (ProxyKind::Ferry, &ferry)] {
        let get = |k: &str| obs.get(k).map(String::as_str).unwrap_or("<absent>");
        report.check(
            kind,
            "admin",
            get("ready.body") == "LIVE\n",
            "/ready says LIVE",
        );
        report.check(
            kind,
            "admin",
            get("server_info.state") == "\"LIVE\"",
            "server_info state LIVE",
        );
        report.check(
            kind,
            "admin",
            get("stats cluster.admin_target.upstream_rq_total") == "3"
                && get("stats cluster.admin_target.upstream_rq_503") == "1",
            "3 upstream requests counted",
        );
        report.check(
            kind,
            "admin",
            get("stats http.admin_http.downstream_rq_total") == "4",
            "4 downstream requests counted",
        );
        report.check(
            kind,
            "admin",
            get("clusters admin_target lines").contains("::cx_active::"),
            "/clusters lists host cx_active",
        );
        report.check(
            kind,
            "admin",
            get("config_dump @types")
                .starts_with("type.googleapis.com/envoy.admin.v3.BootstrapConfigDump"),
            "config_dump starts with the bootstrap",
        );
        report.check(
            kind,
            "admin",
            get("ready after fail.status") == "503",
            "/ready fails after /healthcheck/fail",
        );
        report.check(
            kind,
            "admin",
            get("ready after ok.status") == "200",
            "/ready recovers after /healthcheck/ok",
        );
    }
    report.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_quitquitquit() {
    let Some(mut env) = Setup::new("admin_quitquitquit", include_str!("../configs/admin.yaml"))
        .echo("UP_A", "a")
        .start()
        .await
    else {
        return;
    };
    let mut report = env.report();
    let mut observations = Vec::new();
    for proxy in env.both_mut() {
        let t = proxy.target();
        let mut obs = Observation::new();
        let get = client::admin_get(t.admin_port(), "/quitquitquit").await;
        record(&mut obs, &t, "GET /quitquitquit", &get, true);
        let post = client::admin_post(t.admin_port(), "/quitquitquit").await;
        record(&mut obs, &t, "POST /quitquitquit", &post, true);
        let exit = proxy.wait_exit(Duration::from_secs(10)).await;
        obs.insert(
            "exit".into(),
            match exit {
                Some(status) => format!("exited, code {:?}", status.code()),
                None => "still running after 10 s".into(),
            },
        );
        report.check(t.kind, "quitquitquit", exit.is_some(), "process exits");
        observations.push(obs);
    }
    report.compare("quitquitquit", &observations[0], &observations[1]);
    report.finish();
}
