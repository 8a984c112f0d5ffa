//! The bootstraps every proxy under test gets, rendered as Envoy v3 YAML.
//!
//! Static: one HTTP listener (HTTP connection manager, codec AUTO, router) whose routes send
//! `/h2/…` and the gRPC service's `/ferry.bench.Bench/…` to an HTTP/2 (h2c) cluster and
//! everything else to an HTTP/1.1 cluster, both the benchmark's upstream; one `tcp_proxy` listener to the upstream's echo. With `mesh = N`, N
//! more clusters and N more virtual hosts (`svc-I.mesh.local` → cluster `svc-I`, also the
//! upstream) come first, as a sidecar's outbound config would hold.
//!
//! mTLS (a pair of sidecars in Istio's shape, certificates from files): the client sidecar's
//! plaintext HTTP listener routes to a cluster that originates mTLS (its certificate, the mesh
//! CA, the server's SPIFFE identity, Istio's SNI and ALPN); the server sidecar's listener
//! inspects TLS, matches Istio's ALPN, terminates mTLS (client certificate required, any
//! identity of namespace `bench`) and routes to the upstream.
//!
//! xDS: nothing static but the ADS cluster; clusters (EDS) arrive over ADS.

use std::fmt::Write;
use std::net::SocketAddr;

use crate::certs::{self, Identity};
use crate::grpc;
use crate::upstream::Upstream;

pub struct Ports {
    pub admin: u16,
    pub http: u16,
    pub tcp: u16,
}

const HCM: &str = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
const ROUTER: &str = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router";
const TCP_PROXY: &str =
    "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy";
const HTTP_OPTIONS: &str =
    "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions";
const TLS_INSPECTOR: &str =
    "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector";
const TLS_SOCKET: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3";

/// The Host a mesh-scenario connection uses (connection `i` of the load).
pub fn mesh_host(i: usize, mesh: usize) -> String {
    format!("svc-{}.mesh.local", (i * 37 + 11) % mesh.max(1))
}

fn admin(port: u16) -> String {
    format!(
        "admin:\n  address:\n    socket_address: {{ address: 127.0.0.1, port_value: {port} }}\n"
    )
}

fn cluster(out: &mut String, name: &str, to: SocketAddr, h2: bool) {
    let _ = writeln!(out, "  - name: {name}");
    out.push_str("    type: STATIC\n    connect_timeout: 1s\n");
    if h2 {
        let _ = writeln!(
            out,
            "    typed_extension_protocol_options:\n      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:\n        \"@type\": {HTTP_OPTIONS}\n        explicit_http_config:\n          http2_protocol_options: {{}}"
        );
    }
    let _ = writeln!(
        out,
        "    load_assignment:\n      cluster_name: {name}\n      endpoints:\n      - lb_endpoints:\n        - endpoint:\n            address:\n              socket_address: {{ address: {}, port_value: {} }}",
        to.ip(),
        to.port()
    );
}

/// The static bootstrap; `mesh` extra clusters and virtual hosts (0 for none).
pub fn static_bootstrap(ports: &Ports, up: &Upstream, mesh: usize) -> String {
    let mut y = admin(ports.admin);
    y.push_str("static_resources:\n  listeners:\n");
    let _ = writeln!(
        y,
        "  - name: http\n    address:\n      socket_address: {{ address: 127.0.0.1, port_value: {} }}\n    filter_chains:\n    - filters:\n      - name: envoy.filters.network.http_connection_manager\n        typed_config:\n          \"@type\": {HCM}\n          stat_prefix: bench\n          codec_type: AUTO\n          http_filters:\n          - name: envoy.filters.http.router\n            typed_config:\n              \"@type\": {ROUTER}\n          route_config:\n            name: bench\n            virtual_hosts:",
        ports.http
    );
    for i in 0..mesh {
        let _ = writeln!(
            y,
            "            - name: svc-{i}\n              domains: [\"svc-{i}.mesh.local\"]\n              routes:\n              - match: {{ prefix: \"/\" }}\n                route: {{ cluster: svc-{i} }}"
        );
    }
    let _ = writeln!(
        y,
        "            - name: default\n              domains: [\"*\"]\n              routes:\n              - match: {{ prefix: \"/h2/\" }}\n                route: {{ cluster: upstream_h2 }}\n              - match: {{ prefix: \"{}\" }}\n                route: {{ cluster: upstream_h2 }}\n              - match: {{ prefix: \"/\" }}\n                route: {{ cluster: upstream_h1 }}",
        grpc::SERVICE
    );
    let _ = writeln!(
        y,
        "  - name: tcp\n    address:\n      socket_address: {{ address: 127.0.0.1, port_value: {} }}\n    filter_chains:\n    - filters:\n      - name: envoy.filters.network.tcp_proxy\n        typed_config:\n          \"@type\": {TCP_PROXY}\n          stat_prefix: echo\n          cluster: echo",
        ports.tcp
    );
    y.push_str("  clusters:\n");
    cluster(&mut y, "upstream_h1", up.http, false);
    cluster(&mut y, "upstream_h2", up.http, true);
    cluster(&mut y, "echo", up.echo, false);
    for i in 0..mesh {
        cluster(&mut y, &format!("svc-{i}"), up.http, false);
    }
    y
}

