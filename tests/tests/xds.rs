//! xDS over ADS, state of the world (`api_type: GRPC`): each proxy gets its
//! own in-memory control plane (`ferry_tests::xds_server`), both are driven
//! through the same pushes, and after every step the requests each proxy
//! sent (per type URL, normalised: ACK/NACK, versions, subscribed names),
//! its dynamic config dump, xDS stats and traffic through the pushed
//! listeners are compared. See `xds_server::scenario` for the initial
//! configuration.

use ferry_tests::xds_server::resources::{
    cla, eds_cluster, invalid_cluster, route_config, static_cluster,
};
use ferry_tests::xds_server::scenario::{
    initial_push, listener, names_resource_and_field, refused, restart_control_planes, served_by,
    LISTENERS, ROUTES, UPSTREAMS,
};
use ferry_tests::xds_server::{XdsEnv, CLUSTER, ENDPOINT, LISTENER, ROUTE};
use ferry_tests::{Case, ProxyKind};

const TEMPLATE: &str = include_str!("../configs/xds_ads.yaml");

async fn start(title: &str) -> Option<XdsEnv> {
    XdsEnv::start(title, TEMPLATE, UPSTREAMS, LISTENERS).await
}

/// Initial push, then a route change, endpoint churn, a second listener
/// and the removal of the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xds_sotw_initial_push_and_updates() {
    let Some(mut env) = start("xds_sotw_initial_push_and_updates").await else {
        return;
    };
    initial_push(&mut env).await;

    let v = env.set(ROUTE, |_| {
        vec![route_config(ROUTES, &["*"], &[("/", "cluster_b")])]
    });
    env.wait_ack(ROUTE, &v).await;
    env.step("route to cluster_b").await;
    env.run_cases(&[served_by("route to cluster_b", "L1", "b")])
        .await;

    let ua = env.upstream_port("a");
    let v = env.set(ENDPOINT, |_| {
        vec![cla("cluster_a", &[ua]), cla("cluster_b", &[ua])]
    });
    env.wait_ack(ENDPOINT, &v).await;
    env.step("cluster_b's endpoint moved to upstream a").await;
    env.run_cases(&[served_by("endpoint churn", "L1", "a")])
        .await;

    let v = env.set(LISTENER, |s| {
        vec![listener(s, "l1", "L1"), listener(s, "l2", "L2")]
    });
    env.wait_ack(LISTENER, &v).await;
    env.step("second listener").await;
    env.run_cases(&[
        served_by("second listener", "L1", "a"),
        served_by("second listener", "L2", "a"),
    ])
    .await;

    let v = env.set(LISTENER, |s| vec![listener(s, "l2", "L2")]);
    env.wait_ack(LISTENER, &v).await;
    env.step("first listener removed").await;
    env.run_cases(&[
        refused("first listener removed", "L1"),
        served_by("first listener removed", "L2", "a"),
    ])
    .await;
    env.finish();
}

const KEEPS_GOOD: &str = "Ferry applies the valid clusters of a rejected CDS update; Envoy \
                          rejects the whole update when one cluster fails proto validation";

