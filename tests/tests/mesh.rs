//! The mesh end to end: two pods in network namespaces, each with `ferry-iptables` and a
//! sidecar fed only by xDS (its own control plane on a Unix socket, as Istio's agent serves
//! it), the application of pod A calling the application of pod B over mTLS with SPIFFE
//! identities. Every pairing of Envoy and Ferry sidecars must behave the same: Ferry–Ferry,
//! Envoy–Envoy, and each mixed pair (interoperation in one mesh).
//!
//! Needs root (network namespaces, iptables); CI runs as root.

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use ferry_tests::client::{self, HttpRequest};
use ferry_tests::netns::{root_or_skip, PodPair};
use ferry_tests::proxy::{envoy_or_skip, ferry_bin, TempDir};
use ferry_tests::sidecar::{ferry_iptables_bin, Sidecar};
use ferry_tests::tls::{spiffe, Ca};
use ferry_tests::xds_server::resources::{self, from_yaml};
use ferry_tests::xds_server::{XdsServer, CLUSTER, ENDPOINT, LISTENER, SECRET};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

const WAIT: Duration = Duration::from_secs(10);

fn bootstrap(socket: &Path, id: &str) -> String {
    ferry_tests::xds_server::ads_uds_bootstrap(
        socket,
        &format!("sidecar~{id}~{id}.default~default.svc.cluster.local"),
        &format!("{id}.default"),
        15000,
    )
}

const SDS: &str = "{ ads: {}, resource_api_version: V3 }";
const SERVICE_B: &str = "outbound|8080||b.default.svc.cluster.local";

/// Pod A's configuration: outbound capture, the HTTP port 8080 of service b, whose cluster
/// originates mTLS expecting b's identity.
fn pod_a(xds: &XdsServer) {
    xds.set(
        CLUSTER,
        vec![
            (
                SERVICE_B.to_string(),
                from_yaml::<Cluster>(&format!(
                    r#"
name: "{SERVICE_B}"
type: EDS
eds_cluster_config: {{ eds_config: {SDS} }}
connect_timeout: 2s
transport_socket:
  name: envoy.transport_sockets.tls
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
    sni: outbound_.8080_._.b.default.svc.cluster.local
    common_tls_context:
      alpn_protocols: [istio-http/1.1, istio]
      tls_certificate_sds_secret_configs: [{{ name: default, sds_config: {SDS} }}]
      combined_validation_context:
        default_validation_context:
          match_typed_subject_alt_names:
          - san_type: URI
            matcher: {{ exact: "{}" }}
        validation_context_sds_secret_config: {{ name: ROOTCA, sds_config: {SDS} }}
"#,
                    spiffe("default", "b")
                )),
            ),
            (
                "PassthroughCluster".to_string(),
                from_yaml::<Cluster>(
                    "{ name: PassthroughCluster, type: ORIGINAL_DST, lb_policy: CLUSTER_PROVIDED, connect_timeout: 2s }",
                ),
            ),
        ],
    );
    let cla = format!(
        r#"{{ cluster_name: "{SERVICE_B}", endpoints: [{{ lb_endpoints: [{{ endpoint: {{ address: {{ socket_address: {{ address: {}, port_value: 8080 }} }} }} }}] }}] }}"#,
        PodPair::PEER4
    );
    xds.set(
        ENDPOINT,
        vec![(
            SERVICE_B.to_string(),
            from_yaml::<ClusterLoadAssignment>(&cla),
        )],
    );
    xds.set(
        LISTENER,
        vec![
            (
                "virtualOutbound".to_string(),
                from_yaml::<Listener>(
                    r#"
name: virtualOutbound
address: { socket_address: { address: 0.0.0.0, port_value: 15001 } }
use_original_dst: true
traffic_direction: OUTBOUND
filter_chains:
- name: virtualOutbound-catchall-tcp
  filters:
  - name: envoy.filters.network.tcp_proxy
    # A TypedStruct over xDS, as Istio sends some of its filters.
    typed_config:
      "@type": type.googleapis.com/xds.type.v3.TypedStruct
      type_url: type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
      value: { stat_prefix: PassthroughCluster, cluster: PassthroughCluster }
"#,
                ),
            ),
            (
                "0.0.0.0_8080".to_string(),
                from_yaml::<Listener>(&format!(
                    r#"
name: "0.0.0.0_8080"
address: {{ socket_address: {{ address: 0.0.0.0, port_value: 8080 }} }}
bind_to_port: false
traffic_direction: OUTBOUND
filter_chains:
- filters:
  - name: envoy.filters.network.http_connection_manager
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
      stat_prefix: outbound_0.0.0.0_8080
      route_config:
        name: "8080"
        virtual_hosts:
        - name: b
          domains: ["*"]
          routes: [{{ match: {{ prefix: "/" }}, route: {{ cluster: "{SERVICE_B}" }} }}]
      http_filters:
      - name: envoy.filters.http.router
        typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }}
"#
                )),
            ),
        ],
    );
}

