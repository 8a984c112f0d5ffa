//! What a proxy exposes about its dynamic configuration on the admin API,
//! flattened for comparison: `/ready`, a summary of `/config_dump`'s
//! dynamic sections, and the xDS-related stats.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::client;
use crate::normalise::Observation;
use crate::ports::unrender_ports;
use crate::proxy::Target;

/// Stats compared after each step: exact names, or `prefix*` patterns.
/// Per-resource stats (`cluster.<name>.update_success`,
/// `http.<prefix>.rds.<route>.update_success`) are matched by suffix in
/// [`keep_stat`].
pub const STATS: &[&str] = &[
    "cluster_manager.cds.*",
    "listener_manager.lds.*",
    "control_plane.*",
    "cluster_manager.active_clusters",
    "cluster_manager.warming_clusters",
    "cluster_manager.cluster_added",
    "cluster_manager.cluster_modified",
    "cluster_manager.cluster_removed",
    "cluster_manager.cluster_updated",
    "listener_manager.listener_added",
    "listener_manager.listener_removed",
    "listener_manager.listener_modified",
    "listener_manager.listener_create_success",
    "listener_manager.total_listeners_active",
    "listener_manager.total_listeners_warming",
    "listener_manager.total_listeners_draining",
];

/// Volatile or histogram stats never compared.
const VOLATILE: &[&str] = &[
    "update_time",
    "update_duration",
    "version_text",
    "config_reload_time_ms",
];

fn keep_stat(name: &str) -> bool {
    if VOLATILE.iter().any(|v| name.ends_with(v)) {
        return false;
    }
    let listed = STATS.iter().any(|p| match p.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => name == *p,
    });
    let per_resource = (name.starts_with("cluster.") && !name.starts_with("cluster.xds_cluster."))
        && [".update_", ".membership_total", ".membership_healthy"]
            .iter()
            .any(|s| name.contains(s))
        || name.starts_with("http.") && name.contains(".rds.");
    listed || per_resource
}

/// One line per dynamic resource in a `/config_dump` section.
fn dump_lines(section: &str, entries: &[Value], names: &BTreeMap<u16, String>) -> Vec<String> {
    let mut out = Vec::new();
    for e in entries {
        let name = e["name"]
            .as_str()
            .or_else(|| e["cluster"]["name"].as_str())
            .or_else(|| e["route_config"]["name"].as_str())
            .or_else(|| e["endpoint_config"]["cluster_name"].as_str())
            .unwrap_or("?");
        let mut line = name.to_string();
        for state in ["active_state", "warming_state", "draining_state"] {
            if let Some(v) = e[state]["version_info"].as_str() {
                line.push_str(&format!(" {state}.version_info={v:?}"));
            }
        }
        if let Some(v) = e["version_info"].as_str() {
            line.push_str(&format!(" version_info={v:?}"));
        }
        if !e["error_state"].is_null() {
            line.push_str(" +error_state");
        }
        if section == "dynamic_endpoint_configs" {
            let mut eps = Vec::new();
            for loc in e["endpoint_config"]["endpoints"]
                .as_array()
                .into_iter()
                .flatten()
            {
                for lb in loc["lb_endpoints"].as_array().into_iter().flatten() {
                    let sa = &lb["endpoint"]["address"]["socket_address"];
                    eps.push(format!("{}:{}", sa["address"], sa["port_value"]));
                }
            }
            line.push_str(&format!(" endpoints=[{}]", eps.join(",")));
        }
        out.push(unrender_ports(&line, names));
    }
    out.sort();
    out
}

/// `/ready`, the dynamic sections of `/config_dump?include_eds` and the
/// selected stats of one proxy. `upstreams` maps shared upstream ports to
/// their placeholders.
pub async fn observe_state(t: &Target, upstreams: &BTreeMap<u16, String>) -> Observation {
    let admin = t.admin_port();
    let mut names = t.port_names();
    names.extend(upstreams.iter().map(|(p, n)| (*p, n.clone())));
    let mut obs = Observation::new();
    match client::admin_get(admin, "/ready").await {
        Ok(r) => obs.insert("ready".into(), format!("{} {}", r.status, r.text().trim())),
        Err(e) => obs.insert("ready".into(), format!("error: {e}")),
    };
    let state = client::admin_get(admin, "/server_info")
        .await
        .ok()
        .and_then(|r| serde_json::from_slice::<Value>(&r.body).ok())
        .and_then(|v| v["state"].as_str().map(str::to_string));
    obs.insert(
        "server_info.state".into(),
        state.unwrap_or_else(|| "<no /server_info state>".into()),
    );
    let dump: Value = client::admin_get(admin, "/config_dump?include_eds")
        .await
        .ok()
        .and_then(|r| serde_json::from_slice(&r.body).ok())
        .unwrap_or(Value::Null);
    for config in dump["configs"].as_array().into_iter().flatten() {
        let Some(map) = config.as_object() else {
            continue;
        };
        let kind = map.get("@type").and_then(Value::as_str).unwrap_or("?");
        let kind = kind.rsplit('.').next().unwrap_or(kind);
        if let Some(v) = map.get("version_info").and_then(Value::as_str) {
            obs.insert(format!("config_dump.{kind}.version_info"), v.to_string());
        }
        for (key, value) in map {
            let Some(entries) = value.as_array() else {
                continue;
            };
            if !key.starts_with("dynamic_") {
                continue;
            }
            if std::env::var_os("FERRY_TESTS_DUMP").is_some() {
                let text = serde_json::to_string_pretty(value).unwrap_or_default();
                eprintln!("--- {} /config_dump {kind}.{key}:\n{text}", t.kind);
            }
            let lines = dump_lines(key, entries, &names);
            if !lines.is_empty() {
                obs.insert(format!("config_dump.{key}"), lines.join("\n"));
            }
        }
    }
    let stats = client::admin_get(admin, "/stats")
        .await
        .map(|r| r.text())
        .unwrap_or_default();
    for line in stats.lines() {
        let Some((name, value)) = line.split_once(": ") else {
            continue;
        };
        if keep_stat(name) {
            let name = unrender_ports(name, &names);
            obs.insert(format!("stat.{name}"), value.to_string());
        }
    }
    obs
}
