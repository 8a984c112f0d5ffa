//! xDS over ADS, incremental (`api_type: DELTA_GRPC`): the same initial
//! configuration as `xds.rs` through `DeltaAggregatedResources`, removals
//! through `removed_resources`, and a control-plane restart (the proxy
//! re-subscribes with `initial_resource_versions`).

use ferry_tests::xds_server::resources::{cla, eds_cluster};
use ferry_tests::xds_server::scenario::{
    initial_push, listener, refused, restart_control_planes, served_by, LISTENERS, UPSTREAMS,
};
use ferry_tests::xds_server::{XdsEnv, CLUSTER, ENDPOINT, LISTENER};

const TEMPLATE: &str = include_str!("../configs/xds_delta.yaml");

async fn start(title: &str) -> Option<XdsEnv> {
    XdsEnv::start(title, TEMPLATE, UPSTREAMS, LISTENERS).await
}

/// Initial push over delta, a second listener, then removals: listener l1
/// and cluster_b leave the snapshots and are sent as `removed_resources`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xds_delta_initial_push_and_removal() {
    let Some(mut env) = start("xds_delta_initial_push_and_removal").await else {
        return;
    };
    initial_push(&mut env).await;

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
    env.step("listener l1 removed").await;
    env.run_cases(&[
        refused("listener l1 removed", "L1"),
        served_by("listener l1 removed", "L2", "a"),
    ])
    .await;

    let v = env.set(CLUSTER, |_| vec![eds_cluster("cluster_a")]);
    env.wait_ack(CLUSTER, &v).await;
    env.step("cluster_b removed").await;
    env.run_cases(&[served_by("cluster_b removed", "L2", "a")])
        .await;
    env.finish();
}

/// The control plane restarts; the proxy reconnects over delta and a new
/// push (endpoint change) is applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xds_delta_control_plane_restart() {
    let Some(mut env) = start("xds_delta_control_plane_restart").await else {
        return;
    };
    initial_push(&mut env).await;
    restart_control_planes(&mut env).await;
    let (ua, ub) = (env.upstream_port("a"), env.upstream_port("b"));
    let v = env.set(ENDPOINT, |_| {
        vec![cla("cluster_a", &[ub]), cla("cluster_b", &[ua])]
    });
    env.wait_ack(ENDPOINT, &v).await;
    env.step("push after reconnect").await;
    env.run_cases(&[served_by("push after reconnect", "L1", "b")])
        .await;
    env.finish();
}
