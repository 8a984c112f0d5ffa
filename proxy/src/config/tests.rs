//! Case tables for the pure parts of the config model: loading with field paths, the support
//! check, virtual-host and route matching, filter-chain selection.

use super::bootstrap::Bootstrap;
use super::listener::{ConnInfo, Listener};
use super::load;
use super::route::{RequestView, RouteTable};
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;

fn bootstrap(yaml: &str) -> super::Result<Bootstrap> {
    let desc = load::descriptor(load::BOOTSTRAP);
    let raw = load::from_yaml(yaml.as_bytes(), &desc, false)?;
    Bootstrap::from_dynamic(raw)
}

fn routes(yaml: &str) -> RouteTable {
    let desc = load::descriptor("envoy.config.route.v3.RouteConfiguration");
    let raw = load::from_yaml(yaml.as_bytes(), &desc, false).expect("yaml");
    let rc: RouteConfiguration = load::to_typed(&raw).expect("typed");
    RouteTable::from_proto(&rc, "route_config").expect("valid routes")
}

const LISTENER: &str = r#"
static_resources:
  listeners:
  - name: l
    address: { socket_address: { address: 127.0.0.1, port_value: 1 } }
    filter_chains:
    - filters:
      - name: hcm
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: p
          route_config:
            virtual_hosts:
            - name: v
              domains: ["*"]
              routes: [{ match: { prefix: "/" }, route: { cluster: c } }]
          http_filters:
          - name: r
            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }
  clusters:
  - name: c
    connect_timeout: 1s
"#;

#[test]
fn a_valid_bootstrap_converts() {
    let b = bootstrap(LISTENER).expect("valid");
    assert_eq!(b.listeners.len(), 1);
    assert_eq!(
        b.clusters[0].connect_timeout,
        std::time::Duration::from_secs(1)
    );
}

#[test]
fn errors_name_the_field() {
    let cases: &[(&str, &str, &str)] = &[
        ("unknown field", "static_resources:\n  clusters:\n  - name: c\n    not_a_field: 1\n", "static_resources.clusters[0].not_a_field"),
        ("bad duration", "static_resources:\n  clusters:\n  - name: c\n    connect_timeout: soon\n", "static_resources.clusters[0].connect_timeout"),
        ("bad enum", "static_resources:\n  clusters:\n  - name: c\n    type: NOPE\n", "static_resources.clusters[0].type"),
        ("unsupported field", "static_resources:\n  clusters:\n  - name: c\n    lrs_server: {}\n", "static_resources.clusters[0].lrs_server"),
        ("health check without thresholds", "static_resources:\n  clusters:\n  - name: c\n    health_checks: [{timeout: 1s, interval: 1s}]\n", "static_resources.clusters[0].health_checks[0].unhealthy_threshold"),
        ("maglev size not prime", "static_resources:\n  clusters:\n  - name: c\n    lb_policy: MAGLEV\n    maglev_lb_config: { table_size: 1000 }\n", "static_resources.clusters[0].maglev_lb_config.table_size"),
        ("unsupported policy", "static_resources:\n  clusters:\n  - name: c\n    lb_policy: CLUSTER_PROVIDED\n", "static_resources.clusters[0].lb_policy"),
        ("unsupported top-level", "dynamic_resources: {}\n", "dynamic_resources"),
        ("undefined cluster", &LISTENER.replace("cluster: c }", "cluster: nope }"), "route_config.virtual_hosts[0].routes[0].route.cluster"),
        ("unsupported filter", &LISTENER.replace("envoy.extensions.filters.http.router.v3.Router", "envoy.extensions.filters.http.health_check.v3.HealthCheck"), "http_filters[0].typed_config"),
        ("no router", &LISTENER.replace("envoy.extensions.filters.http.router.v3.Router", "envoy.extensions.filters.http.cors.v3.Cors"), "http_filters"),
        ("missing address", &LISTENER.replace("    address: { socket_address: { address: 127.0.0.1, port_value: 1 } }\n", ""), "static_resources.listeners[0].address"),
        ("bad port", &LISTENER.replace("port_value: 1 }", "port_value: 70000 }"), "static_resources.listeners[0].address.socket_address.port_value"),
        ("duplicate cluster", &format!("{LISTENER}  - name: c\n"), "static_resources.clusters[1].name"),
        ("unknown @type", &LISTENER.replace("envoy.extensions.filters.http.router.v3.Router", "no.such.Type"), "http_filters[0]"),
    ];
    for (name, yaml, want) in cases {
        match bootstrap(yaml) {
            Ok(_) => panic!("{name}: accepted"),
            Err(e) => assert!(
                e.to_string().contains(want),
                "{name}: '{e}' does not name {want}"
            ),
        }
    }
}

