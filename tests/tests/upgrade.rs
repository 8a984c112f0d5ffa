//! WebSocket-style upgrades: the 101 response and raw bytes flowing both
//! ways afterwards.

use std::time::Duration;

use ferry_tests::client::{read_response, RawResponse};
use ferry_tests::diff::port_names_of;
use ferry_tests::normalise::{body_text, observe_raw};
use ferry_tests::{Case, Observation, Setup, Target};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const UPGRADE_REQUEST: &str = "GET /ws?room=1 HTTP/1.1\r\nHost: example.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// Sends the upgrade request, reads the response head, then (if 101)
/// exchanges raw bytes over the upgraded connection.
async fn upgrade_exchange(t: Target, listener: &str) -> Observation {
    let names = port_names_of(&t);
    let mut stream = match TcpStream::connect(("127.0.0.1", t.port(listener))).await {
        Ok(s) => s,
        Err(e) => return Observation::from([("connect".to_string(), e.kind().to_string())]),
    };
    if stream.write_all(UPGRADE_REQUEST.as_bytes()).await.is_err() {
        return Observation::from([("write".to_string(), "failed".to_string())]);
    }
    // Read only the response head: after a 101 the stream is raw bytes.
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match tokio::time::timeout(Duration::from_secs(3), stream.read(&mut byte)).await {
            Ok(Ok(1)) => head.push(byte[0]),
            _ => break,
        }
    }
    let is_101 = head.starts_with(b"HTTP/1.1 101");
    let mut obs = if is_101 {
        let raw = RawResponse {
            bytes: head,
            complete: true,
            closed: false,
        };
        observe_raw(&Ok(raw), &names)
    } else if ferry_tests::client::response_complete(&head) {
        let raw = RawResponse {
            bytes: head,
            complete: true,
            closed: false,
        };
        return observe_raw(&Ok(raw), &names);
    } else {
        // Not upgraded: read the rest of the response normally.
        let mut rest = read_response(&mut stream, Duration::from_secs(2))
            .await
            .unwrap_or(RawResponse {
                bytes: Vec::new(),
                complete: false,
                closed: true,
            });
        head.extend_from_slice(&rest.bytes);
        rest.bytes = head;
        return observe_raw(&Ok(rest), &names);
    };
    for (i, msg) in ["first frame", "second frame"].iter().enumerate() {
        let _ = stream.write_all(msg.as_bytes()).await;
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while got.len() < msg.len() {
            match tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
                _ => break,
            }
        }
        obs.insert(format!("echo#{i}"), body_text(&got, &names));
    }
    // Closing our side ends the tunnel: expect EOF back.
    let _ = stream.shutdown().await;
    let mut rest = Vec::new();
    let end =
        match tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut rest)).await {
            Ok(Ok(_)) => "eof",
            Ok(Err(_)) => "error",
            Err(_) => "still open",
        };
    obs.insert("after_half_close".to_string(), end.to_string());
    obs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade() {
    let Some(env) = Setup::new("websocket_upgrade", include_str!("../configs/upgrade.yaml"))
        .echo("UP_A", "a")
        .start()
        .await
    else {
        return;
    };
    let mut report = env.report();
    env.compare_with(&mut report, "websocket upgrade allowed", |t| {
        upgrade_exchange(t, "L1")
    })
    .await;
    env.compare_with(&mut report, "websocket upgrade not configured", |t| {
        upgrade_exchange(t, "L2")
    })
    .await;
    for t in [env.envoy.target(), env.ferry.target()] {
        let o = upgrade_exchange(t.clone(), "L1").await;
        report.check(
            t.kind,
            "upgrade",
            o.get("status").map(String::as_str) == Some("101")
                && o.get("echo#0").map(String::as_str) == Some("first frame")
                && o.get("echo#1").map(String::as_str) == Some("second frame"),
            "101 then bytes echoed",
        );
    }
    // Plain requests on the upgrade listener still work.
    env.run_cases(
        &mut report,
        &[Case::get("plain request on upgrade listener", "/plain").expect_status(200)],
    )
    .await;
    report.finish();
}