/// CDS updates with one invalid cluster among good ones: both NACK (the
/// NACK's version_info stays the last accepted version). A cluster that
/// passes validation but cannot be created (STATIC on a host name): Envoy
/// still applies the good clusters of the update. A cluster failing proto
/// validation (`connect_timeout: -1s`): Envoy rejects the whole update,
/// Ferry keeps the good clusters (declared difference).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xds_sotw_rejected_clusters() {
    let Some(mut env) = start("xds_sotw_rejected_clusters").await else {
        return;
    };
    initial_push(&mut env).await;
    let (ua, ub) = (env.upstream_port("a"), env.upstream_port("b"));
    let v = env.set(ENDPOINT, |_| {
        ["cluster_b", "cluster_c", "cluster_d"]
            .into_iter()
            .map(|c| cla(c, &[ub]))
            .chain([cla("cluster_a", &[ua])])
            .collect()
    });
    env.wait_ack(ENDPOINT, &v).await;
    let v = env.set(ROUTE, |_| {
        let routes = [("/c", "cluster_c"), ("/d", "cluster_d"), ("/", "cluster_a")];
        vec![route_config(ROUTES, &["*"], &routes)]
    });
    env.wait_ack(ROUTE, &v).await;
    env.step("routes to clusters c and d").await;
    env.run_cases(&[Case::get("cluster_d not there yet", "/d").expect_status(503)])
        .await;

    let v = env.set(CLUSTER, |_| {
        vec![
            eds_cluster("cluster_a"),
            eds_cluster("cluster_b"),
            eds_cluster("cluster_d"),
            static_cluster("bad_static", "not-an-ip", 80),
        ]
    });
    env.wait_nack(CLUSTER, &v).await;
    let step = env.step("CDS with a STATIC cluster on a host name").await;
    for (kind, state) in [ProxyKind::Envoy, ProxyKind::Ferry]
        .into_iter()
        .zip(&step.state)
    {
        let active = state.get("config_dump.dynamic_active_clusters");
        let ok = active.is_some_and(|a| a.contains("cluster_d version_info=\"2\""));
        let what = "applies the good cluster_d of the rejected update (version 2)";
        env.report.check(kind, "host name cluster", ok, what);
    }
    let msg = env.ferry.nack_message(CLUSTER, &v);
    env.check_ferry(
        &format!("NACK names bad_static and socket_address, got {msg:?}"),
        names_resource_and_field(msg.as_deref(), "bad_static", "socket_address"),
    );
    env.run_cases(&[Case::get("good cluster of a rejected update", "/d")
        .expect_status(200)
        .expect_upstream("b")])
        .await;

    let v = env.set(CLUSTER, |_| {
        vec![
            eds_cluster("cluster_a"),
            eds_cluster("cluster_b"),
            eds_cluster("cluster_c"),
            eds_cluster("cluster_d"),
            invalid_cluster("bad"),
        ]
    });
    env.wait_nack(CLUSTER, &v).await;
    // Keeping cluster_c also means its endpoints (a new EDS subscription,
    // whose answer every EDS cluster counts as an update) and a new CDS
    // version in the dump: all of that follows from the declared difference.
    let differs = [
        ("config_dump.ClustersConfigDump", KEEPS_GOOD),
        ("config_dump.dynamic_active_clusters", KEEPS_GOOD),
        ("config_dump.dynamic_endpoint_configs", KEEPS_GOOD),
        ("stat.cluster_manager.", KEEPS_GOOD),
        ("stat.cluster.", KEEPS_GOOD),
        ("xds.EDS", KEEPS_GOOD),
    ];
    let step = env
        .step_with("CDS with connect_timeout -1s", &differs)
        .await;
    let has_c = |i: usize| {
        step.state[i]
            .get("config_dump.dynamic_active_clusters")
            .is_some_and(|a| a.contains("cluster_c"))
    };
    let envoy_has_c = has_c(0);
    env.report.check(
        ProxyKind::Envoy,
        "connect_timeout -1s",
        !envoy_has_c,
        "rejects the whole update (no cluster_c)",
    );
    env.check_ferry("keeps cluster_c from the rejected update", has_c(1));
    let msg = env.ferry.nack_message(CLUSTER, &v);
    env.check_ferry(
        &format!("NACK names bad and connect_timeout, got {msg:?}"),
        names_resource_and_field(msg.as_deref(), "bad", "connect_timeout"),
    );
    let obs = env
        .run_cases(&[Case::get("cluster_c of the rejected update", "/c")
            .differs_field("", KEEPS_GOOD)
            .expect_status(503)])
        .await;
    let ferry_upstream = obs[0][1].get("upstream").cloned();
    env.check_ferry(
        &format!("GET /c served by b through the kept cluster_c, got {ferry_upstream:?}"),
        ferry_upstream.as_deref() == Some("b"),
    );
    env.finish();
}

/// The control plane goes away: the proxy keeps serving its last config;
/// it comes back on the same port: the proxy reconnects, re-subscribes
/// every type with the last accepted version_info, and applies a new push.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xds_sotw_control_plane_restart() {
    let Some(mut env) = start("xds_sotw_control_plane_restart").await else {
        return;
    };
    initial_push(&mut env).await;
    restart_control_planes(&mut env).await;
    let v = env.set(ROUTE, |_| {
        vec![route_config(ROUTES, &["*"], &[("/", "cluster_b")])]
    });
    env.wait_ack(ROUTE, &v).await;
    env.step("push after reconnect").await;
    env.run_cases(&[served_by("push after reconnect", "L1", "b")])
        .await;
    env.finish();
}
