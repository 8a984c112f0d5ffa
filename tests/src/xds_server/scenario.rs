//! Building blocks shared by the xDS differential tests (`tests/xds*.rs`):
//! the initial configuration every scenario starts from, and traffic cases.
//!
//! Initial configuration (version "1" of every type):
//! - CDS: EDS clusters `cluster_a` and `cluster_b`;
//! - EDS: `cluster_a` -> upstream a, `cluster_b` -> upstream b;
//! - LDS: listener `l1` on `{{L1}}`, HCM `stat_prefix: ingress`, routes
//!   from RDS `routes`;
//! - RDS: `routes`: `*` / prefix `/` -> `cluster_a`.

use std::collections::BTreeMap;

use envoy_types::pb::google::protobuf::Any;

use super::resources::{cla, eds_cluster, listener_http, route_config, Routes};
use super::{
    is_wildcard_type, short, Step, StreamKind, XdsEnv, XdsRequest, XdsSide, CLUSTER, ENDPOINT,
    LISTENER, ROUTE,
};
use crate::case::Case;
use crate::proxy::ProxyKind;

pub const ROUTES: &str = "routes";

/// Upstream placeholders and names every scenario starts.
pub const UPSTREAMS: &[(&str, &str)] = &[("UP_A", "a"), ("UP_B", "b")];

/// Listener placeholders (ports pushed over LDS).
pub const LISTENERS: &[&str] = &["L1", "L2"];

/// Listener `name` on the side's port `placeholder` (released for the
/// proxy to bind), HCM `stat_prefix: ingress`, routes from RDS.
pub fn listener(side: &XdsSide, name: &str, placeholder: &str) -> (String, Any) {
    let port = side.release_port(placeholder);
    listener_http(name, port, Routes::Rds(ROUTES.into()), "ingress")
}

/// `GET /` on `listener`, expecting 200 from `upstream`.
pub fn served_by(step: &str, listener: &str, upstream: &str) -> Case {
    Case::get(&format!("{step}: GET / on {listener}"), "/")
        .listener(listener)
        .expect_status(200)
        .expect_upstream(upstream)
}

/// `GET /` on `listener`, expecting the connection to be refused.
pub fn refused(step: &str, listener: &str) -> Case {
    Case::get(&format!("{step}: GET / on {listener}"), "/")
        .listener(listener)
        .expect("error", "<connect failed>")
}

fn saw(log: &[XdsRequest], type_url: &str) -> bool {
    log.iter().any(|r| r.type_url == type_url)
}

/// Checks `/ready` (status and body) on both proxies after a step.
fn check_ready(env: &mut XdsEnv, step: &Step, name: &str, wanted: &str) {
    for (kind, state) in [ProxyKind::Envoy, ProxyKind::Ferry].iter().zip(&step.state) {
        let got = state.get("ready").map(String::as_str);
        let what = format!("/ready should answer {wanted:?}, got {got:?}");
        env.report.check(*kind, name, got == Some(wanted), &what);
    }
}

/// Waits for each proxy's first CDS request and compares the state before
/// any configuration (not ready), pushes clusters and endpoints and
/// compares again once the proxy asks for listeners (still not ready),
/// then pushes listeners and routes, waits for every ACK and readiness, and
/// checks that `GET /` on L1 reaches upstream a.
pub async fn initial_push(env: &mut XdsEnv) {
    env.wait_both("the first CDS request", |log| saw(log, CLUSTER))
        .await;
    let step = env.step("before any configuration").await;
    check_ready(
        env,
        &step,
        "before any configuration",
        "503 PRE_INITIALIZING",
    );
    let (ua, ub) = (env.upstream_port("a"), env.upstream_port("b"));
    env.set(ENDPOINT, |_| {
        vec![cla("cluster_a", &[ua]), cla("cluster_b", &[ub])]
    });
    env.set(ROUTE, |_| {
        vec![route_config(ROUTES, &["*"], &[("/", "cluster_a")])]
    });
    env.set(CLUSTER, |_| {
        vec![eds_cluster("cluster_a"), eds_cluster("cluster_b")]
    });
    env.wait_ack(CLUSTER, "1").await;
    env.wait_ack(ENDPOINT, "1").await;
    env.wait_both("the first LDS request", |log| saw(log, LISTENER))
        .await;
    let step = env.step("clusters pushed, no listeners yet").await;
    check_ready(env, &step, "clusters pushed", "503 INITIALIZING");
    env.set(LISTENER, |s| vec![listener(s, "l1", "L1")]);
    env.wait_ack(LISTENER, "1").await;
    env.wait_ack(ROUTE, "1").await;
    env.wait_ready().await;
    let step = env.step("initial push").await;
    check_ready(env, &step, "initial push", "200 LIVE");
    env.run_cases(&[served_by("initial push", "L1", "a")]).await;
}

