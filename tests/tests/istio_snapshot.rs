//! What istiod really sends a sidecar, pushed to Ferry over ADS: the 27 listeners of an Istio
//! config dump (`../shared/fixtures/istio/snapshot/istio-authz-sidecar-listeners`), with
//! Istio's own extensions (`istio.stats`, the TCP metadata exchange, `istio.alpn`, the
//! null-VM Wasm `envoy.wasm.metadata_exchange`, authz RBAC) and everything around them. Every
//! listener Ferry can serve must be taken; the ones it cannot are named in the NACK, each for
//! its own reason, and never take the others down. Stock Envoy rejects most of these
//! listeners (it lacks Istio's extensions), so this test is Ferry's alone.

use ferry::config::load;
use ferry_tests::proxy::{self, Proxy, ProxyKind, TempDir};
use ferry_tests::tls::{spiffe, Ca};
use ferry_tests::xds_server::{
    ads_uds_bootstrap, pipe_cluster, resources, XdsServer, CLUSTER, LISTENER, ROUTE, SECRET,
};
use ferry_tests::{client, fixtures, ports};
use prost::Message;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Listeners Ferry refuses, and the reason its NACK must give for each.
const REFUSED: &[(&str, &str)] = &[
    // Ambient's HBONE tunnels: internal listeners and Istio's CONNECT extensions.
    (
        "connect_originate",
        "istio.set_internal_dst_address.v1.Config",
    ),
    ("main_internal", "istio.set_internal_dst_address.v1.Config"),
    (
        "connect_terminate",
        "io.istio.http.connect_authority.Config",
    ),
];

/// The snapshot's listeners as an ADS response carries them; listeners that bind get a free
/// port instead of Istio's (15001, 15006, 15008).
fn listeners(path: &std::path::Path) -> Vec<(String, envoy_types::pb::google::protobuf::Any)> {
    let text = std::fs::read_to_string(path).expect("read the snapshot");
    let snap: serde_json::Value = serde_json::from_str(&text).expect("snapshot JSON");
    let desc = load::descriptor("envoy.config.listener.v3.Listener");
    let mut out = Vec::new();
    for l in snap["listeners"].as_array().expect("listeners") {
        let mut l = l.clone();
        let obj = l.as_object_mut().expect("a listener object");
        obj.remove("@type");
        let binds = obj.get("bind_to_port").and_then(|b| b.as_bool()) != Some(false);
        if binds {
            if let Some(sa) = obj
                .get_mut("address")
                .and_then(|a| a.get_mut("socket_address"))
                .and_then(|s| s.as_object_mut())
            {
                sa.insert("address".into(), "127.0.0.1".into());
                sa.insert("port_value".into(), ports::free_port().into());
            }
        }
        let name = obj["name"].as_str().unwrap_or_default().to_string();
        // Fields newer than this Envoy API version are dropped, as a binary decoder would.
        let msg =
            load::from_value(l, &desc, true).unwrap_or_else(|e| panic!("listener {name}: {e}"));
        out.push((
            name,
            envoy_types::pb::google::protobuf::Any {
                type_url: LISTENER.to_string(),
                value: msg.encode_to_vec(),
            },
        ));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istiod_sidecar_listeners_over_ads() {
    let Some(path) = fixtures::istio("snapshot/istio-authz-sidecar-listeners.snapshot.json") else {
        return;
    };
    let resources = listeners(&path);
    let snap: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
    // The dump has no route configurations; the listeners' RDS names get empty ones, so that
    // the listeners warm.
    let routes: Vec<_> = snap["meta"]["rds_route_names_referenced_but_missing"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|n| n.as_str())
        .map(|n| {
            let rc = envoy_types::pb::envoy::config::route::v3::RouteConfiguration {
                name: n.to_string(),
                ..Default::default()
            };
            ferry_tests::xds_server::resources::raw(n, &rc)
        })
        .collect();
    assert_eq!(resources.len(), 27, "the snapshot's listeners");
    let dir = TempDir::new("istio-snapshot");
    let socket = dir.path().join("XDS");
    let xds = XdsServer::start_unix(&socket).await;
    let names: Vec<String> = resources.iter().map(|(n, _)| n.clone()).collect();
    // No clusters: the listeners' own references stay unresolved, as in the dump.
    xds.set(CLUSTER, Vec::new());
    xds.set(ROUTE, routes);
    let version = xds.set(LISTENER, resources);
    let admin = ports::free_port();
    // The agent's SDS (the same socket here): the workload certificate and root the inbound
    // and HBONE listeners name.
    let root = Ca::root("cluster.local");
    let me = root.issue(&spiffe("default", "bookinfo-productpage"), &[]);
    xds.set(
        SECRET,
        vec![
            resources::secret_cert("default", &me.chain, &me.key),
            resources::secret_ca("ROOTCA", &root.root_pem),
        ],
    );
    let boot = ads_uds_bootstrap(
        &socket,
        "sidecar~10.244.0.12~productpage-v1-6b8d.default~default.svc.cluster.local",
        "productpage.default",
        admin,
    ) + &pipe_cluster("sds-grpc", &socket);
    let ports = BTreeMap::from([("ADMIN".to_string(), admin)]);
    let ferry = Proxy::spawn(ProxyKind::Ferry, &proxy::ferry_bin(), &boot, ports, &[]);
    // One response, answered once: ACK or NACK.
    if let Err(e) = xds
        .wait_for("the listeners answered", Duration::from_secs(15), |reqs| {
            reqs.iter()
                .any(|r| r.type_url == LISTENER && r.acked_version.as_deref() == Some(&version))
        })
        .await
    {
        panic!("{e}\n{}\nstderr:\n{}", xds.dump(), ferry.stderr());
    }
    let nack = xds
        .requests()
        .into_iter()
        .filter(|r| r.type_url == LISTENER && r.acked_version.as_deref() == Some(&version))
        .find_map(|r| r.error)
        .unwrap_or_default();
    // The listeners in force, from the admin API.
    let mut active = BTreeSet::new();
    for _ in 0..50 {
        let body = client::admin_get(admin, "/listeners?format=json")
            .await
            .map(|r| r.text())
            .unwrap_or_default();
        active = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["listener_statuses"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|l| l["name"].as_str().map(str::to_string))
            .collect();
        if active.len() + REFUSED.len() >= names.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let refused: BTreeSet<&str> = REFUSED.iter().map(|(n, _)| *n).collect();
    let mut failures = Vec::new();
    for name in &names {
        let taken = active.contains(name);
        match (refused.contains(name.as_str()), taken) {
            (false, false) => failures.push(format!("{name} is not in force")),
            (true, true) => failures.push(format!("{name} is in force but should be refused")),
            _ => {}
        }
    }
    for (name, why) in REFUSED {
        if !nack.contains(&format!("'{name}'")) || !nack.contains(why) {
            failures.push(format!("the NACK does not name {name} for {why}"));
        }
    }
    eprintln!(
        "{} of {} listeners in force; NACK: {nack}",
        active.len(),
        names.len()
    );
    assert!(
        failures.is_empty(),
        "{}\nNACK: {nack}\nin force: {active:?}\nxDS: {}\nstderr:\n{}",
        failures.join("\n"),
        xds.dump(),
        ferry.stderr()
    );
}
