//! Admin renderings: /server_info, /config_dump, /clusters, /listeners, /memory.

use crate::config::support::decode_any;
use crate::snapshot::Server;
use prost_reflect::{DynamicMessage, SerializeOptions, Value};
use serde_json::{json, Value as Json};
use std::time::SystemTime;

pub fn to_json(msg: &DynamicMessage) -> Json {
    let opts = SerializeOptions::new()
        .use_proto_field_name(true)
        .skip_default_fields(true);
    msg.serialize_with_options(serde_json::value::Serializer, &opts)
        .unwrap_or(Json::Null)
}

pub fn rfc3339(t: SystemTime) -> String {
    let mut out = String::with_capacity(24);
    crate::clock::Civil::of(t).rfc3339_millis(&mut out);
    out
}

fn started_at(server: &Server) -> SystemTime {
    SystemTime::now() - server.started.elapsed()
}

pub fn server_info(server: &Server) -> String {
    let b = &server.bootstrap;
    let up = server.started.elapsed().as_secs();
    let cli = &server.cli;
    let info = json!({
        "version": format!("ferry/{}/Clean/RELEASE/rustls", crate::VERSION),
        "state": server.effective_state().name(),
        "hot_restart_version": "disabled",
        "command_line_options": {
            "base_id": cli.base_id.to_string(),
            "concurrency": server.concurrency,
            "config_path": cli.config_path.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
            "config_yaml": cli.config_yaml.clone().unwrap_or_default(),
            "log_level": crate::app::level_name(&cli.log_level),
            "service_cluster": b.node.cluster,
            "service_node": b.node.id,
            "service_zone": b.node.zone,
            "mode": format!("{:?}", cli.mode),
            "drain_time": format!("{}s", cli.drain_time_s),
            "parent_shutdown_time": format!("{}s", cli.parent_shutdown_time_s),
            "restart_epoch": cli.restart_epoch,
            "disable_hot_restart": true,
        },
        "node": to_json_field(&b.raw_message(), "node"),
        "uptime_current_epoch": format!("{up}s"),
        "uptime_all_epochs": format!("{up}s"),
    });
    serde_json::to_string_pretty(&info).unwrap_or_default()
}

fn to_json_field(msg: &DynamicMessage, field: &str) -> Json {
    match msg.get_field_by_name(field).as_deref() {
        Some(Value::Message(m)) => to_json(m),
        _ => json!({}),
    }
}

fn list_field(msg: &DynamicMessage, field: &str) -> Vec<DynamicMessage> {
    match msg.get_field_by_name(field).as_deref() {
        Some(Value::List(items)) => items
            .iter()
            .filter_map(|v| v.as_message().cloned())
            .collect(),
        _ => vec![],
    }
}

fn static_resources(server: &Server) -> Option<DynamicMessage> {
    match server
        .bootstrap
        .raw_message()
        .get_field_by_name("static_resources")
        .as_deref()
    {
        Some(Value::Message(m)) => Some(m.clone()),
        _ => None,
    }
}

/// Inline route configurations of the static listeners' HTTP connection managers.
fn static_routes(listeners: &[DynamicMessage]) -> Vec<Json> {
    let mut out = Vec::new();
    for l in listeners {
        let chains = list_field(l, "filter_chains");
        for chain in chains.iter().chain(
            match l.get_field_by_name("default_filter_chain").as_deref() {
                Some(Value::Message(m)) => vec![m.clone()],
                _ => vec![],
            }
            .iter(),
        ) {
            for f in list_field(chain, "filters") {
                let Some(Value::Message(any)) =
                    f.get_field_by_name("typed_config").as_deref().cloned()
                else {
                    continue;
                };
                let url = any
                    .get_field_by_name("type_url")
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                let bytes = any
                    .get_field_by_name("value")
                    .and_then(|v| v.as_bytes().cloned())
                    .unwrap_or_default();
                if !url.ends_with("HttpConnectionManager") {
                    continue;
                }
                if let Ok(hcm) = decode_any(&url, &bytes, "") {
                    if let Some(Value::Message(rc)) =
                        hcm.get_field_by_name("route_config").as_deref()
                    {
                        out.push(to_json(rc));
                    }
                }
            }
        }
    }
    out
}