#[test]
fn tuning_fields_are_listed() {
    let yaml = LISTENER.replace(
        "  - name: c\n    connect_timeout: 1s\n",
        "  - name: c\n    connect_timeout: 1s\n    per_connection_buffer_limit_bytes: 1024\n",
    );
    let b = bootstrap(&yaml).expect("valid");
    assert_eq!(b.ignored.len(), 1);
    assert_eq!(
        b.ignored[0].path,
        "static_resources.clusters[0].per_connection_buffer_limit_bytes"
    );
}

#[test]
fn virtual_host_search_order() {
    let t = routes(
        r#"
virtual_hosts:
- { name: exact, domains: ["api.example.com", "api.example.com:8080"], routes: [] }
- { name: suffix_long, domains: ["*.svc.example.com"], routes: [] }
- { name: suffix, domains: ["*.example.com"], routes: [] }
- { name: prefix, domains: ["api.*"], routes: [] }
- { name: any, domains: ["*"], routes: [] }
"#,
    );
    let cases = [
        ("api.example.com", "exact"),
        ("API.Example.com", "exact"),
        ("api.example.com:8080", "exact"),
        ("api.example.com:9090", "prefix"), // the port is part of the host
        ("a.svc.example.com", "suffix_long"),
        ("www.example.com", "suffix"),
        (".example.com", "any"), // a wildcard stands for at least one character
        ("api.other.org", "prefix"),
        ("other.org", "any"),
        ("example.com", "any"),
    ];
    for (host, want) in cases {
        let got = t.find_vhost(host).map(|v| v.name.as_str());
        assert_eq!(got, Some(want), "host {host}");
    }
}

#[test]
fn route_match_table() {
    let t = routes(
        r#"
virtual_hosts:
- name: v
  domains: ["*"]
  routes:
  - { name: exact, match: { path: "/exact" }, direct_response: { status: 200 } }
  - { name: ci, match: { prefix: "/CI", case_sensitive: false }, direct_response: { status: 200 } }
  - { name: regex, match: { safe_regex: { regex: "/r/[0-9]+" } }, direct_response: { status: 200 } }
  - { name: sep, match: { path_separated_prefix: "/sep" }, direct_response: { status: 200 } }
  - name: hdr
    match: { prefix: "/h", headers: [{ name: x-v, string_match: { exact: "1" } }, { name: x-absent, present_match: false }] }
    direct_response: { status: 200 }
  - name: inv
    match: { prefix: "/h", headers: [{ name: x-v, string_match: { exact: "1" }, invert_match: true }] }
    direct_response: { status: 200 }
  - name: query
    match: { prefix: "/q", query_parameters: [{ name: a, string_match: { exact: "b" } }, { name: p, present_match: true }] }
    direct_response: { status: 200 }
  - { name: fallback, match: { prefix: "/" }, direct_response: { status: 200 } }
"#,
    );
    let vh = &t.vhosts[0];
    let pick = |path: &str, headers: &[(&str, &str)]| {
        let mut h = http::HeaderMap::new();
        for (k, v) in headers {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                v.parse().expect("value"),
            );
        }
        let view = RequestView {
            path,
            headers: &h,
            method: "GET",
            scheme: "http",
        };
        vh.routes
            .iter()
            .find(|r| r.matcher.matches(&view))
            .map(|r| r.name.clone())
            .unwrap_or_default()
    };
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        ("/exact", &[], "exact"),
        ("/exact?x=1", &[], "exact"),
        ("/exact/more", &[], "fallback"),
        ("/ci/x", &[], "ci"),
        ("/r/123", &[], "regex"),
        ("/r/12a", &[], "fallback"),
        ("/sep", &[], "sep"),
        ("/sep/a", &[], "sep"),
        ("/separate", &[], "fallback"),
        ("/h", &[("x-v", "1")], "hdr"),
        ("/h", &[("x-v", "1"), ("x-absent", "y")], "fallback"),
        ("/h", &[("x-v", "2")], "inv"),
        ("/h", &[], "fallback"),
        ("/q?a=b&p", &[], "query"),
        ("/q?a=c&p", &[], "fallback"),
    ];
    for (path, headers, want) in cases {
        assert_eq!(pick(path, headers), *want, "{path} {headers:?}");
    }
}

