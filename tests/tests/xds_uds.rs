//! The control plane over a Unix domain socket: the ADS cluster's endpoint is a `pipe`, as in
//! Istio's sidecar bootstrap (`./etc/istio/proxy/XDS`). Envoy and Ferry each take a cluster
//! and a listener from their own control plane on a socket and then serve the same request.

use std::collections::BTreeMap;
use std::time::Duration;

use ferry_tests::client::{self, HttpRequest};
use ferry_tests::proxy::{self, Proxy, TempDir};
use ferry_tests::xds_server::resources;
use ferry_tests::xds_server::{XdsServer, CLUSTER, LISTENER};
use ferry_tests::{echo, ports, ProxyKind};

fn bootstrap(socket: &std::path::Path, admin: u16) -> String {
    ferry_tests::xds_server::ads_uds_bootstrap(socket, "uds-test", "ferry-tests", admin)
}

/// Starts `kind` against a control plane on a Unix socket; returns the status and upstream of
/// one request through the pushed listener.
async fn through_uds(kind: ProxyKind, bin: &std::path::Path) -> (u16, String) {
    let dir = TempDir::new("uds");
    let socket = dir.path().join("XDS");
    let xds = XdsServer::start_unix(&socket).await;
    let upstream = echo::start_http("a").await;
    let listen = ports::free_port();
    xds.set(
        CLUSTER,
        vec![resources::static_cluster(
            "backend",
            "127.0.0.1",
            upstream.port(),
        )],
    );
    xds.set(
        LISTENER,
        vec![resources::listener_to("uds", listen, "backend")],
    );
    let admin = ports::free_port();
    let mut p = Proxy::spawn(
        kind,
        bin,
        &bootstrap(&socket, admin),
        BTreeMap::from([("ADMIN".to_string(), admin)]),
        &[],
    );
    let wait = Duration::from_secs(10);
    if let Err(e) = xds.wait_ack(LISTENER, "1", wait).await {
        panic!("{kind}: {e}\n{}\nstderr:\n{}", xds.dump(), p.stderr());
    }
    p.wait_ready().await;
    let resp = client::send(listen, &HttpRequest::get("/uds"))
        .await
        .unwrap_or_else(|e| panic!("{kind}: request through the pushed listener failed: {e}"));
    let served_by = resp.header("x-upstream").unwrap_or_default().to_string();
    (resp.status, served_by)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_plane_over_unix_socket() {
    let ferry = through_uds(ProxyKind::Ferry, &proxy::ferry_bin()).await;
    assert_eq!(
        ferry,
        (200, "a".to_string()),
        "Ferry through a pipe-configured xDS cluster"
    );
    let Some(envoy_bin) = proxy::envoy_or_skip() else {
        return;
    };
    let envoy = through_uds(ProxyKind::Envoy, &envoy_bin).await;
    assert_eq!(
        envoy, ferry,
        "Envoy and Ferry differ over a Unix-socket control plane"
    );
}
