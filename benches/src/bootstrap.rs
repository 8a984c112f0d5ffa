//! The bootstraps every proxy under test gets, rendered as Envoy v3 YAML.
//!
//! Static: one HTTP listener (HTTP connection manager, codec AUTO, router) whose routes send
//! `/h2/…` and the gRPC service's `/ferry.bench.Bench/…` to an HTTP/2 (h2c) cluster and
//! everything else to an HTTP/1.1 cluster, both the benchmark's upstream; one `tcp_proxy` listener to the upstream's echo. With `mesh = N`, N
//! more clusters and N more virtual hosts (`svc-I.mesh.local` → cluster `svc-I`, also the
//! upstream) come first, as a sidecar's outbound config would hold.
//!
//! xDS: nothing static but the ADS cluster; clusters (EDS) arrive over ADS.

use std::fmt::Write;
use std::net::SocketAddr;

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