/// Pod B's configuration: inbound capture on 15006, mTLS required from a workload of the
/// default namespace, then to the application from 127.0.0.6.
fn pod_b(xds: &XdsServer) {
    xds.set(
        CLUSTER,
        vec![(
            "inbound|8080||".to_string(),
            from_yaml::<Cluster>(
                r#"
name: "inbound|8080||"
type: ORIGINAL_DST
lb_policy: CLUSTER_PROVIDED
connect_timeout: 2s
upstream_bind_config: { source_address: { address: 127.0.0.6, port_value: 0 } }
"#,
            ),
        )],
    );
    xds.set(
        LISTENER,
        vec![(
            "virtualInbound".to_string(),
            from_yaml::<Listener>(&format!(
                r#"
name: virtualInbound
address: {{ socket_address: {{ address: 0.0.0.0, port_value: 15006 }} }}
traffic_direction: INBOUND
listener_filters:
- name: envoy.filters.listener.original_dst
  typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst }}
- name: envoy.filters.listener.tls_inspector
  typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector }}
listener_filters_timeout: 0s
continue_on_listener_filters_timeout: true
filter_chains:
- name: "0.0.0.0_8080"
  filter_chain_match:
    destination_port: 8080
    transport_protocol: tls
    application_protocols: [istio-http/1.1, istio]
  transport_socket:
    name: envoy.transport_sockets.tls
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
      require_client_certificate: true
      common_tls_context:
        alpn_protocols: [h2, http/1.1]
        tls_certificate_sds_secret_configs: [{{ name: default, sds_config: {SDS} }}]
        combined_validation_context:
          default_validation_context:
            match_typed_subject_alt_names:
            - san_type: URI
              matcher: {{ prefix: "spiffe://cluster.local/ns/default/" }}
          validation_context_sds_secret_config: {{ name: ROOTCA, sds_config: {SDS} }}
  filters:
  - name: envoy.filters.network.http_connection_manager
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
      stat_prefix: inbound_0.0.0.0_8080
      route_config:
        name: inbound|8080||
        virtual_hosts:
        - name: inbound|http|8080
          domains: ["*"]
          routes: [{{ match: {{ prefix: "/" }}, route: {{ cluster: "inbound|8080||" }} }}]
      http_filters:
      - name: envoy.filters.http.router
        typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }}
"#
            )),
        )],
    );
}

/// B's application: answers with the address it saw the request come from.
async fn app_b(addr: SocketAddr) {
    let l = TcpListener::bind(addr).await.expect("bind app b");
    loop {
        let Ok((s, peer)) = l.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let mut r = BufReader::new(s);
            loop {
                let mut line = String::new();
                let mut head = String::new();
                loop {
                    line.clear();
                    match r.read_line(&mut line).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) if line == "\r\n" => break,
                        Ok(_) => head.push_str(&line),
                    }
                }
                let xfp = head
                    .lines()
                    .find_map(|l| l.strip_prefix("x-forwarded-proto: "))
                    .unwrap_or("-")
                    .to_string();
                let body = format!("app b saw peer={} x-forwarded-proto={xfp}\n", peer.ip());
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                if r.get_mut().write_all(resp.as_bytes()).await.is_err() {
                    return;
                }
            }
        });
    }
}

async fn stat(name: &str) -> String {
    ferry_tests::conn::stat(15000, name).await
}

