//! `additional_addresses` against Envoy: one listener on 127.0.0.1 and ::1 (Istio's dual-stack
//! bootstrap listeners) takes connections on both, counts them once, and the admin API lists
//! both addresses.

use ferry_tests::client;
use ferry_tests::proxy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One HTTP/1.1 GET to `addr`: the status line and body.
async fn get(addr: std::net::SocketAddr) -> String {
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return "refused".into();
    };
    let req = "GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n";
    if s.write_all(req.as_bytes()).await.is_err() {
        return "write failed".into();
    }
    let mut buf = Vec::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut buf));
    let _ = read.await;
    let text = String::from_utf8_lossy(&buf);
    let status = text.lines().next().unwrap_or("").to_string();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    format!("{status} {body}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_listener_two_addresses() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("SKIP: this machine has no IPv6 loopback (::1)");
        return;
    }
    let mut results = Vec::new();
    for (kind, bin) in proxy::kinds() {
        let px = proxy::start(
            kind,
            &bin,
            include_str!("../configs/dual_stack.yaml"),
            &Default::default(),
            &[],
        )
        .await;
        let port = px.port("L1");
        let mut got = Vec::new();
        for ip in ["127.0.0.1", "::1"] {
            let addr = std::net::SocketAddr::new(ip.parse().expect("ip"), port);
            got.push(format!("{ip}: {}", get(addr).await));
        }
        for path in ["/listeners", "/listeners?format=json"] {
            let text = client::admin_get(px.admin_port(), path)
                .await
                .map(|r| r.text())
                .unwrap_or_default();
            let text = if path.ends_with("json") {
                serde_json::from_str::<serde_json::Value>(&text)
                    .map(|v| v.to_string())
                    .unwrap_or(text)
            } else {
                text
            };
            got.push(format!("{path}: {}", text.replace(&port.to_string(), "L1")));
        }
        let stat = format!("listener.127.0.0.1_{port}.downstream_cx_total");
        got.push(format!(
            "listener.L1.downstream_cx_total: {}",
            ferry_tests::conn::stat(px.admin_port(), &stat).await
        ));
        results.push((kind, got));
    }
    let ferry = &results.last().expect("ferry ran").1;
    assert_eq!(ferry[0], "127.0.0.1: HTTP/1.1 200 OK hi", "{ferry:#?}");
    assert_eq!(ferry[1], "::1: HTTP/1.1 200 OK hi", "{ferry:#?}");
    assert!(
        ferry.contains(&"/listeners: dual::127.0.0.1:L1\ndual::[::1]:L1\n".to_string()),
        "{ferry:#?}"
    );
    assert!(ferry.contains(&"listener.L1.downstream_cx_total: 2".to_string()));
    ferry_tests::diff::assert_lines_equal(&results);
}
