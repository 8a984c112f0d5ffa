//! Listener filters: `tls_inspector` (SNI, ALPN, transport `tls`) and `http_inspector`
//! (`http/1.1`, `h2c`) choose the filter chain. Each chain proxies to a greeter that names
//! itself, so the first line a client reads tells which chain Envoy and Ferry picked.

use std::collections::BTreeMap;
use std::time::Duration;

use ferry_tests::proxy::{self, Proxy};
use ferry_tests::{echo, ProxyKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A TLS ClientHello record with the given SNI (none if empty) and ALPN protocols.
fn client_hello(sni: &str, alpn: &[&str]) -> Vec<u8> {
    let mut exts = Vec::new();
    if !sni.is_empty() {
        let mut list = vec![0u8];
        list.extend((sni.len() as u16).to_be_bytes());
        list.extend(sni.as_bytes());
        let mut body = (list.len() as u16).to_be_bytes().to_vec();
        body.extend(list);
        exts.extend([0, 0]);
        exts.extend((body.len() as u16).to_be_bytes());
        exts.extend(body);
    }
    if !alpn.is_empty() {
        let mut protos = Vec::new();
        for p in alpn {
            protos.push(p.len() as u8);
            protos.extend(p.as_bytes());
        }
        let mut body = (protos.len() as u16).to_be_bytes().to_vec();
        body.extend(protos);
        exts.extend([0, 16]);
        exts.extend((body.len() as u16).to_be_bytes());
        exts.extend(body);
    }
    // supported_versions (TLS 1.3) so that the hello is one a real client would send.
    exts.extend([0, 43, 0, 3, 2, 3, 4]);
    let mut hello = vec![3, 3];
    hello.extend([7u8; 32]);
    hello.push(0);
    hello.extend([0, 2, 0x13, 0x01, 1, 0]);
    hello.extend((exts.len() as u16).to_be_bytes());
    hello.extend(exts);
    let mut hs = vec![1, 0];
    hs.extend((hello.len() as u16).to_be_bytes());
    hs.extend(hello);
    let mut rec = vec![0x16, 3, 1];
    rec.extend((hs.len() as u16).to_be_bytes());
    rec.extend(hs);
    rec
}

/// Connects, sends `first`, and returns the upstream's greeting (or what happened instead).
async fn chosen(port: u16, first: &[u8]) -> String {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)).await else {
        return "<connect refused>".into();
    };
    if s.write_all(first).await.is_err() {
        return "<write failed>".into();
    }
    let mut buf = vec![0u8; 64];
    match tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf)).await {
        Ok(Ok(0)) => "<closed>".into(),
        Ok(Ok(n)) => String::from_utf8_lossy(&buf[..n])
            .lines()
            .next()
            .unwrap_or("")
            .to_string(),
        Ok(Err(e)) => format!("<error {e}>"),
        Err(_) => "<no answer>".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_filters_choose_chains() {
    let mut upstreams = Vec::new();
    let mut shared = BTreeMap::new();
    for name in ["exact", "wild", "alpn", "h1", "h2c", "other"] {
        let up = echo::start_tcp_greeter(name).await;
        shared.insert(format!("UP_{}", name.to_uppercase()), up.port().to_string());
        upstreams.push(up);
    }
    let template = include_str!("../configs/inspectors.yaml");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("SNI exact", client_hello("api.example.com", &[]), "exact"),
        (
            "SNI upper case",
            client_hello("API.Example.com", &[]),
            "exact",
        ),
        ("SNI wildcard", client_hello("www.example.com", &[]), "wild"),
        (
            "SNI wildcard needs a label",
            client_hello("example.com", &["h2"]),
            "alpn",
        ),
        ("no SNI, ALPN h2", client_hello("", &["h2"]), "alpn"),
        (
            "no SNI, Istio ALPN",
            client_hello("", &["istio-peer-exchange", "istio"]),
            "alpn",
        ),
        (
            "TLS, nothing matching",
            client_hello("other.org", &["http/1.1"]),
            "other",
        ),
        (
            "HTTP/1.1 request",
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(),
            "h1",
        ),
        (
            "HTTP/2 preface",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
            "h2c",
        ),
        ("neither", b"\x00\x01\x02 raw bytes\r\n".to_vec(), "other"),
    ];
    let mut results: Vec<(ProxyKind, Vec<String>)> = Vec::new();
    let mut kinds = vec![(ProxyKind::Ferry, proxy::ferry_bin())];
    if let Some(envoy) = proxy::envoy_or_skip() {
        kinds.insert(0, (ProxyKind::Envoy, envoy));
    }
    for (kind, bin) in kinds {
        let p: Proxy = proxy::start(kind, &bin, template, &shared, &[]).await;
        let mut got = Vec::new();
        for (_, first, _) in &cases {
            got.push(chosen(p.port("L1"), first).await);
        }
        results.push((kind, got));
    }
    let mut failures = Vec::new();
    for (kind, got) in &results {
        for ((name, _, want), g) in cases.iter().zip(got) {
            if g != want {
                failures.push(format!("{kind}: {name}: chose {g:?}, expected {want:?}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_filters_disabled_and_server_first() {
    let mut upstreams = Vec::new();
    let mut shared = BTreeMap::new();
    for name in ["tls", "raw"] {
        let up = echo::start_tcp_greeter(name).await;
        shared.insert(format!("UP_{}", name.to_uppercase()), up.port().to_string());
        upstreams.push(up);
    }
    let template = include_str!("../configs/inspectors_disabled.yaml");
    let hello = client_hello("api.example.com", &["h2"]);
    // (case, listener, first bytes, Envoy's answer, Ferry's answer)
    let cases: Vec<(&str, &str, Vec<u8>, &str, &str)> = vec![
        (
            "inspector disabled: TLS seen as raw",
            "L1",
            hello.clone(),
            "raw",
            "raw",
        ),
        (
            "inspector enabled by not_match",
            "L2",
            hello.clone(),
            "tls",
            "tls",
        ),
        (
            "enabled inspector, plain bytes",
            "L2",
            b"hello\r\n".to_vec(),
            "raw",
            "raw",
        ),
        (
            "server-first, falls back after the timeout",
            "L3",
            Vec::new(),
            "raw",
            "raw",
        ),
        // Deliberate difference: with no timeout Envoy waits for the silent client forever
        // (a server-first protocol never starts); Ferry sees that no chain depends on what the
        // inspector could find and connects at once.
        (
            "server-first, no timeout",
            "L4",
            Vec::new(),
            "<no answer>",
            "raw",
        ),
    ];
    let mut kinds = vec![(ProxyKind::Ferry, proxy::ferry_bin())];
    if let Some(envoy) = proxy::envoy_or_skip() {
        kinds.insert(0, (ProxyKind::Envoy, envoy));
    }
    let mut failures = Vec::new();
    for (kind, bin) in kinds {
        let p: Proxy = proxy::start(kind, &bin, template, &shared, &[]).await;
        let ferry = kind == ProxyKind::Ferry && !proxy::ferry_is_envoy();
        for (name, listener, first, envoy_want, ferry_want) in &cases {
            let want = if ferry { ferry_want } else { envoy_want };
            let got = chosen(p.port(listener), first).await;
            if got != *want {
                failures.push(format!("{kind}: {name}: got {got:?}, expected {want:?}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
