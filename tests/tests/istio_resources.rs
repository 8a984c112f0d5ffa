//! istiod's clusters, routes and endpoints as a sidecar receives them, over ADS, with traffic:
//! the outbound cluster of an Istio config dump (`istio-describe-http`: EDS, LEAST_REQUEST,
//! the TCP metadata exchange, `transport_socket_matches` with SDS `default`/`ROOTCA` mTLS for
//! `tlsMode: istio` endpoints), given to every outbound service of `istio-endpoint`'s 32 load
//! assignments; its route configuration `http.8080` (retries with Istio's `previous_hosts`
//! predicate); those load assignments. All must be taken, every host must show up, and
//! `/productpage` must reach its workload over mTLS with the certificates SDS delivers.

use ferry::config::load;
use ferry_tests::proxy::{self, Proxy, ProxyKind, TempDir};
use ferry_tests::tls::{self, spiffe, Ca};
use ferry_tests::xds_server::{
    pipe_cluster, resources, XdsServer, CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET,
};
use ferry_tests::{client, echo, fixtures, ports};
use prost::Message;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

const PRODUCTPAGE: &str = "outbound|9080||productpage.default.svc.cluster.local";

fn read(path: &std::path::Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("read snapshot")).expect("JSON")
}

/// A snapshot resource as an ADS response carries it.
fn pack(v: &Value, type_name: &str) -> envoy_types::pb::google::protobuf::Any {
    let mut v = v.clone();
    v.as_object_mut().expect("an object").remove("@type");
    let desc = load::descriptor(type_name);
    let msg = load::from_value(v, &desc, true).unwrap_or_else(|e| panic!("{type_name}: {e}"));
    envoy_types::pb::google::protobuf::Any {
        type_url: format!("type.googleapis.com/{type_name}"),
        value: msg.encode_to_vec(),
    }
}

/// Istio's bootstrap essentials: ADS and SDS from the agent's Unix sockets (here one server).
fn bootstrap(socket: &std::path::Path, admin: u16) -> String {
    format!(
        r#"
node: {{ id: "sidecar~10.244.0.12~productpage-v1-6b8d.default~default.svc.cluster.local", cluster: productpage.default }}
admin: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {admin} }} }} }}
dynamic_resources:
  ads_config:
    api_type: GRPC
    transport_api_version: V3
    set_node_on_first_message_only: true
    grpc_services: [{{ envoy_grpc: {{ cluster_name: xds-grpc }} }}]
  lds_config: {{ ads: {{}}, initial_fetch_timeout: 0s, resource_api_version: V3 }}
  cds_config: {{ ads: {{}}, initial_fetch_timeout: 0s, resource_api_version: V3 }}
static_resources:
  clusters:{}{}
"#,
        pipe_cluster("xds-grpc", socket),
        pipe_cluster("sds-grpc", socket)
    )
}

