//! gRPC stats against Envoy: calls counted per upstream cluster (as Istio configures the
//! filter) and per service and method, by their final `grpc-status` (none reads as 2), with
//! their request and response message counts; a local reply is counted with its status.

use ferry_tests::client::{self, HttpRequest};
use ferry_tests::proxy::Target;
use ferry_tests::Setup;
use std::collections::BTreeMap;

/// One message: a 5-byte frame header and the payload.
fn message(payload: &[u8]) -> Vec<u8> {
    let mut m = vec![0u8];
    m.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    m.extend_from_slice(payload);
    m
}

fn call(path: &str, status: Option<&str>) -> HttpRequest {
    let mut r = HttpRequest::get(path);
    r.method = "POST".into();
    r.h2 = true;
    r.headers
        .push(("content-type".into(), "application/grpc".into()));
    if let Some(s) = status {
        r.headers
            .push(("x-echo-response".into(), format!("grpc-status={s}")));
    }
    r.body = [message(b"one"), message(b"two")].concat();
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_stats() {
    let Some(env) = Setup::new("grpc_stats", include_str!("../configs/grpc_stats.yaml"))
        .echo("UP_A", "a")
        .refusing("DEAD")
        .start()
        .await
    else {
        return;
    };
    let mut report = env.report();
    env.compare_with(
        &mut report,
        "gRPC calls and their stats",
        |t: Target| async move {
            let mut obs = BTreeMap::new();
            let calls = [
                ("L1", call("/pkg.Svc/Get", None)),
                ("L1", call("/pkg.Svc/Get", Some("0"))),
                ("L1", call("/pkg.Svc/Put", Some("14"))),
                ("L1", call("/dead.Svc/Get", None)),
                ("L2", call("/pkg.v1.Svc/Get", Some("0"))),
                ("L2", call("/pkg.v1.Svc/Get", Some("5"))),
                ("L2", call("/not-a-method", None)),
            ];
            for (i, (l, req)) in calls.iter().enumerate() {
                let status = client::send(t.port(l), req)
                    .await
                    .map(|r| r.status.to_string())
                    .unwrap_or_else(|e| e);
                obs.insert(format!("call {i} status"), status);
            }
            let stats = client::admin_get(t.port("ADMIN"), "/stats?usedonly")
                .await
                .map(|r| r.text())
                .unwrap_or_default();
            // Whether a refused call's request messages were read before its local reply is
            // timing (on Envoy too): that one counter is left out.
            for line in stats.lines().filter(|l| {
                l.contains(".grpc.") && !l.starts_with("cluster.dead.grpc.request_message_count")
            }) {
                if let Some((k, v)) = line.split_once(": ") {
                    obs.insert(k.to_string(), v.to_string());
                }
            }
            obs
        },
    )
    .await;
    // What both were compared on, checked on Ferry: two calls with a status on `up`, both
    // messages of every call, the per-method names on `up2`.
    let ferry = env.both()[1].target();
    let stats = client::admin_get(ferry.port("ADMIN"), "/stats")
        .await
        .map(|r| r.text())
        .unwrap_or_default();
    for want in [
        "cluster.up.grpc.total: 2",
        "cluster.up.grpc.success: 1",
        "cluster.up.grpc.14: 1",
        "cluster.up.grpc.request_message_count: 6",
        "cluster.up2.grpc.pkg_v1_Svc.Get.total: 2",
        "cluster.up2.grpc.pkg_v1_Svc.Get.5: 1",
    ] {
        assert!(stats.lines().any(|l| l == want), "{want} not in:\n{stats}");
    }
    report.finish();
}