/// A's application calls b; returns what was observed.
fn call(a_bin: &Path, b_bin: &Path) -> Vec<String> {
    let pair = PodPair::create("mesh");
    let (pod_ns_a, pod_ns_b) = (&pair.pod, &pair.peer);
    let dir = TempDir::new("mesh");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (sock_a, sock_b) = (dir.path().join("a.sock"), dir.path().join("b.sock"));
    let (xds_a, xds_b) = rt.block_on(async {
        (
            XdsServer::start_unix(&sock_a).await,
            XdsServer::start_unix(&sock_b).await,
        )
    });
    // The control planes' sockets must be reachable by UID 1337.
    for p in [&sock_a, &sock_b] {
        let _ = std::process::Command::new("chmod")
            .arg("777")
            .arg(p)
            .status();
    }
    let root = Ca::root("cluster.local root");
    let (id_a, id_b) = (
        root.issue(&spiffe("default", "a"), &[]),
        root.issue(&spiffe("default", "b"), &[]),
    );
    for (xds, id) in [(&xds_a, &id_a), (&xds_b, &id_b)] {
        xds.set(
            SECRET,
            vec![
                resources::secret_cert("default", &id.chain, &id.key),
                resources::secret_ca("ROOTCA", &root.root_pem),
            ],
        );
    }
    pod_a(&xds_a);
    pod_b(&xds_b);
    pod_ns_b.serve(|| app_b(SocketAddr::new(PodPair::PEER4, 8080)));
    let ipt = ferry_iptables_bin();
    let ipt = ipt.to_str().expect("utf-8");
    for ns in [pod_ns_a, pod_ns_b] {
        ns.exec_ok(&[
            ipt,
            "-p",
            "15001",
            "-z",
            "15006",
            "-u",
            "1337",
            "-g",
            "1337",
            "-m",
            "REDIRECT",
            "-i",
            "*",
            "-b",
            "*",
            "-d",
            "15090,15021,15020",
            "--ipv6",
            "false",
        ]);
    }
    let a = Sidecar::start(pod_ns_a, a_bin, &bootstrap(&sock_a, "a"));
    let b = Sidecar::start(pod_ns_b, b_bin, &bootstrap(&sock_b, "b"));
    for (name, s, ns, xds) in [("a", &a, pod_ns_a, &xds_a), ("b", &b, pod_ns_b, &xds_b)] {
        if !s.wait_ready(ns) {
            let admin = ns.block_on(|| async {
                client::admin_get(
                    15000,
                    "/stats?filter=server.state|control_plane|cds|lds|warming",
                )
                .await
                .map(|r| r.text())
                .unwrap_or_else(|e| e)
            });
            panic!(
                "sidecar {name} not ready:\n{}\nits control plane:\n{}\nadmin:\n{admin}",
                s.log(),
                xds.dump()
            );
        }
    }
    rt.block_on(async {
        let _ = xds_a.wait_ack(SECRET, "1", WAIT).await;
        let _ = xds_b.wait_ack(SECRET, "1", WAIT).await;
    });
    let mut out = Vec::new();
    // The inbound listener may still be warming for its secrets: retry briefly.
    let mut resp = Err(String::new());
    for _ in 0..30 {
        resp = pod_ns_a.block_on(|| async {
            client::send_to(
                SocketAddr::new(PodPair::PEER4, 8080),
                &HttpRequest::get("/hello"),
            )
            .await
        });
        if resp.as_ref().is_ok_and(|r| r.status == 200) {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    out.push(match &resp {
        Ok(r) => format!("a -> b: {} {}", r.status, r.text().trim()),
        Err(e) => format!("a -> b: {e}"),
    });
    let cluster = format!("cluster.{SERVICE_B}.ssl.handshake");
    out.push(format!(
        "a's sidecar mTLS handshakes to b: {}",
        pod_ns_a.block_on(|| async { stat(&cluster).await })
    ));
    out.push(format!(
        "b's sidecar mTLS handshakes on 15006: {}",
        pod_ns_b.block_on(|| async { stat("listener.0.0.0.0_15006.ssl.handshake").await })
    ));
    // No request for a named type with no names (in state of the world that asks for all).
    let empty = xds_b
        .requests()
        .iter()
        .filter(|r| !ferry_tests::xds_server::is_wildcard_type(&r.type_url))
        .filter(|r| r.resource_names.is_empty())
        .count();
    out.push(format!(
        "b's requests for named types without names: {empty}"
    ));
    if out
        .iter()
        .any(|l| !l.contains("200") && l.starts_with("a -> b"))
    {
        eprintln!("sidecar a:\n{}\nsidecar b:\n{}", a.log(), b.log());
        let stats = pod_ns_b.block_on(|| async {
            client::admin_get(15000, "/stats")
                .await
                .map(|r| r.text())
                .unwrap_or_default()
        });
        for l in stats
            .lines()
            .filter(|l| l.contains("listener_manager") || l.contains("lds") || l.contains("15006"))
        {
            eprintln!("b: {l}");
        }
        eprintln!("b's control plane:\n{}", xds_b.dump());
    }
    drop((a, b));
    out
}

#[test]
fn two_pods_over_mtls_fed_by_xds() {
    if !root_or_skip("two_pods_over_mtls_fed_by_xds") {
        return;
    }
    let want = vec![
        // x-forwarded-proto is what the client sidecar set (plaintext from the app); the
        // inbound sidecar keeps it (no use_remote_address).
        "a -> b: 200 app b saw peer=127.0.0.6 x-forwarded-proto=http".to_string(),
        "a's sidecar mTLS handshakes to b: 1".to_string(),
        "b's sidecar mTLS handshakes on 15006: 1".to_string(),
        "b's requests for named types without names: 0".to_string(),
    ];
    let ferry = ferry_bin();
    let mut pairs: Vec<(&str, PathBuf, PathBuf)> =
        vec![("ferry-ferry", ferry.clone(), ferry.clone())];
    if let Some(envoy) = envoy_or_skip() {
        pairs.push(("envoy-envoy", envoy.clone(), envoy.clone()));
        pairs.push(("ferry-envoy", ferry.clone(), envoy.clone()));
        pairs.push(("envoy-ferry", envoy, ferry));
    }
    let mut failures = Vec::new();
    for (name, a, b) in pairs {
        let got = call(&a, &b);
        if got != want {
            failures.push(format!("{name}: {got:#?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "expected {want:#?}\n{}",
        failures.join("\n")
    );
}
