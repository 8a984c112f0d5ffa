//! Micro benchmarks of the pure functions on Ferry's data path: virtual-host and route
//! matching, load-balancer picks, header rewriting and filter-chain selection. Each builds its
//! configuration as Envoy protos in code and converts it with the same `from_proto` the
//! bootstrap and xDS use, then times only the per-connection or per-request call.
//!
//! `cargo bench -p ferry --bench hot_paths` (add a filter such as `route/` to run a subset).

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use envoy_types::pb::envoy::config::cluster::v3 as cluster_pb;
use envoy_types::pb::envoy::config::core::v3 as core_pb;
use envoy_types::pb::envoy::config::endpoint::v3 as endpoint_pb;
use envoy_types::pb::envoy::config::listener::v3 as listener_pb;
use envoy_types::pb::envoy::config::route::v3 as route_pb;
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3 as tcp_pb;
use envoy_types::pb::envoy::r#type::matcher::v3 as matcher_pb;
use envoy_types::pb::google::protobuf::{Any, Duration as PbDuration, UInt32Value};
use ferry::cluster::{ClusterRt, LbContext};
use ferry::config::cluster::Cluster;
use ferry::config::headers::{FormatCtx, HeaderMutation};
use ferry::config::listener::{ConnInfo, Listener};
use ferry::config::route::{RequestView, RouteTable, VirtualHost};
use http::{HeaderMap, HeaderValue};
use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Duration;

// ---------------------------------------------------------------------------------------------
// Route matching

/// Service virtual hosts besides the catch-all one; every tenth also has a wildcard domain.
const SERVICE_VHOSTS: usize = 300;

