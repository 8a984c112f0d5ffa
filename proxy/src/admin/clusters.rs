//! `/clusters`: each cluster's thresholds, outlier detection summary and hosts (stats, health
//! flags, weight, locality, priority, success rates), as Envoy's text and JSON forms.

use crate::cluster::{ClusterRt, Host};
use crate::snapshot::Server;
use serde_json::{json, Map, Value as Json};
use std::sync::atomic::Ordering::Relaxed;

/// Named values.
type Named<const N: usize> = [(&'static str, u64); N];

/// A host's stats in Envoy's order: counters, then gauges.
fn host_stats(h: &Host) -> (Named<6>, Named<3>) {
    let s = &h.stats;
    (
        [
            ("cx_connect_fail", s.cx_connect_fail.load(Relaxed)),
            ("cx_total", s.cx_total.load(Relaxed)),
            ("rq_error", s.rq_error.load(Relaxed)),
            ("rq_success", s.rq_success.load(Relaxed)),
            ("rq_timeout", s.rq_timeout.load(Relaxed)),
            ("rq_total", s.rq_total.load(Relaxed)),
        ],
        [
            ("cx_active", s.cx_active.load(Relaxed)),
            ("rq_active", s.rq_active.load(Relaxed)),
            ("rq_pending_active", s.rq_pending_active.load(Relaxed)),
        ],
    )
}

/// The cluster's last success-rate sweep: average and ejection threshold, external then
/// local origin (-1 when not computed).
fn sweep(c: &ClusterRt) -> Option<[f64; 4]> {
    let d = c.outlier.as_ref()?;
    Some(std::array::from_fn(|i| match d.sweep[i].load(Relaxed) {
        0 => -1.0,
        v => (v - 1) as f64 / 100.0,
    }))
}

fn sorted(server: &Server) -> Vec<(String, std::sync::Arc<ClusterRt>)> {
    let snap = server.snapshot.load_full();
    let mut v: Vec<_> = snap
        .clusters
        .iter()
        .map(|(k, c)| (k.clone(), c.clone()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

pub fn text(server: &Server) -> String {
    let mut out = String::new();
    for (name, c) in sorted(server) {
        out.push_str(&format!("{name}::observability_name::{name}\n"));
        if let Some(s) = sweep(&c) {
            for (k, v) in [
                "success_rate_average",
                "success_rate_ejection_threshold",
                "local_origin_success_rate_average",
                "local_origin_success_rate_ejection_threshold",
            ]
            .iter()
            .zip(s)
            {
                out.push_str(&format!("{name}::outlier::{k}::{v}\n"));
            }
        }
        let cb = &c.cfg.circuit_breakers;
        for (prio, t) in [("default", &cb.default), ("high", &cb.high)] {
            for (k, v) in [
                ("max_connections", t.max_connections),
                ("max_pending_requests", t.max_pending_requests),
                ("max_requests", t.max_requests),
                ("max_retries", t.max_retries),
            ] {
                out.push_str(&format!("{name}::{prio}_priority::{k}::{v}\n"));
            }
        }
        out.push_str(&format!("{name}::added_via_api::false\n"));
        for h in c.hosts().iter() {
            let a = h.addr;
            let mut l = |k: &str, v: &dyn std::fmt::Display| {
                out.push_str(&format!("{name}::{a}::{k}::{v}\n"));
            };
            let (counters, gauges) = host_stats(h);
            let mut all: Vec<(&str, u64)> = counters.into_iter().chain(gauges).collect();
            all.sort();
            for (k, v) in all {
                l(k, &v);
            }
            l("hostname", &h.hostname);
            l("health_flags", &h.health_flags());
            l("weight", &h.weight());
            let loc = h.locality();
            l("region", &loc.region);
            l("zone", &loc.zone);
            l("sub_zone", &loc.sub_zone);
            l("canary", &false);
            l("priority", &h.priority());
            let (sr, local_sr) = h.outlier.success_rates();
            l("success_rate", &sr);
            l("local_origin_success_rate", &local_sr);
        }
    }
    out
}

/// A proto3 JSON object without default values (as Envoy renders admin protos).
fn object(fields: impl IntoIterator<Item = (&'static str, Json)>) -> Json {
    let m: Map<String, Json> = fields
        .into_iter()
        .filter(|(_, v)| !matches!(v, Json::Null) && v != &json!(false) && v != &json!(""))
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    Json::Object(m)
}

fn host_json(h: &Host) -> Json {
    use crate::cluster::host::flag;
    let (counters, gauges) = host_stats(h);
    let stat = |name: &str, v: u64, gauge: bool| {
        let mut m = Map::new();
        if gauge {
            m.insert("type".into(), json!("GAUGE"));
        }
        m.insert("name".into(), json!(name));
        if v != 0 {
            // uint64 values are strings in proto3 JSON.
            m.insert("value".into(), json!(v.to_string()));
        }
        Json::Object(m)
    };
    let stats: Vec<Json> = counters
        .iter()
        .map(|&(n, v)| stat(n, v, false))
        .chain(gauges.iter().map(|&(n, v)| stat(n, v, true)))
        .collect();
    let f = h.flags();
    use crate::config::cluster::EdsHealth;
    let eds = match h.eds_health() {
        EdsHealth::Unknown => "HEALTHY",
        EdsHealth::Timeout => "UNHEALTHY",
        e => e.name(),
    };
    let health = object([
        (
            "failed_active_health_check",
            json!(f & flag::FAILED_ACTIVE_HC != 0),
        ),
        (
            "failed_outlier_check",
            json!(f & flag::FAILED_OUTLIER_CHECK != 0),
        ),
        ("eds_health_status", json!(eds)),
        (
            "failed_active_degraded_check",
            json!(f & flag::DEGRADED_ACTIVE_HC != 0),
        ),
        ("pending_active_hc", json!(f & flag::PENDING_ACTIVE_HC != 0)),
        ("active_hc_timeout", json!(f & flag::ACTIVE_HC_TIMEOUT != 0)),
    ]);
    let loc = h.locality();
    let (sr, local_sr) = h.outlier.success_rates();
    let percent = |v: f64| {
        if v >= 0.0 {
            json!({ "value": v })
        } else {
            Json::Null
        }
    };
    let (ip, port) = (h.addr.ip().to_string(), h.addr.port());
    object([
        (
            "address",
            json!({"socket_address": {"address": ip, "port_value": port}}),
        ),
        ("stats", json!(stats)),
        ("health_status", health),
        ("success_rate", percent(sr)),
        ("weight", json!(h.weight())),
        ("hostname", json!(h.hostname)),
        (
            "priority",
            if h.priority() == 0 {
                Json::Null
            } else {
                json!(h.priority())
            },
        ),
        ("local_origin_success_rate", percent(local_sr)),
        (
            "locality",
            object([
                ("region", json!(loc.region)),
                ("zone", json!(loc.zone)),
                ("sub_zone", json!(loc.sub_zone)),
            ]),
        ),
    ])
}

pub fn json(server: &Server) -> String {
    let statuses: Vec<Json> = sorted(server)
        .into_iter()
        .map(|(name, c)| {
            let cb = &c.cfg.circuit_breakers;
            let thresholds: Vec<Json> = [("DEFAULT", &cb.default), ("HIGH", &cb.high)]
                .into_iter()
                .map(|(prio, t)| {
                    object([
                        (
                            "priority",
                            if prio == "HIGH" {
                                json!(prio)
                            } else {
                                Json::Null
                            },
                        ),
                        ("max_connections", json!(t.max_connections)),
                        ("max_pending_requests", json!(t.max_pending_requests)),
                        ("max_requests", json!(t.max_requests)),
                        ("max_retries", json!(t.max_retries)),
                    ])
                })
                .collect();
            let s = sweep(&c);
            let percent = |i: usize| match s {
                Some(s) if s[i] >= 0.0 => json!({ "value": s[i] }),
                _ => Json::Null,
            };
            object([
                ("name", json!(name)),
                ("success_rate_ejection_threshold", percent(1)),
                (
                    "host_statuses",
                    json!(c.hosts().iter().map(|h| host_json(h)).collect::<Vec<_>>()),
                ),
                ("local_origin_success_rate_ejection_threshold", percent(3)),
                ("circuit_breakers", json!({ "thresholds": thresholds })),
                ("observability_name", json!(name)),
            ])
        })
        .collect();
    serde_json::to_string_pretty(&json!({ "cluster_statuses": statuses })).unwrap_or_default()
}