/// True when `text` mentions `token`, ignoring case and underscores (so
/// a field path `connect_timeout` matches `ConnectTimeout` too).
pub fn mentions(text: &str, token: &str) -> bool {
    let squash = |s: &str| s.to_ascii_lowercase().replace('_', "");
    squash(text).contains(&squash(token))
}

/// True when a NACK message names the resource and the field.
pub fn names_resource_and_field(message: Option<&str>, resource: &str, field: &str) -> bool {
    message.is_some_and(|m| m.contains(resource) && mentions(m, field))
}

/// What a proxy should announce for `type_url` on its newest stream,
/// judging from the older streams: SotW, the last ACKed `version_info`;
/// delta, name -> version of every resource it ACKed and still holds.
fn expected_resubscription(side: &XdsSide, type_url: &str) -> (String, BTreeMap<String, String>) {
    let requests = side.xds.requests();
    let newest = requests.iter().map(|r| r.stream_id).max().unwrap_or(0);
    let old = |id: u64| id < newest;
    let version = requests
        .iter()
        .rfind(|r| old(r.stream_id) && r.type_url == type_url && r.is_ack())
        .map(|r| r.version_info.clone())
        .unwrap_or_default();
    let acked = |nonce: &str| {
        requests
            .iter()
            .any(|r| r.response_nonce == nonce && r.is_ack())
    };
    let mut held = BTreeMap::new();
    for resp in side.xds.responses() {
        if old(resp.stream_id) && resp.type_url == type_url && acked(&resp.nonce) {
            held.extend(resp.resources.iter().cloned());
            for name in &resp.removed {
                held.remove(name);
            }
        }
    }
    (version, held)
}

/// Checks (on both proxies) the first request of each type on the newest
/// stream: no nonce, a node, and the state the proxy holds — SotW
/// `version_info` = the last accepted version, delta
/// `initial_resource_versions` = the versions of the resources it has.
fn check_resubscription(env: &mut XdsEnv) {
    let mut failures = Vec::new();
    for side in env.sides() {
        let requests = side.xds.requests();
        let newest = requests.iter().map(|r| r.stream_id).max().unwrap_or(0);
        for type_url in [CLUSTER, ENDPOINT, LISTENER, ROUTE] {
            let (version, held) = expected_resubscription(side, type_url);
            let Some(first) = requests
                .iter()
                .find(|r| r.stream_id == newest && r.type_url == type_url)
            else {
                failures.push((
                    side.kind,
                    format!("no {} request after reconnecting", short(type_url)),
                ));
                continue;
            };
            let ok = match first.stream {
                StreamKind::Sotw => first.version_info == version,
                StreamKind::Delta => first.initial_resource_versions == held,
            } && first.response_nonce.is_empty()
                && first.node.is_some();
            if !ok {
                failures.push((
                    side.kind,
                    format!(
                        "first {} request after reconnecting should carry version_info {version:?} \
                         (SotW) / initial_resource_versions {held:?} (delta), a node and no nonce; got {}",
                        short(type_url),
                        first.normalised(1)
                    ),
                ));
            }
        }
    }
    for (kind, what) in failures {
        env.report.check(kind, "reconnected", false, &what);
    }
}

fn stat_is(state: &crate::Observation, name: &str, value: &str) -> bool {
    state.get(&format!("stat.{name}")).map(String::as_str) == Some(value)
}

/// Stops both control planes, checks the proxies keep serving the last
/// configuration, restarts the control planes on the same ports and waits
/// until each proxy has re-subscribed to every type on a new stream (and
/// ACKed what was answered: everything for SotW, listeners and clusters
/// for delta, where unchanged resources are not re-sent).
pub async fn restart_control_planes(env: &mut XdsEnv) {
    env.stop_control_planes();
    let what = "control_plane.connected_state 0";
    env.wait_state(what, |s| stat_is(s, "control_plane.connected_state", "0"))
        .await;
    env.step("control plane stopped").await;
    env.run_cases(&[served_by("control plane stopped", "L1", "a")])
        .await;
    env.restart_control_planes().await;
    let types = [CLUSTER, ENDPOINT, LISTENER, ROUTE];
    env.wait_both(
        "every type re-subscribed (and ACKed) on a new stream",
        |log| {
            types.iter().all(|t| {
                let new = |r: &&XdsRequest| r.stream_id > 1 && r.type_url == *t;
                let mut on_new = log.iter().filter(new);
                let Some(first) = on_new.next() else {
                    return false;
                };
                let answered = first.stream == StreamKind::Sotw || is_wildcard_type(t);
                !answered || on_new.any(|r| r.is_ack())
            })
        },
    )
    .await;
    env.wait_state("control_plane.connected_state 1", |s| {
        stat_is(s, "control_plane.connected_state", "1")
    })
    .await;
    check_resubscription(env);
    env.step("reconnected").await;
    env.run_cases(&[served_by("reconnected", "L1", "a")]).await;
}