/// The catch-all virtual host's route `i`: prefix `/svc-i/`, every tenth a regex path instead,
/// two in ten also requiring a header (the canary and per-user routes a mesh generates).
fn mesh_route(i: usize) -> route_pb::Route {
    use route_pb::header_matcher::HeaderMatchSpecifier as Hms;
    use route_pb::route_match::PathSpecifier;
    let path = if i % 10 == 8 {
        PathSpecifier::SafeRegex(matcher_pb::RegexMatcher {
            regex: format!("/svc-{i}/v[0-9]+/[a-z]+(/.*)?"),
            ..Default::default()
        })
    } else {
        PathSpecifier::Prefix(format!("/svc-{i}/"))
    };
    let headers = match i % 10 {
        3 => vec![route_pb::HeaderMatcher {
            name: "x-canary".into(),
            header_match_specifier: Some(Hms::StringMatch(matcher_pb::StringMatcher {
                match_pattern: Some(matcher_pb::string_matcher::MatchPattern::Exact(
                    "true".into(),
                )),
                ignore_case: false,
            })),
            ..Default::default()
        }],
        6 => vec![route_pb::HeaderMatcher {
            name: "end-user".into(),
            header_match_specifier: Some(Hms::StringMatch(matcher_pb::StringMatcher {
                match_pattern: Some(matcher_pb::string_matcher::MatchPattern::Prefix(
                    "tester-".into(),
                )),
                ignore_case: false,
            })),
            ..Default::default()
        }],
        _ => Vec::new(),
    };
    route_pb::Route {
        name: format!("svc-{i}"),
        r#match: Some(route_pb::RouteMatch {
            path_specifier: Some(path),
            headers,
            ..Default::default()
        }),
        action: Some(route_pb::route::Action::Route(route_pb::RouteAction {
            cluster_specifier: Some(route_pb::route_action::ClusterSpecifier::Cluster(format!(
                "outbound|80||svc-{i}.ns-{i}.svc.cluster.local"
            ))),
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// A route configuration like an Istio sidecar's: per-service virtual hosts with the names
/// Istio generates (FQDN, short names, each with and without the port), some wildcard
/// service-entry hosts, and a `*` virtual host holding `routes` routes.
fn route_config(routes: usize) -> route_pb::RouteConfiguration {
    let mut vhosts = Vec::with_capacity(SERVICE_VHOSTS + 1);
    for k in 0..SERVICE_VHOSTS {
        let fqdn = format!("svc-{k}.ns-{k}.svc.cluster.local");
        let mut domains = vec![
            fqdn.clone(),
            format!("{fqdn}:80"),
            format!("svc-{k}.ns-{k}"),
            format!("svc-{k}.ns-{k}:80"),
            format!("svc-{k}"),
            format!("svc-{k}:80"),
        ];
        if k % 10 == 0 {
            domains.push(format!("*.ext-{k}.example.com"));
        }
        vhosts.push(route_pb::VirtualHost {
            name: format!("{fqdn}:80"),
            domains,
            routes: vec![mesh_route(k)],
            ..Default::default()
        });
    }
    vhosts.push(route_pb::VirtualHost {
        name: "mesh".into(),
        domains: vec!["*".into()],
        routes: (0..routes).map(mesh_route).collect(),
        ..Default::default()
    });
    route_pb::RouteConfiguration {
        name: "80".into(),
        virtual_hosts: vhosts,
        ..Default::default()
    }
}

fn route_table(routes: usize) -> RouteTable {
    RouteTable::from_proto(&route_config(routes), "route_config").expect("valid route config")
}

/// A browser-ish request as it reaches the router behind a sidecar: 15 headers.
fn request_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in [
        ("host", "svc-150.ns-150.svc.cluster.local"),
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        ),
        ("accept", "application/json, text/plain, */*"),
        ("accept-encoding", "gzip, deflate, br"),
        ("accept-language", "en-GB,en;q=0.7"),
        ("content-type", "application/json"),
        ("content-length", "87"),
        (
            "authorization",
            "Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ0ZXN0In0.c2lnbmF0dXJl",
        ),
        ("cookie", "session=0f9a2c7e4b; theme=dark"),
        ("x-request-id", "5e2f4a0c-3b1d-4c8e-9a7f-1d2e3f4a5b6c"),
        ("x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7"),
        ("x-b3-spanid", "e457b5a2e4d86bd1"),
        ("x-b3-sampled", "1"),
        ("x-foo", "bar-42"),
        ("x-internal-debug", "1"),
    ] {
        h.append(k, HeaderValue::from_static(v));
    }
    h
}

fn bench_routes(c: &mut Criterion) {
    let big = route_table(1_000);
    let mut g = c.benchmark_group("find_vhost");
    for (case, host) in [
        ("exact", "svc-150.ns-150.svc.cluster.local"),
        ("suffix_wildcard", "api.ext-150.example.com"),
        ("catch_all", "unknown.example.org"),
    ] {
        g.bench_function(case, |b| {
            b.iter(|| big.find_vhost(black_box(host)).is_some())
        });
    }
    g.finish();

    let headers = request_headers();
    let small = route_table(10);
    for (table, n) in [(&small, 10usize), (&big, 1_000)] {
        let vh: &VirtualHost = table.find_vhost("unknown.example.org").expect("catch-all");
        let mut g = c.benchmark_group(format!("route/{n}"));
        for (case, i) in [("first", 0), ("middle", n / 2), ("last", n - 1)] {
            let path = format!("/svc-{i}/api/v1/items/42?page=2");
            let view = RequestView {
                path: &path,
                headers: &headers,
                method: "GET",
                scheme: "http",
            };
            // The router's search (http/router.rs): the first route whose match holds.
            let want = format!("svc-{i}");
            let found = vh.routes.iter().find(|r| r.matcher.matches(&view));
            assert_eq!(found.map(|r| r.name.as_str()), Some(want.as_str()));
            g.bench_function(case, |b| {
                b.iter(|| {
                    let view = black_box(&view);
                    vh.routes.iter().position(|r| r.matcher.matches(view))
                })
            });
        }
        g.finish();
    }
}

// ---------------------------------------------------------------------------------------------
// Load-balancer picks

fn socket_address(ip: &str, port: u32) -> core_pb::Address {
    core_pb::Address {
        address: Some(core_pb::address::Address::SocketAddress(
            core_pb::SocketAddress {
                address: ip.into(),
                port_specifier: Some(core_pb::socket_address::PortSpecifier::PortValue(port)),
                ..Default::default()
            },
        )),
    }
}

fn static_cluster(hosts: usize) -> Cluster {
    let lb_endpoints = (0..hosts)
        .map(|i| endpoint_pb::LbEndpoint {
            host_identifier: Some(endpoint_pb::lb_endpoint::HostIdentifier::Endpoint(
                endpoint_pb::Endpoint {
                    address: Some(socket_address(
                        &format!("10.1.{}.{}", i / 250, i % 250 + 1),
                        8080,
                    )),
                    ..Default::default()
                },
            )),
            ..Default::default()
        })
        .collect();
    let name = format!("static-{hosts}");
    let proto = cluster_pb::Cluster {
        name: name.clone(),
        cluster_discovery_type: Some(cluster_pb::cluster::ClusterDiscoveryType::Type(
            cluster_pb::cluster::DiscoveryType::Static as i32,
        )),
        lb_policy: cluster_pb::cluster::LbPolicy::RoundRobin as i32,
        connect_timeout: Some(PbDuration {
            seconds: 1,
            nanos: 0,
        }),
        load_assignment: Some(endpoint_pb::ClusterLoadAssignment {
            cluster_name: name,
            endpoints: vec![endpoint_pb::LocalityLbEndpoints {
                lb_endpoints,
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    Cluster::from_proto(&proto, "cluster").expect("valid cluster")
}

fn original_dst_cluster() -> Cluster {
    let proto = cluster_pb::Cluster {
        name: "PassthroughCluster".into(),
        cluster_discovery_type: Some(cluster_pb::cluster::ClusterDiscoveryType::Type(
            cluster_pb::cluster::DiscoveryType::OriginalDst as i32,
        )),
        lb_policy: cluster_pb::cluster::LbPolicy::ClusterProvided as i32,
        connect_timeout: Some(PbDuration {
            seconds: 1,
            nanos: 0,
        }),
        ..Default::default()
    };
    Cluster::from_proto(&proto, "cluster").expect("valid cluster")
}

fn bench_lb(c: &mut Criterion) {
    // Building a cluster and picking need no runtime: only `ClusterRt::start` spawns tasks
    // (DNS refresh, the ORIGINAL_DST cleanup sweep), and it is not called here.
    let mut g = c.benchmark_group("lb_pick");
    for hosts in [3, 100] {
        let rt = ClusterRt::new(static_cluster(hosts));
        assert_eq!(rt.hosts().len(), hosts);
        let lb = LbContext::default();
        g.bench_function(format!("round_robin/{hosts}"), |b| {
            b.iter(|| rt.pick(black_box(&lb)))
        });
    }
    let rt = ClusterRt::new(original_dst_cluster());
    let dst: SocketAddr = "10.244.3.17:9080".parse().expect("addr");
    let lb = LbContext {
        original_dst: Some(dst),
        headers: None,
        hash: None,
        local_cluster: None,
    };
    // The first pick makes the host; the timed ones find it.
    assert_eq!(rt.pick(&lb).map(|h| h.addr), Some(dst));
    g.bench_function("original_dst/existing", |b| {
        b.iter(|| rt.pick(black_box(&lb)))
    });
    g.finish();
}

// ---------------------------------------------------------------------------------------------
// Header rewriting

fn add(
    key: &str,
    value: &str,
    action: core_pb::header_value_option::HeaderAppendAction,
) -> core_pb::HeaderValueOption {
    core_pb::HeaderValueOption {
        header: Some(core_pb::HeaderValue {
            key: key.into(),
            value: value.into(),
            ..Default::default()
        }),
        append_action: action as i32,
        ..Default::default()
    }
}

fn bench_headers(c: &mut Criterion) {
    use core_pb::header_value_option::HeaderAppendAction as A;
    let adds = [
        add(
            "x-envoy-peer-metadata-id",
            "sidecar~10.244.3.17~reviews-v1-7f8b9c.default~default.svc.cluster.local",
            A::OverwriteIfExistsOrAdd,
        ),
        add(
            "x-forwarded-client-addr",
            "%DOWNSTREAM_REMOTE_ADDRESS%",
            A::OverwriteIfExistsOrAdd,
        ),
        add("x-foo-copy", "%REQ(x-foo)%", A::AppendIfExistsOrAdd),
        add("x-route", "reviews-v1", A::AddIfAbsent),
        add(
            "via",
            "%PROTOCOL% ferry (%DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT%)",
            A::AppendIfExistsOrAdd,
        ),
    ];
    let removes = [
        "x-internal-debug".to_string(),
        "cookie".into(),
        "x-envoy-decorator-operation".into(),
    ];
    let m = HeaderMutation::from_proto(
        &adds,
        &removes,
        "route_config",
        "request_headers_to_add",
        "request_headers_to_remove",
    )
    .expect("valid mutation");
    assert!(m.reads_request());
    let req = request_headers();
    // What the forwarder does (http/forward.rs): formatters read a snapshot of the request.
    let snapshot = req.clone();
    let ctx = FormatCtx {
        remote: "10.244.1.9:43122".parse().expect("addr"),
        local: "10.244.3.17:9080".parse().expect("addr"),
        protocol: "HTTP/1.1",
        request: Some(&snapshot),
    };
    let mut check = req.clone();
    m.apply(&mut check, &ctx);
    assert_eq!(check.len(), req.len() - 2 + 5);
    c.bench_function("header_mutation/apply_5_add_3_remove", |b| {
        b.iter_batched_ref(
            || req.clone(),
            |h| m.apply(h, black_box(&ctx)),
            BatchSize::SmallInput,
        )
    });
}

// ---------------------------------------------------------------------------------------------
// Filter-chain selection

const POD_IP: &str = "10.244.3.17";
const MTLS_ALPN: [&str; 5] = [
    "istio-http/1.0",
    "istio-http/1.1",
    "istio-h2",
    "istio-peer-exchange",
    "istio",
];
const HTTP_ALPN: [&str; 4] = ["http/1.1", "http/1.0", "h2c", "h2"];

fn tcp_proxy(cluster: &str) -> listener_pb::Filter {
    let t = tcp_pb::TcpProxy {
        stat_prefix: cluster.into(),
        cluster_specifier: Some(tcp_pb::tcp_proxy::ClusterSpecifier::Cluster(cluster.into())),
        ..Default::default()
    };
    listener_pb::Filter {
        name: "envoy.filters.network.tcp_proxy".into(),
        config_type: Some(listener_pb::filter::ConfigType::TypedConfig(Any {
            type_url: "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"
                .into(),
            value: prost::Message::encode_to_vec(&t),
        })),
    }
}

fn cidr(prefix: &str, len: u32) -> core_pb::CidrRange {
    core_pb::CidrRange {
        address_prefix: prefix.into(),
        prefix_len: Some(UInt32Value { value: len }),
    }
}

fn chain(
    name: String,
    port: Option<u32>,
    prefixes: Vec<core_pb::CidrRange>,
    transport: &str,
    alpn: &[&str],
    cluster: &str,
) -> listener_pb::FilterChain {
    listener_pb::FilterChain {
        name,
        filter_chain_match: Some(listener_pb::FilterChainMatch {
            destination_port: port.map(|value| UInt32Value { value }),
            prefix_ranges: prefixes,
            transport_protocol: transport.into(),
            application_protocols: alpn.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }),
        filters: vec![tcp_proxy(cluster)],
        ..Default::default()
    }
}

/// Istio's `virtualInbound` on port 15006: a blackhole chain for direct connections, catch-all
/// chains (mTLS, TLS, plaintext HTTP, plaintext TCP) for IPv4 and IPv6, and per service port an
/// mTLS, a plaintext-HTTP and a plaintext-TCP chain for the pod's address: 30 chains. Every
/// chain is a tcp_proxy: the filter does not take part in selection.
fn virtual_inbound() -> Listener {
    let mut chains = vec![chain(
        "virtualInbound-blackhole".into(),
        Some(15006),
        vec![],
        "",
        &[],
        "BlackHoleCluster",
    )];
    for (family, any) in [("ipv4", cidr("0.0.0.0", 0)), ("ipv6", cidr("::", 0))] {
        let name = |s: &str| format!("virtualInbound-{family}-{s}");
        chains.push(chain(
            name("mtls"),
            None,
            vec![any.clone()],
            "tls",
            &MTLS_ALPN,
            "InboundPassthroughCluster",
        ));
        chains.push(chain(
            name("tls"),
            None,
            vec![any.clone()],
            "tls",
            &[],
            "InboundPassthroughCluster",
        ));
        chains.push(chain(
            name("http"),
            None,
            vec![any.clone()],
            "raw_buffer",
            &HTTP_ALPN,
            "InboundPassthroughCluster",
        ));
        chains.push(chain(
            name("tcp"),
            None,
            vec![any.clone()],
            "raw_buffer",
            &[],
            "InboundPassthroughCluster",
        ));
    }
    for port in [9080, 8080, 8443, 5000, 3306, 6379, 15090] {
        let pod = || vec![cidr(POD_IP, 32)];
        let cluster = format!("inbound|{port}||");
        chains.push(chain(
            format!("{POD_IP}_{port}_mtls"),
            Some(port),
            pod(),
            "tls",
            &MTLS_ALPN,
            &cluster,
        ));
        chains.push(chain(
            format!("{POD_IP}_{port}_http"),
            Some(port),
            pod(),
            "raw_buffer",
            &HTTP_ALPN,
            &cluster,
        ));
        chains.push(chain(
            format!("{POD_IP}_{port}_tcp"),
            Some(port),
            pod(),
            "raw_buffer",
            &[],
            &cluster,
        ));
    }
    let proto = listener_pb::Listener {
        name: "virtualInbound".into(),
        address: Some(socket_address("0.0.0.0", 15006)),
        filter_chains: chains,
        traffic_direction: core_pb::TrafficDirection::Inbound as i32,
        ..Default::default()
    };
    Listener::from_proto(&proto, "listeners[0]").expect("valid listener")
}

fn bench_filter_chains(c: &mut Criterion) {
    let l = virtual_inbound();
    assert_eq!(l.chains.len(), 30);
    let remote: SocketAddr = "10.244.1.9:43122".parse().expect("addr");
    let mtls: Vec<String> = ["istio-http/1.1", "istio"].map(String::from).to_vec();
    let http: Vec<String> = vec!["http/1.1".into()];
    let none: Vec<String> = Vec::new();
    let mut g = c.benchmark_group("filter_chain_select");
    for (case, port, transport, alpn, want) in [
        ("port_mtls", 9080, "tls", &mtls, "10.244.3.17_9080_mtls"),
        (
            "port_plaintext_http",
            9080,
            "raw_buffer",
            &http,
            "10.244.3.17_9080_http",
        ),
        (
            "catch_all_tcp",
            7777,
            "raw_buffer",
            &none,
            "virtualInbound-ipv4-tcp",
        ),
    ] {
        let info = ConnInfo {
            local: SocketAddr::new(POD_IP.parse().expect("ip"), port),
            remote,
            server_name: "",
            transport_protocol: transport,
            application_protocols: alpn,
        };
        assert_eq!(l.select(&info).map(|c| c.name.as_str()), Some(want));
        g.bench_function(case, |b| b.iter(|| l.select(black_box(&info)).is_some()));
    }
    g.finish();
}

criterion_group! {
    name = hot_paths;
    // Short runs: the whole suite takes well under two minutes on a 2-core machine.
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    targets = bench_routes, bench_lb, bench_headers, bench_filter_chains
}
criterion_main!(hot_paths);
