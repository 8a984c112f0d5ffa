//! Dynamic resources in `/config_dump`, shaped as Envoy shows them.

use super::{Accepted, XdsState};
use serde_json::{json, Value};
use std::sync::Arc;

fn ts(a: &Accepted<impl Sized>) -> String {
    crate::admin::rfc3339(a.updated)
}

/// The resource as Envoy's JSON, rendered from its encoding only when `/config_dump` asks.
fn render<T>(a: &Accepted<T>, name: &str) -> Value {
    let url = format!("type.googleapis.com/{name}");
    let v = crate::config::support::decode_any(&url, &a.raw, "")
        .map(|m| crate::admin::to_json(&m))
        .unwrap_or(Value::Null);
    typed(v, name)
}

fn typed(mut v: Value, name: &str) -> Value {
    if let Value::Object(m) = &mut v {
        let mut out = serde_json::Map::new();
        out.insert(
            "@type".into(),
            Value::String(format!("type.googleapis.com/{name}")),
        );
        out.extend(std::mem::take(m));
        return Value::Object(out);
    }
    v
}

impl XdsState {
    /// `version_info` of the last accepted CDS and LDS responses.
    pub fn versions(&self) -> (String, String) {
        let res = self.res.lock().unwrap_or_else(|p| p.into_inner());
        (res.cds_version.clone(), res.lds_version.clone())
    }

    pub fn dump_clusters(&self) -> Vec<Value> {
        let res = self.res.lock().unwrap_or_else(|p| p.into_inner());
        res.clusters
            .values()
            .map(|c| json!({"version_info": c.version, "cluster": render(c, "envoy.config.cluster.v3.Cluster"), "last_updated": ts(c)}))
            .collect()
    }

    pub fn dump_listeners(&self) -> Vec<Value> {
        let res = self.res.lock().unwrap_or_else(|p| p.into_inner());
        let draining = res.draining.iter().map(|(name, l)| {
            json!({"name": name, "draining_state": {"version_info": l.version, "listener": render(l, "envoy.config.listener.v3.Listener"), "last_updated": ts(l)}})
        });
        res.listeners
            .iter()
            .map(|(name, l)| {
                // A listener still waiting for its routes is warming.
                let serving = res.serving.get(name).is_some_and(|s| Arc::ptr_eq(s, &l.value));
                let state = if serving { "active_state" } else { "warming_state" };
                json!({"name": name, state: {"version_info": l.version, "listener": render(l, "envoy.config.listener.v3.Listener"), "last_updated": ts(l)}})
            })
            .chain(draining)
            .collect()
    }

    pub fn dump_routes(&self) -> Vec<Value> {
        let res = self.res.lock().unwrap_or_else(|p| p.into_inner());
        res.routes
            .values()
            .map(|r| json!({"version_info": r.version, "route_config": render(r, "envoy.config.route.v3.RouteConfiguration"), "last_updated": ts(r)}))
            .collect()
    }

    pub fn dump_endpoints(&self) -> Vec<Value> {
        let res = self.res.lock().unwrap_or_else(|p| p.into_inner());
        res.assignments
            .values()
            .map(|a| json!({"endpoint_config": render(a, "envoy.config.endpoint.v3.ClusterLoadAssignment"), "last_updated": ts(a)}))
            .collect()
    }
}
