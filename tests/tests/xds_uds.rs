//! The control plane over a Unix domain socket: the ADS cluster's endpoint is a `pipe`, as in
//! Istio's sidecar bootstrap (`./etc/istio/proxy/XDS`). Envoy and Ferry each take a cluster
//! and a listener from their own control plane on a socket and then serve the same request.

use ferry_tests::client::{self, HttpRequest};
use ferry_tests::proxy;
use ferry_tests::xds_server::{resources, UdsProxy};
use ferry_tests::{echo, ProxyKind};

/// Starts `kind` against a control plane on a Unix socket; returns the status and upstream of
/// one request through the pushed listener.
async fn through_uds(kind: ProxyKind, bin: &std::path::Path) -> (u16, String) {
    let upstream = echo::start_http("a").await;
    let cluster = resources::static_cluster("backend", "127.0.0.1", upstream.port());
    let up = UdsProxy::start(kind, bin, "uds", cluster, None).await;
    let listen = up.listen;
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
