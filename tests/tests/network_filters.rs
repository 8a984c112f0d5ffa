//! Network RBAC and connection rate limiting against Envoy, in front of tcp_proxy: a denied
//! peer is closed without reaching the upstream, an allowed one is proxied, a connection over
//! the bucket is closed; the `rbac.*` and `local_rate_limit.*` stats.

use ferry_tests::proxy::Target;
use ferry_tests::Setup;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends a line and reads what comes back within a second: the echo, or how it ended.
async fn ping(port: u16) -> String {
    let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return "connect failed".into();
    };
    let _ = s.write_all(b"ping\n").await;
    let mut buf = vec![0u8; 64];
    match tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => "closed".into(),
        Ok(Ok(n)) => String::from_utf8_lossy(&buf[..n]).trim().to_string(),
        Err(_) => "no answer".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_rbac_and_rate_limit() {
    let Some(env) = Setup::new(
        "network_filters",
        include_str!("../configs/network_filters.yaml"),
    )
    .tcp_echo("TCP", "tcp")
    .start()
    .await
    else {
        return;
    };
    let mut report = env.report();
    for (name, listener, n) in [
        ("RBAC denies loopback", "L1", 1),
        ("RBAC allows this port", "L2", 1),
        ("one connection per minute", "L3", 3),
    ] {
        env.compare_with(&mut report, name, |t: Target| async move {
            let mut got = Vec::new();
            for _ in 0..n {
                got.push(ping(t.port(listener)).await);
            }
            BTreeMap::from([("answers".to_string(), got.join(" | "))])
        })
        .await;
    }
    env.compare_stats(
        &mut report,
        &[
            "deny.rbac.denied",
            "deny.rbac.allowed",
            "allow.rbac.allowed",
            "allow.rbac.dry_.shadow_denied",
            "allow.rbac.dry_.shadow_allowed",
            "local_rate_limit.conn_rl.rate_limited",
        ],
    )
    .await;
    // What both were compared on, checked on Ferry.
    let ferry = env.both()[1].target();
    assert_eq!(ping(ferry.port("L1")).await, "closed");
    assert_eq!(ping(ferry.port("L2")).await, "ping");
    assert_eq!(ping(ferry.port("L3")).await, "closed");
    report.finish();
}
