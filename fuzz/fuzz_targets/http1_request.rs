//! The HTTP/1 request path: Ferry runs in this process (its own threads) on a bootstrap with a
//! connection manager in front of a direct response and of an upstream that refuses, and each
//! input is written raw to its listener as a client would, the response read until it closes
//! or goes quiet. A panic anywhere in Ferry aborts the process (libFuzzer's panic hook), so a
//! crash is a panic on the request path: parsing, header checks, path normalisation, routing,
//! local replies.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::OnceLock;
use std::time::Duration;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Starts Ferry once and waits for its listener.
fn proxy() -> SocketAddr {
    static ADDR: OnceLock<SocketAddr> = OnceLock::new();
    *ADDR.get_or_init(|| {
        let (port, refused) = (free_port(), free_port());
        let yaml = format!(
            r#"
static_resources:
  listeners:
  - name: fuzz
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: fuzz
          merge_slashes: true
          path_with_escaped_slashes_action: UNESCAPE_AND_REDIRECT
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{ prefix: "/up" }}
                route: {{ cluster: refused, timeout: 0.2s }}
              - match: {{ prefix: "/" }}
                direct_response: {{ status: 200, body: {{ inline_string: "ok" }} }}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: refused
    connect_timeout: 0.1s
    load_assignment:
      cluster_name: refused
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {refused} }} }} }}
"#
        );
        let dir = std::env::temp_dir().join(format!("ferry-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("bootstrap.yaml");
        std::fs::write(&file, yaml).expect("write bootstrap");
        let file = file.to_string_lossy().into_owned();
        std::thread::spawn(move || {
            ferry::app::main_with(["ferry", "-c", &file, "--concurrency", "1", "-l", "off"])
        });
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        for _ in 0..500 {
            if TcpStream::connect(addr).is_ok() {
                return addr;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("ferry did not start listening on {addr}");
    })
}

fuzz_target!(|data: &[u8]| {
    let addr = proxy();
    let Ok(mut s) = TcpStream::connect(addr) else {
        return;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(100)));
    if s.write_all(data).is_err() {
        return;
    }
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut buf = [0u8; 4096];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
    }
});
