//! SDS against Envoy: secrets over ADS for a listener from LDS (the listener warms until they
//! arrive; a rotated certificate serves new handshakes while established connections go on),
//! and secrets from a separate SDS server on a Unix socket, named `default` and `ROOTCA` as
//! Istio's agent serves them.

use ferry_tests::proxy::{self, Proxy, TempDir};
use ferry_tests::tls::{self, spiffe, Ca, KeptAlive, Outcome};
use ferry_tests::xds_server::resources::{self, Routes};
use ferry_tests::xds_server::{XdsServer, CLUSTER, LISTENER, SECRET};
use ferry_tests::{echo, ports, ProxyKind};
use std::collections::BTreeMap;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

fn ads_bootstrap(xds_port: u16, admin: u16) -> String {
    format!(
        r#"
node: {{ id: sds-test, cluster: ferry-tests }}
admin: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {admin} }} }} }}
dynamic_resources:
  ads_config:
    api_type: GRPC
    transport_api_version: V3
    grpc_services: [{{ envoy_grpc: {{ cluster_name: xds }} }}]
  lds_config: {{ ads: {{}}, resource_api_version: V3 }}
  cds_config: {{ ads: {{}}, resource_api_version: V3 }}
static_resources:
  clusters:
  - name: xds
    type: STATIC
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {{ http2_protocol_options: {{}} }}
    load_assignment:
      cluster_name: xds
      endpoints: [{{ lb_endpoints: [{{ endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {xds_port} }} }} }} }}] }}]
"#
    )
}

fn which(o: &Outcome, versions: &[(&str, &[u8])]) -> String {
    match o {
        Outcome::Refused => "refused".into(),
        Outcome::Ok { status, peer, .. } => {
            let v = versions
                .iter()
                .find(|(_, der)| *der == peer.as_slice())
                .map_or("unknown certificate", |(n, _)| n);
            format!("{status} with {v}")
        }
    }
}

async fn sds_over_ads(kind: ProxyKind, bin: &std::path::Path) -> Vec<String> {
    let up = echo::start_http("a").await;
    let root = Ca::root("mesh root");
    let inter = root.intermediate("mesh intermediate");
    let v1 = inter.issue(&spiffe("default", "server"), &["server.example.com"]);
    let v2 = inter.issue(&spiffe("default", "server"), &["server-v2.example.com"]);
    let client = inter.issue(&spiffe("default", "client"), &[]);
    let (d1, d2) = (tls::leaf_der(&v1.chain), tls::leaf_der(&v2.chain));
    let versions: [(&str, &[u8]); 2] = [("v1", &d1), ("v2", &d2)];
    let xds = XdsServer::start().await;
    let port = ports::free_port();
    xds.set(
        CLUSTER,
        vec![resources::static_cluster("backend", "127.0.0.1", up.port())],
    );
    let routes = resources::route_config_msg("local", &["*"], &[("/", "backend")]);
    let listener = resources::listener_http("mtls", port, Routes::Inline(Box::new(routes)), "mtls");
    xds.set(
        LISTENER,
        vec![resources::with_mtls(listener, "server_cert", "mesh_ca")],
    );
    let admin = ports::free_port();
    let mut p = Proxy::spawn(
        kind,
        bin,
        &ads_bootstrap(xds.port(), admin),
        BTreeMap::from([("ADMIN".to_string(), admin)]),
        &[],
    );
    let mut out = Vec::new();
    if let Err(e) = xds.wait_ack(LISTENER, "1", WAIT).await {
        panic!("{kind}: {e}\n{}\nstderr:\n{}", xds.dump(), p.stderr());
    }
    let asked = xds
        .wait_for("a secret request", WAIT, |reqs| {
            reqs.iter()
                .any(|r| r.type_url == SECRET && !r.resource_names.is_empty())
        })
        .await;
    let names: Vec<String> = xds
        .requests()
        .iter()
        .filter(|r| r.type_url == SECRET)
        .map(|r| r.resource_names.join(","))
        .take(1)
        .collect();
    out.push(format!("secrets asked for: {asked:?} {names:?}"));
    let cfg = tls::client_config(&root.root_pem, Some(&client), &["http/1.1"]);
    let sni = "server.example.com";
    out.push(format!(
        "before the secrets: {}",
        which(&tls::get(port, cfg.clone(), sni, "/").await, &versions)
    ));
    xds.set(
        SECRET,
        vec![
            resources::secret_cert("server_cert", &v1.chain, &v1.key),
            resources::secret_ca("mesh_ca", &root.root_pem),
        ],
    );
    if let Err(e) = xds.wait_ack(SECRET, "1", WAIT).await {
        panic!("{kind}: {e}\n{}\nstderr:\n{}", xds.dump(), p.stderr());
    }
    // The listener starts once its secrets are in.
    let mut first = Outcome::Refused;
    for _ in 0..50 {
        first = tls::get(port, cfg.clone(), sni, "/").await;
        if first != Outcome::Refused {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    out.push(format!("with the secrets: {}", which(&first, &versions)));
    // Rotation under traffic: long-lived connections keep sending (a bounded loop) while SDS
    // pushes the new certificate; no request may fail.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut loops = Vec::new();
    for _ in 0..4 {
        let mut kept = KeptAlive::open(port, cfg.clone(), sni)
            .await
            .expect("keep-alive connection");
        let stop = stop.clone();
        loops.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0u32, 0u32);
            for _ in 0..5_000 {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                if kept.get("/loop").await == 200 {
                    ok += 1;
                } else {
                    failed += 1;
                }
            }
            (ok, failed)
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    xds.set(
        SECRET,
        vec![
            resources::secret_cert("server_cert", &v2.chain, &v2.key),
            resources::secret_ca("mesh_ca", &root.root_pem),
        ],
    );
    if let Err(e) = xds.wait_ack(SECRET, "2", WAIT).await {
        panic!("{kind}: {e}\n{}\nstderr:\n{}", xds.dump(), p.stderr());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    out.push(format!(
        "after rotation, a new connection: {}",
        which(&tls::get(port, cfg.clone(), sni, "/").await, &versions)
    ));
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut ok, mut failed) = (0, 0);
    for l in loops {
        let (o, f) = l.await.unwrap_or((0, 1));
        ok += o;
        failed += f;
    }
    out.push(format!(
        "requests on long-lived connections through the rotation: failed {failed}, some ok {}",
        ok > 0
    ));
    p.wait_ready().await;
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sds_over_ads_with_rotation() {
    let want = vec![
        "secrets asked for: Ok(()) [\"mesh_ca,server_cert\"]".to_string(),
        "before the secrets: refused".to_string(),
        "with the secrets: 200 with v1".to_string(),
        "after rotation, a new connection: 200 with v2".to_string(),
        "requests on long-lived connections through the rotation: failed 0, some ok true"
            .to_string(),
    ];
    if let Some(envoy) = proxy::envoy_or_skip() {
        let got = sds_over_ads(ProxyKind::Envoy, &envoy).await;
        assert_eq!(got, want, "Envoy does not behave as this test expects");
    }
    let got = sds_over_ads(ProxyKind::Ferry, &proxy::ferry_bin()).await;
    assert_eq!(got, want);
}

fn uds_bootstrap(socket: &std::path::Path, admin: u16, port: u16, up: u16) -> String {
    format!(
        r#"
node: {{ id: sidecar~10.0.0.1~app.default~default.svc.cluster.local, cluster: app.default }}
admin: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {admin} }} }} }}
static_resources:
  listeners:
  - name: inbound
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}
    filter_chains:
    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          require_client_certificate: true
          common_tls_context:
            tls_certificate_sds_secret_configs:
            - name: default
              sds_config: &sds
                api_config_source:
                  api_type: GRPC
                  transport_api_version: V3
                  grpc_services: [{{ envoy_grpc: {{ cluster_name: sds-grpc }} }}]
                resource_api_version: V3
            validation_context_sds_secret_config: {{ name: ROOTCA, sds_config: *sds }}
      filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: inbound
          cluster: app
  clusters:
  - name: app
    connect_timeout: 1s
    load_assignment:
      cluster_name: app
      endpoints: [{{ lb_endpoints: [{{ endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {up} }} }} }} }}] }}]
  - name: sds-grpc
    type: STATIC
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {{ http2_protocol_options: {{}} }}
    load_assignment:
      cluster_name: sds-grpc
      endpoints: [{{ lb_endpoints: [{{ endpoint: {{ address: {{ pipe: {{ path: "{}" }} }} }} }}] }}]