/// The productpage workload: an mTLS listener (client certificates of the mesh required) in
/// front of an echo upstream.
const WORKLOAD: &str = r#"
admin: { address: { socket_address: { address: 127.0.0.1, port_value: {{ADMIN}} } } }
static_resources:
  listeners:
  - name: inbound
    address: { socket_address: { address: 127.0.0.1, port_value: {{L1}} } }
    filter_chains:
    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          require_client_certificate: true
          common_tls_context:
            alpn_protocols: ["istio-peer-exchange", "istio", "h2", "http/1.1"]
            tls_certificates:
            - certificate_chain: { filename: "{{SERVER_CERT}}" }
              private_key: { filename: "{{SERVER_KEY}}" }
            validation_context:
              trusted_ca: { filename: "{{MESH_CA}}" }
      filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: inbound
          forward_client_cert_details: SANITIZE_SET
          set_current_client_cert_details: { uri: true }
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes: [{ match: { prefix: "/" }, route: { cluster: app } }]
          http_filters:
          - name: envoy.filters.http.router
            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }
  clusters:
  - name: app
    connect_timeout: 1s
    load_assignment: { cluster_name: app, endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: {{UP}} } } } }] }] }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istiod_clusters_routes_and_endpoints_over_ads() {
    let (Some(http), Some(eps)) = (
        fixtures::istio("snapshot/istio-describe-http.snapshot.json"),
        fixtures::istio("snapshot/istio-endpoint.snapshot.json"),
    ) else {
        return;
    };
    let (http, eps) = (read(&http), read(&eps));
    let app = echo::start_http("productpage").await;
    let dir = TempDir::new("istio-resources");
    let root = Ca::root("cluster.local");
    let server = root.issue(&spiffe("default", "bookinfo-productpage"), &[]);
    let me = root.issue(&spiffe("default", "sleep"), &[]);
    let mut vars = tls::write_files(
        dir.path(),
        &[("server", &server)],
        &[("mesh", &root.root_pem)],
    );
    let l1 = ports::free_port();
    vars.insert("L1".into(), l1.to_string());
    vars.insert("UP".into(), app.port().to_string());
    let workload = proxy::start(ProxyKind::Ferry, &proxy::ferry_bin(), WORKLOAD, &vars, &[]).await;

    // Every outbound service of the endpoint dump gets istiod's cluster shape.
    let template = &http["clusters"][0];
    let mut clusters = Vec::new();
    let mut hosts_wanted = BTreeMap::new();
    let mut assignments = Vec::new();
    for cla in eps["endpoints"].as_array().expect("endpoints") {
        let name = cla["cluster_name"]
            .as_str()
            .expect("cluster_name")
            .to_string();
        if !name.starts_with("outbound|") {
            continue; // the dump's static clusters (passthrough, blackhole, inbound)
        }
        let mut c = template.clone();
        c["name"] = json!(name);
        c["eds_cluster_config"]["service_name"] = json!(name);
        clusters.push((name.clone(), pack(&c, "envoy.config.cluster.v3.Cluster")));
        let mut cla = cla.clone();
        if name == PRODUCTPAGE {
            // The one workload that runs: an mTLS endpoint, labelled as Istio labels it.
            let lbe = &mut cla["endpoints"][0]["lb_endpoints"][0];
            lbe["endpoint"]["address"]["socket_address"] =
                json!({"address": "127.0.0.1", "port_value": l1});
            lbe["metadata"]["filter_metadata"]["envoy.transport_socket_match"] =
                json!({"tlsMode": "istio"});
        }
        let n: usize = cla["endpoints"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|l| l["lb_endpoints"].as_array().map_or(0, Vec::len))
            .sum();
        hosts_wanted.insert(name.clone(), n);
        assignments.push((
            name,
            pack(&cla, "envoy.config.endpoint.v3.ClusterLoadAssignment"),
        ));
    }
    assert!(clusters.len() >= 25, "the dump's outbound services");
    let route = &http["routes"][0];
    let route_name = route["name"].as_str().expect("route name").to_string();

    let socket = dir.path().join("agent.sock");
    let xds = XdsServer::start_unix(&socket).await;
    xds.set(
        SECRET,
        vec![
            resources::secret_cert("default", &me.chain, &me.key),
            resources::secret_ca("ROOTCA", &root.root_pem),
        ],
    );
    let cds = xds.set(CLUSTER, clusters.clone());
    let eds = xds.set(ENDPOINT, assignments);
    let rds = xds.set(
        ROUTE,
        vec![(
            route_name.clone(),
            pack(route, "envoy.config.route.v3.RouteConfiguration"),
        )],
    );
    let port = ports::free_port();
    let lds = xds.set(
        LISTENER,
        vec![resources::listener_http(
            "0.0.0.0_8080",
            port,
            resources::Routes::Rds(route_name),
            "outbound_0.0.0.0_8080",
        )],
    );
    let admin = ports::free_port();
    let ferry = Proxy::spawn(
        ProxyKind::Ferry,
        &proxy::ferry_bin(),
        &bootstrap(&socket, admin),
        BTreeMap::from([("ADMIN".to_string(), admin)]),
        &[],
    );
    let wait = Duration::from_secs(20);
    for (type_url, version) in [
        (CLUSTER, &cds),
        (ENDPOINT, &eds),
        (ROUTE, &rds),
        (LISTENER, &lds),
    ] {
        if let Err(e) = xds.wait_ack(type_url, version, wait).await {
            panic!("{e}\n{}\nstderr:\n{}", xds.dump(), ferry.stderr());
        }
    }
    let nacks: Vec<String> = xds.requests().into_iter().filter_map(|r| r.error).collect();
    assert!(nacks.is_empty(), "NACKs: {nacks:#?}");

    // Traffic: istiod's route, its retry policy, auto mTLS with SDS certificates.
    let mut answers = Vec::new();
    for _ in 0..50 {
        let r = client::send(port, &client::HttpRequest::get("/productpage")).await;
        if r.as_ref().is_ok_and(|r| r.status == 200) || answers.len() > 40 {
            answers.push(r);
            break;
        }
        answers.push(r);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let last = answers.pop().expect("a request was sent");
    let resp = last.unwrap_or_else(|e| panic!("/productpage: {e}\nstderr:\n{}", ferry.stderr()));
    assert_eq!(
        resp.status,
        200,
        "{}\nstderr:\n{}",
        resp.text(),
        ferry.stderr()
    );
    assert_eq!(resp.header("x-upstream"), Some("productpage"));
    let seen: Value = serde_json::from_slice(&resp.body).expect("echo JSON");
    let xfcc = seen["headers"]["x-forwarded-client-cert"].to_string();
    assert!(
        xfcc.contains(&spiffe("default", "sleep")),
        "the workload saw the SDS identity: {xfcc}"
    );
    let stat = |n: String| async move { ferry_tests::conn::stat(admin, &n).await };
    assert_eq!(
        stat(format!(
            "cluster.{PRODUCTPAGE}.tlsMode-istio.total_match_count"
        ))
        .await,
        "1"
    );
    assert_eq!(
        stat(format!("cluster.{PRODUCTPAGE}.ssl.handshake")).await,
        "1"
    );

    // Every host of every assignment is in its cluster.
    let body = client::admin_get(admin, "/clusters?format=json")
        .await
        .map(|r| r.text())
        .unwrap_or_default();
    let v: Value = serde_json::from_str(&body).expect("/clusters JSON");
    let have: BTreeMap<String, usize> = v["cluster_statuses"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| {
            let name = c["name"].as_str()?.to_string();
            let n = c["host_statuses"].as_array().map_or(0, Vec::len);
            Some((name, n))
        })
        .filter(|(n, _)| hosts_wanted.contains_key(n))
        .collect();
    assert_eq!(have, hosts_wanted, "hosts per cluster");
    drop(workload);
}