#[test]
fn filter_chain_selection() {
    let yaml = r#"
static_resources:
  listeners:
  - name: l
    address: { socket_address: { address: 0.0.0.0, port_value: 1 } }
    filter_chains:
    - name: port
      filter_chain_match: { destination_port: 8080 }
      filters: [{ name: t, typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: a, cluster: c } }]
    - name: narrow
      filter_chain_match: { prefix_ranges: [{ address_prefix: 10.1.0.0, prefix_len: 16 }] }
      filters: [{ name: t, typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: a, cluster: c } }]
    - name: wide
      filter_chain_match: { prefix_ranges: [{ address_prefix: 10.0.0.0, prefix_len: 8 }] }
      filters: [{ name: t, typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: a, cluster: c } }]
    - name: src
      filter_chain_match: { source_ports: [5555] }
      filters: [{ name: t, typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: a, cluster: c } }]
    default_filter_chain:
      name: default
      filters: [{ name: t, typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: a, cluster: c } }]
  clusters: [{ name: c }]
"#;
    let b = bootstrap(yaml).expect("valid");
    let l: &Listener = &b.listeners[0];
    let pick = |local: &str, remote: &str| {
        let info = ConnInfo {
            local: local.parse().expect("addr"),
            remote: remote.parse().expect("addr"),
            server_name: "",
            transport_protocol: "raw_buffer",
            application_protocols: &[],
        };
        l.select(&info).map(|c| c.name.clone()).unwrap_or_default()
    };
    let cases = [
        ("10.1.2.3:8080", "1.1.1.1:1", "port"),
        ("10.1.2.3:80", "1.1.1.1:1", "narrow"),
        ("10.2.2.3:80", "1.1.1.1:1", "wide"),
        ("192.168.0.1:80", "1.1.1.1:5555", "src"),
        ("192.168.0.1:80", "1.1.1.1:1", "default"),
    ];
    for (local, remote, want) in cases {
        assert_eq!(pick(local, remote), want, "{local} from {remote}");
    }
}

#[test]
fn overload_manager_errors_name_their_field() {
    let base = "overload_manager:\n  resource_monitors:\n  - name: envoy.resource_monitors.fixed_heap\n    typed_config:\n      \"@type\": type.googleapis.com/envoy.extensions.resource_monitors.fixed_heap.v3.FixedHeapConfig\n      max_heap_size_bytes: 1000\n";
    let cases = [
        (
            "  actions:\n  - name: envoy.overload_actions.stop_accepting_requests\n    triggers:\n    - name: nope\n      threshold: { value: 0.9 }\n",
            "overload_manager.actions[0].triggers[0].name",
        ),
        (
            "  actions:\n  - name: envoy.overload_actions.reduce_timeouts\n    triggers:\n    - name: envoy.resource_monitors.fixed_heap\n      threshold: { value: 0.9 }\n",
            "overload_manager.actions[0].name",
        ),
        (
            "  actions:\n  - name: envoy.overload_actions.stop_accepting_requests\n    triggers:\n    - name: envoy.resource_monitors.fixed_heap\n      scaled: { scaling_threshold: 0.9, saturation_threshold: 0.5 }\n",
            "overload_manager.actions[0].triggers[0].scaled",
        ),
    ];
    for (actions, want) in cases {
        let yaml = format!("{base}{actions}");
        match bootstrap(&yaml) {
            Ok(_) => panic!("accepted: {yaml}"),
            Err(e) => assert!(e.to_string().contains(want), "'{e}' does not name {want}"),
        }
    }
    let ok = format!("{base}  actions:\n  - name: envoy.overload_actions.shrink_heap\n    triggers:\n    - name: envoy.resource_monitors.fixed_heap\n      threshold: {{ value: 0.9 }}\n");
    let b = bootstrap(&ok).expect("valid overload manager");
    assert_eq!(b.overload.map(|o| o.actions.len()), Some(1));
}

/// Found by the route_match fuzz target: a case-insensitive prefix compared against a path
/// whose bytes at the prefix's end fall inside a multi-byte character.
#[test]
fn case_insensitive_prefix_on_non_ascii_path() {
    let t = routes(
        r#"
virtual_hosts:
- name: all
  domains: ["*"]
  routes:
  - { name: ci, match: { prefix: "/reab", case_sensitive: false }, direct_response: { status: 200 } }
"#,
    );
    let h = http::HeaderMap::new();
    for (path, want) in [("/re\u{fffd}ibc/124", false), ("/REAB/x", true)] {
        let view = RequestView {
            path,
            headers: &h,
            method: "GET",
            scheme: "http",
        };
        assert_eq!(t.vhosts[0].routes[0].matcher.matches(&view), want, "{path}");
    }
}