"#,
        socket.display()
    )
}

async fn sds_over_uds(kind: ProxyKind, bin: &std::path::Path) -> Vec<String> {
    let up = echo::start_http("app").await;
    let dir = TempDir::new("sds");
    let socket = dir.path().join("socket");
    let sds = XdsServer::start_unix(&socket).await;
    let root = Ca::root("mesh root");
    let workload = root.issue(&spiffe("default", "app"), &[]);
    let client = root.issue(&spiffe("default", "client"), &[]);
    sds.set(
        SECRET,
        vec![
            resources::secret_cert("default", &workload.chain, &workload.key),
            resources::secret_ca("ROOTCA", &root.root_pem),
        ],
    );
    let (admin, port) = (ports::free_port(), ports::free_port());
    let mut p = Proxy::spawn(
        kind,
        bin,
        &uds_bootstrap(&socket, admin, port, up.port()),
        BTreeMap::from([("ADMIN".to_string(), admin)]),
        &[],
    );
    if let Err(e) = sds.wait_ack(SECRET, "1", WAIT).await {
        panic!("{kind}: {e}\n{}\nstderr:\n{}", sds.dump(), p.stderr());
    }
    p.wait_ready().await;
    // Envoy opens one stream per secret, Ferry one stream for both: the set asked for counts.
    let names: Vec<String> = sds
        .requests()
        .iter()
        .filter(|r| r.type_url == SECRET)
        .flat_map(|r| r.resource_names.clone())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let cfg = tls::client_config(&root.root_pem, Some(&client), &[]);
    let o = tls::get(port, cfg, "app.default.svc", "/").await;
    let no_cert = tls::get(
        port,
        tls::client_config(&root.root_pem, None, &[]),
        "app.default.svc",
        "/",
    )
    .await;
    let peer_ok = matches!(&o, Outcome::Ok { peer, .. } if *peer == tls::leaf_der(&workload.chain));
    vec![
        format!("secrets asked for: {names:?}"),
        format!(
            "mTLS with the workload certificate: {} {peer_ok}",
            match &o {
                Outcome::Ok { status, .. } => status.to_string(),
                Outcome::Refused => "refused".into(),
            }
        ),
        format!(
            "without a client certificate: {:?}",
            no_cert == Outcome::Refused
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sds_from_a_separate_server_over_a_unix_socket() {
    let want = vec![
        "secrets asked for: [\"ROOTCA\", \"default\"]".to_string(),
        "mTLS with the workload certificate: 200 true".to_string(),
        "without a client certificate: true".to_string(),
    ];
    if let Some(envoy) = proxy::envoy_or_skip() {
        let got = sds_over_uds(ProxyKind::Envoy, &envoy).await;
        assert_eq!(got, want, "Envoy does not behave as this test expects");
    }
    let got = sds_over_uds(ProxyKind::Ferry, &proxy::ferry_bin()).await;
    assert_eq!(got, want);
}
