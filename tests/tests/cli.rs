//! Command-line flags: node overrides, `--config-yaml` merged over `-c`,
//! `--concurrency`, `--mode validate` on a tuning-only field and
//! `--version`.

use ferry_tests::client::HttpRequest;
use ferry_tests::normalise::observe_http;
use ferry_tests::proxy::{self, TempDir};
use ferry_tests::{client, conn, Observation, ProxyKind, Setup, Target};

const LIFECYCLE: &str = include_str!("../configs/lifecycle.yaml");

/// `field` of a JSON value as text (`<absent>` when missing); strings
/// unquoted.
fn text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => "<absent>".into(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

async fn node_fields(t: &Target) -> Observation {
    let info = conn::server_info(t.admin_port()).await;
    let mut obs = Observation::new();
    obs.insert("node.id".into(), text(&info["node"]["id"]));
    obs.insert("node.cluster".into(), text(&info["node"]["cluster"]));
    obs.insert(
        "node.locality.zone".into(),
        text(&info["node"]["locality"]["zone"]),
    );
    for opt in ["service_node", "service_cluster", "service_zone"] {
        obs.insert(
            format!("command_line_options.{opt}"),
            text(&info["command_line_options"][opt]),
        );
    }
    obs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_node_overrides() {
    let Some(env) = Setup::new("cli_node_overrides", LIFECYCLE)
        .echo("UP_A", "a")
        .args(&[
            "--service-node",
            "node-x",
            "--service-cluster",
            "cluster-y",
            "--service-zone",
            "zone-z",
        ])
        .start()
        .await
    else {
        return;
    };
    let mut report = env.report();
    let mut case = ferry_tests::Case::get("server_info node after --service-*", "/");
    case = case
        .expect("node.id", "node-x")
        .expect("node.cluster", "cluster-y")
        .expect("node.locality.zone", "zone-z");
    let envoy = node_fields(&env.envoy.target()).await;
    let ferry = node_fields(&env.ferry.target()).await;
    report.compare_case(&case, &envoy, &ferry);
    report.finish();
}

/// A second listener (L2, routing to the same cluster) and a node id, given
/// only through `--config-yaml` and merged over the `-c` bootstrap.
const MERGED: &str = r#"{node: {id: merged-node}, static_resources: {listeners: [{name: merged, address: {socket_address: {address: 127.0.0.1, port_value: {{L2}}}}, filter_chains: [{filters: [{name: envoy.filters.network.http_connection_manager, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager, stat_prefix: merged, route_config: {name: merged, virtual_hosts: [{name: all, domains: ["*"], routes: [{match: {prefix: "/"}, route: {cluster: backend}}]}]}, http_filters: [{name: envoy.filters.http.router, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}]}}]}]}]}}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_config_yaml_merged() {
    let Some(env) = Setup::new("cli_config_yaml_merged", LIFECYCLE)
        .echo("UP_A", "a")
        .args(&["--config-yaml", MERGED])
        .start()
        .await
    else {
        return;
    };
    let mut report = env.report();
    let case = ferry_tests::Case::get("merged bootstrap", "/")
        .expect("node.id", "merged-node")
        .expect("L1 status", "200")
        .expect("L2 (merged listener) status", "200")
        .expect("L2 (merged listener) upstream", "a");
    let mut obs = Vec::new();
    for t in [env.envoy.target(), env.ferry.target()] {
        let mut o = Observation::new();
        let info = conn::server_info(t.admin_port()).await;
        o.insert("node.id".into(), text(&info["node"]["id"]));
        for l in ["L1", "L2"] {
            let resp = client::send(t.port(l), &HttpRequest::get("/merged")).await;
            let seen = observe_http(&resp, &t.port_names());
            let key = if l == "L1" {
                "L1".to_string()
            } else {
                "L2 (merged listener)".to_string()
            };
            for field in ["status", "error", "upstream", "upstream.path"] {
                if let Some(v) = seen.get(field) {
                    o.insert(format!("{key} {field}"), v.clone());
                }
            }
        }
        obs.push(o);
    }
    report.compare_case(&case, &obs[0], &obs[1]);
    report.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_concurrency() {
    let Some(env) = Setup::new("cli_concurrency", LIFECYCLE)
        .echo("UP_A", "a")
        .args(&["--concurrency", "2"])
        .start()
        .await
    else {
        return;
    };
    let mut report = env.report();
    let case = ferry_tests::Case::get("--concurrency 2", "/")
        .expect("command_line_options.concurrency", "2")
        .expect("stat server.concurrency", "2");
    let mut obs = Vec::new();
    for t in [env.envoy.target(), env.ferry.target()] {
        let mut o = Observation::new();
        let info = conn::server_info(t.admin_port()).await;
        o.insert(
            "command_line_options.concurrency".into(),
            text(&info["command_line_options"]["concurrency"]),
        );
        let stat = conn::stat(t.admin_port(), "server.concurrency").await;
        o.insert("stat server.concurrency".into(), stat);
        obs.push(o);
    }
    report.compare_case(&case, &obs[0], &obs[1]);
    report.finish();
}

fn binaries() -> Vec<(ProxyKind, std::path::PathBuf)> {
    let mut bins = vec![(ProxyKind::Ferry, proxy::ferry_bin())];
    if let Some(envoy) = proxy::envoy_or_skip() {
        bins.insert(0, (ProxyKind::Envoy, envoy));
    }
    bins
}

#[test]
fn cli_validate_tuning_only_field() {
    let dir = TempDir::new("tuning");
    let template = include_str!("../configs/tuning_only.yaml");
    let (yaml, _) = proxy::render_instance(template, &Default::default());
    let file = dir.path().join("tuning_only.yaml");
    std::fs::write(&file, yaml).expect("write bootstrap");
    let wanted =
        "accepted, not acted on: static_resources.clusters[0].per_connection_buffer_limit_bytes";
    let mut failures = Vec::new();
    for (kind, bin) in binaries() {
        let v = proxy::validate(&bin, &file);
        if !v.status.success() {
            failures.push(format!(
                "{kind} --mode validate exited with {} (want 0):\n{}{}",
                v.status, v.stdout, v.stderr
            ));
        }
        if kind == ProxyKind::Ferry && !proxy::ferry_is_envoy() && !v.stdout.contains(wanted) {
            failures.push(format!(
                "ferry --mode validate stdout lacks `{wanted}`:\n{}",
                v.stdout
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn cli_version() {
    let mut failures = Vec::new();
    for (kind, bin) in binaries() {
        let v = proxy::run(&bin, &["--version"]);
        let out = format!("{}{}", v.stdout, v.stderr);
        if !v.status.success() || !out.contains("version") {
            failures.push(format!(
                "{kind} --version: exit {} (want 0), output (want \"version\"): {out:?}",
                v.status
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `application_log_config.log_format` (text and JSON) shapes every log line written after
/// the bootstrap is read, and it may not be given with `--log-format` as well.
#[test]
fn cli_application_log_format() {
    let dir = TempDir::new("logfmt");
    let text = dir.path().join("text.yaml");
    let json = dir.path().join("json.yaml");
    std::fs::write(
        &text,
        "application_log_config:\n  log_format:\n    text_format: \"%Y-%m-%dT%T.%fZ\\t%l\\tenvoy %n\\t%v\"\nstatic_resources: {}\n",
    )
    .expect("write");
    std::fs::write(
        &json,
        "application_log_config:\n  log_format:\n    json_format: {level: \"%l\", logger: \"%n\", msg: \"%j\", time: \"%Y-%m-%dT%T.%eZ\"}\nstatic_resources: {}\n",
    )
    .expect("write");
    let text_line = regex::Regex::new(
        r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z\t(trace|debug|info|warning|error|critical)\tenvoy [a-z_0-9]+\t.+$",
    )
    .expect("regex");
    let mut failures = Vec::new();
    for (kind, bin) in binaries() {
        let run = |file: &std::path::Path, extra: &[&str]| {
            let f = file.display().to_string();
            let mut args = vec![
                "--mode",
                "init_only",
                "-l",
                "info",
                "--concurrency",
                "1",
                "-c",
            ];
            args.push(&f);
            args.extend_from_slice(extra);
            proxy::run(&bin, &args)
        };
        let v = run(&text, &[]);
        let last = v.stderr.lines().last().unwrap_or("");
        if !v.status.success() || !text_line.is_match(last) {
            failures.push(format!(
                "{kind} text format: exit {}, last line {last:?}",
                v.status
            ));
        }
        let v = run(&json, &[]);
        let last = v.stderr.lines().last().unwrap_or("");
        match serde_json::from_str::<serde_json::Value>(last) {
            Ok(o) if v.status.success() && o["level"] == "info" && o["msg"].is_string() => {
                let mut keys: Vec<&String> = o
                    .as_object()
                    .map(|m| m.keys().collect())
                    .unwrap_or_default();
                keys.sort();
                if keys != ["level", "logger", "msg", "time"] {
                    failures.push(format!("{kind} JSON format keys {keys:?}"));
                }
            }
            _ => failures.push(format!(
                "{kind} JSON format: exit {}, last line {last:?}",
                v.status
            )),
        }
        let v = run(&json, &["--log-format", "%v"]);
        if v.status.success()
            || !v
                .stderr
                .contains("Only one of ApplicationLogConfig.log_format or CLI option --log-format")
        {
            failures.push(format!(
                "{kind} with both formats: exit {} (want failure), stderr {:?}",
                v.status,
                v.stderr.lines().last()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