pub fn config_dump(server: &Server, resource: Option<&str>, include_eds: bool) -> String {
    let ts = rfc3339(started_at(server));
    let sr = static_resources(server);
    let listeners = sr
        .as_ref()
        .map(|s| list_field(s, "listeners"))
        .unwrap_or_default();
    let clusters = sr
        .as_ref()
        .map(|s| list_field(s, "clusters"))
        .unwrap_or_default();
    let t = "type.googleapis.com/envoy.admin.v3.";
    let mut configs = vec![
        json!({"@type": format!("{t}BootstrapConfigDump"), "bootstrap": to_json(&server.bootstrap.raw_message()), "last_updated": ts}),
        json!({"@type": format!("{t}ClustersConfigDump"), "static_clusters": clusters.iter().map(|c| json!({"cluster": with_type(to_json(c), "envoy.config.cluster.v3.Cluster"), "last_updated": ts})).collect::<Vec<_>>()}),
        json!({"@type": format!("{t}ListenersConfigDump"), "static_listeners": listeners.iter().map(|l| json!({"listener": with_type(to_json(l), "envoy.config.listener.v3.Listener"), "last_updated": ts})).collect::<Vec<_>>()}),
        json!({"@type": format!("{t}ScopedRoutesConfigDump")}),
        json!({"@type": format!("{t}RoutesConfigDump"), "static_route_configs": static_routes(&listeners).into_iter().map(|r| json!({"route_config": with_type(r, "envoy.config.route.v3.RouteConfiguration"), "last_updated": ts})).collect::<Vec<_>>()}),
        json!({"@type": format!("{t}SecretsConfigDump")}),
    ];
    if let Some(x) = server.xds.get() {
        let add = |c: &mut Json, key: &str, items: Vec<Json>| {
            if !items.is_empty() {
                c[key] = Json::Array(items);
            }
        };
        let (cds, lds) = x.versions();
        if !cds.is_empty() {
            configs[1]["version_info"] = Json::String(cds);
        }
        if !lds.is_empty() {
            configs[2]["version_info"] = Json::String(lds);
        }
        add(
            &mut configs[1],
            "dynamic_active_clusters",
            x.dump_clusters(),
        );
        add(&mut configs[2], "dynamic_listeners", x.dump_listeners());
        add(&mut configs[4], "dynamic_route_configs", x.dump_routes());
        if include_eds {
            configs.insert(2, json!({"@type": format!("{t}EndpointsConfigDump"), "dynamic_endpoint_configs": x.dump_endpoints()}));
        }
    }
    let body = match resource {
        Some(r) => {
            let mut items = Vec::new();
            for c in &configs {
                if let Some(Json::Array(a)) = c.get(r) {
                    items.extend(a.iter().cloned());
                }
            }
            json!({ "configs": items })
        }
        None => json!({ "configs": configs }),
    };
    serde_json::to_string_pretty(&body).unwrap_or_default()
}

fn with_type(mut v: Json, name: &str) -> Json {
    if let Json::Object(m) = &mut v {
        let mut out = serde_json::Map::new();
        out.insert(
            "@type".into(),
            Json::String(format!("type.googleapis.com/{name}")),
        );
        out.extend(std::mem::take(m));
        return Json::Object(out);
    }
    v
}

/// Envoy's `/listeners` text: `name::address`.
pub fn listeners(server: &Server) -> String {
    server
        .listeners
        .list()
        .iter()
        .flat_map(|(name, address, more)| {
            std::iter::once(address)
                .chain(more)
                .map(move |a| format!("{name}::{a}\n"))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Envoy's `/listeners?format=json`: each listener's name and local address.
pub fn listeners_json(server: &Server) -> String {
    let statuses: Vec<Json> = server
        .listeners
        .list()
        .iter()
        .map(|(name, a, more)| {
            let sa = |a: &std::net::SocketAddr| {
                json!({"socket_address": {"address": a.ip().to_string(), "port_value": a.port()}})
            };
            let mut l = json!({"name": name, "local_address": sa(a)});
            if !more.is_empty() {
                l["additional_local_addresses"] = more.iter().map(sa).collect();
            }
            l
        })
        .collect();
    serde_json::to_string_pretty(&json!({ "listener_statuses": statuses })).unwrap_or_default()
}

/// Resident set size from /proc.
pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * 4096)
}

pub fn memory() -> String {
    let rss = rss_bytes();
    // The allocator's own counts where it has them (glibc), else the resident size.
    let (allocated, heap, free) = crate::overload::heap_stats().unwrap_or((rss, rss, 0));
    serde_json::to_string_pretty(&json!({"allocated": allocated.to_string(), "heap_size": heap.to_string(), "pageheap_unmapped": "0", "pageheap_free": free.to_string(), "total_thread_cache": "0", "total_physical_bytes": rss.to_string()})).unwrap_or_default()
}
