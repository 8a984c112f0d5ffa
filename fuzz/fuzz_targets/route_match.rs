//! Route matching: one route table with every kind of match Ferry supports (prefix, path,
//! separated prefix, regex, header and query matchers, case-insensitive), and a request made
//! from the input — `host\npath\nname: value\n…`. Host lookup and matching must never panic.
#![no_main]

use ferry::config::load;
use ferry::config::route::{RequestView, RouteTable};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

const ROUTES: &str = r#"
name: fuzz
virtual_hosts:
- name: exact
  domains: ["api.example.com", "api.example.com:8080"]
  routes:
  - match: { path: "/exact" }
    direct_response: { status: 200 }
  - match: { prefix: "/CaSe", case_sensitive: false }
    direct_response: { status: 201 }
  - match: { path_separated_prefix: "/sep" }
    direct_response: { status: 202 }
  - match:
      safe_regex: { regex: "^/re/[a-z]+/(\\d{1,4})$" }
    direct_response: { status: 203 }
  - match:
      prefix: "/"
      headers:
      - name: x-v
        string_match: { prefix: "v1", ignore_case: true }
      - name: x-present
        present_match: true
      - name: x-absent
        present_match: false
      - name: x-range
        range_match: { start: 10, end: 100 }
      query_parameters:
      - name: q
        string_match: { suffix: "z" }
    direct_response: { status: 204 }
- name: suffix
  domains: ["*.example.com"]
  routes:
  - match: { prefix: "/" }
    direct_response: { status: 205 }
- name: prefix
  domains: ["www.*"]
  routes:
  - match: { prefix: "/a" }
    direct_response: { status: 206 }
- name: any
  domains: ["*"]
  routes:
  - match:
      prefix: "/"
      headers:
      - name: ":method"
        string_match: { exact: "POST" }
    direct_response: { status: 207 }
"#;

fn table() -> &'static RouteTable {
    static T: OnceLock<RouteTable> = OnceLock::new();
    T.get_or_init(|| {
        let desc = load::descriptor("envoy.config.route.v3.RouteConfiguration");
        let raw = load::from_yaml(ROUTES.as_bytes(), &desc, false).expect("route yaml");
        let rc = load::to_typed(&raw).expect("typed routes");
        RouteTable::from_proto(&rc, "route_config").expect("valid routes")
    })
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let host = lines.next().unwrap_or_default();
    let path = lines.next().unwrap_or_default();
    let mut headers = http::HeaderMap::new();
    for l in lines {
        if let Some((n, v)) = l.split_once(':') {
            if let (Ok(n), Ok(v)) = (
                http::HeaderName::from_bytes(n.trim().as_bytes()),
                http::HeaderValue::from_str(v.trim()),
            ) {
                headers.append(n, v);
            }
        }
    }
    let Some(vh) = table().find_vhost(host) else {
        return;
    };
    let method = headers
        .get("x-method")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("GET")
        .to_string();
    let view = RequestView {
        path,
        headers: &headers,
        method: &method,
        scheme: "http",
    };
    let _ = vh.routes.iter().find(|r| r.matcher.matches(&view));
});