/// A bootstrap whose clusters come over ADS (state of the world) from `xds`.
pub fn xds_bootstrap(admin_port: u16, xds: SocketAddr) -> String {
    let mut y = String::from("node:\n  id: ferry-bench\n  cluster: ferry-bench\n");
    y.push_str(&admin(admin_port));
    y.push_str(
        "dynamic_resources:\n  ads_config:\n    api_type: GRPC\n    transport_api_version: V3\n    grpc_services:\n    - envoy_grpc: { cluster_name: xds }\n  cds_config:\n    ads: {}\n    resource_api_version: V3\n",
    );
    y.push_str("static_resources:\n  clusters:\n");
    cluster(&mut y, "xds", xds, true);
    y
}

/// A CommonTlsContext at `indent` spaces: TLS 1.2–1.3, `alpn`, the workload's certificate,
/// the mesh CA and a URI SAN match (`exact` or `prefix`).
fn common_tls(out: &mut String, indent: usize, id: &Identity, alpn: &[&str], san: (&str, &str)) {
    let alpn: Vec<String> = alpn.iter().map(|a| format!("\"{a}\"")).collect();
    let text = format!(
        "common_tls_context:\n  tls_params: {{ tls_minimum_protocol_version: TLSv1_2, tls_maximum_protocol_version: TLSv1_3 }}\n  alpn_protocols: [{}]\n  tls_certificates:\n  - certificate_chain: {{ filename: \"{}\" }}\n    private_key: {{ filename: \"{}\" }}\n  validation_context:\n    trusted_ca: {{ filename: \"{}\" }}\n    match_typed_subject_alt_names:\n    - san_type: URI\n      matcher: {{ {}: \"{}\" }}",
        alpn.join(", "),
        id.cert.display(),
        id.key.display(),
        id.ca.display(),
        san.0,
        san.1
    );
    for line in text.lines() {
        let _ = writeln!(out, "{:indent$}{line}", "");
    }
}

/// A filter chain's `filters:` (at 6 spaces): an HTTP connection manager routing everything to
/// `cluster`.
fn hcm_to(out: &mut String, stat_prefix: &str, cluster: &str) {
    let _ = writeln!(
        out,
        "      filters:\n      - name: envoy.filters.network.http_connection_manager\n        typed_config:\n          \"@type\": {HCM}\n          stat_prefix: {stat_prefix}\n          codec_type: AUTO\n          http_filters:\n          - name: envoy.filters.http.router\n            typed_config:\n              \"@type\": {ROUTER}\n          route_config:\n            name: {stat_prefix}\n            virtual_hosts:\n            - name: default\n              domains: [\"*\"]\n              routes:\n              - match: {{ prefix: \"/\" }}\n                route: {{ cluster: {cluster} }}"
    );
}

/// The client sidecar: plaintext HTTP on `listen`, mTLS to the server sidecar at `server`.
pub fn mtls_client_bootstrap(
    admin_port: u16,
    listen: u16,
    server: SocketAddr,
    id: &Identity,
) -> String {
    let mut y = admin(admin_port);
    y.push_str("static_resources:\n");
    let _ = writeln!(
        y,
        "  listeners:\n  - name: outbound\n    address:\n      socket_address: {{ address: 127.0.0.1, port_value: {listen} }}\n    filter_chains:\n    - name: outbound"
    );
    hcm_to(&mut y, "outbound", "server");
    y.push_str("  clusters:\n");
    cluster(&mut y, "server", server, false);
    let _ = writeln!(
        y,
        "    transport_socket:\n      name: envoy.transport_sockets.tls\n      typed_config:\n        \"@type\": {TLS_SOCKET}.UpstreamTlsContext\n        sni: {}",
        certs::SNI
    );
    common_tls(
        &mut y,
        8,
        id,
        &certs::ISTIO_ALPN,
        ("exact", certs::SERVER_ID),
    );
    y
}

/// The server sidecar: mTLS on `listen` (client certificate required, namespace `bench`),
/// HTTP to the upstream.
pub fn mtls_server_bootstrap(admin_port: u16, listen: u16, up: &Upstream, id: &Identity) -> String {
    let mut y = admin(admin_port);
    y.push_str("static_resources:\n");
    let _ = writeln!(
        y,
        "  listeners:\n  - name: inbound\n    address:\n      socket_address: {{ address: 127.0.0.1, port_value: {listen} }}\n    listener_filters:\n    - name: envoy.filters.listener.tls_inspector\n      typed_config:\n        \"@type\": {TLS_INSPECTOR}\n    filter_chains:\n    - filter_chain_match:\n        transport_protocol: tls\n        application_protocols: [\"istio-http/1.0\", \"istio-http/1.1\", \"istio-h2\"]\n      transport_socket:\n        name: envoy.transport_sockets.tls\n        typed_config:\n          \"@type\": {TLS_SOCKET}.DownstreamTlsContext\n          require_client_certificate: true"
    );
    common_tls(
        &mut y,
        10,
        id,
        &["h2", "http/1.1"],
        ("prefix", certs::NAMESPACE_PREFIX),
    );
    hcm_to(&mut y, "inbound", "upstream_h1");
    y.push_str("  clusters:\n");
    cluster(&mut y, "upstream_h1", up.http, false);
    y
}
