//! tcp_proxy: byte round trips, half-close, weighted clusters and a
//! refused upstream.

use std::time::Duration;

use ferry_tests::normalise::body_text;
use ferry_tests::{Observation, Setup, Target};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const IDLE: Duration = Duration::from_secs(2);

/// Connects, writes `data` (concurrently with reading), optionally
/// half-closes, then reads until EOF, `stop_after` bytes, or `IDLE` without
/// data. Records what came back and how the stream ended.
async fn exchange(
    port: u16,
    data: &[u8],
    half_close: bool,
    stop_after: Option<usize>,
) -> Observation {
    let mut obs = Observation::new();
    let stream = match TcpStream::connect(("127.0.0.1", port)).await {
        Ok(s) => s,
        Err(e) => {
            obs.insert("connect".into(), format!("failed: {}", e.kind()));
            return obs;
        }
    };
    let (mut reader, mut writer) = stream.into_split();
    let data = data.to_vec();
    let write_task = tokio::spawn(async move {
        let ok = writer.write_all(&data).await.is_ok();
        if half_close {
            let _ = writer.shutdown().await;
        }
        // Keep the write half alive (not half-closed) until reading ends.
        (ok, writer)
    });
    let mut received = Vec::new();
    let mut buf = vec![0u8; 65536];
    let end = loop {
        if stop_after.is_some_and(|n| received.len() >= n) {
            break "stopped reading".to_string();
        }
        match tokio::time::timeout(IDLE, reader.read(&mut buf)).await {
            Err(_) => break "idle (still open)".to_string(),
            Ok(Ok(0)) => break "eof".to_string(),
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                break "reset".to_string()
            }
            Ok(Err(e)) => break format!("error: {:?}", e.kind()),
        }
    };
    let wrote = match tokio::time::timeout(IDLE, write_task).await {
        Ok(Ok((true, _writer))) => "ok",
        _ => "failed",
    };
    obs.insert("write".into(), wrote.into());
    obs.insert("received".into(), body_text(&received, &Default::default()));
    obs.insert("end".into(), end);
    obs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_proxy() {
    let Some(env) = Setup::new("tcp_proxy", include_str!("../configs/tcp_proxy.yaml"))
        .tcp_echo("TCP_ECHO", "tcp_echo")
        .tcp_greeter("GREET_X", "greeter_x")
        .tcp_greeter("GREET_Y", "greeter_y")
        .refusing("DEAD")
        .start()
        .await
    else {
        return;
    };
    let mut report = env.report();

    // Bytes round-trip while the connection stays open.
    env.compare_with(&mut report, "round trip", |t: Target| async move {
        exchange(t.port("L1"), b"ping over tcp_proxy\n", false, Some(20)).await
    })
    .await;
    // Half-close: the echo still arrives, then EOF.
    env.compare_with(&mut report, "half-close", |t: Target| async move {
        exchange(t.port("L1"), b"half-closed request", true, None).await
    })
    .await;
    // A larger transfer in both directions.
    let big: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let big_ref = &big;
    env.compare_with(&mut report, "1 MB round trip", |t: Target| async move {
        exchange(t.port("L1"), big_ref, true, None).await
    })
    .await;
    // Weighted clusters 1/999999: greeter_y.
    for i in 0..3 {
        env.compare_with(
            &mut report,
            &format!("weighted_clusters #{i}"),
            |t: Target| async move { exchange(t.port("L2"), b"", true, None).await },
        )
        .await;
    }
    // Refused upstream: the accepted downstream connection is closed without
    // data. FIN or RST depends on timing (unread client bytes cause a RST).
    env.compare_with(&mut report, "refused upstream", |t: Target| async move {
        let mut o = exchange(t.port("L3"), b"anyone there?", false, None).await;
        if let Some(end) = o.get_mut("end") {
            if end == "eof" || end == "reset" {
                *end = "closed".to_string();
            }
        }
        o
    })
    .await;

    // Absolute checks on the observations above (both proxies).
    for target in [env.envoy.target(), env.ferry.target()] {
        let kind = target.kind;
        let o = exchange(target.port("L1"), b"abc", true, None).await;
        report.check(
            kind,
            "half-close",
            o["received"] == "abc" && o["end"] == "eof",
            "echo then EOF",
        );
        let o = exchange(target.port("L2"), b"", true, None).await;
        report.check(
            kind,
            "weighted",
            o["received"] == "greeter_y\n",
            "greeter_y answers",
        );
        let o = exchange(target.port("L3"), b"x", false, None).await;
        report.check(
            kind,
            "refused",
            o["received"].is_empty() && (o["end"] == "eof" || o["end"] == "reset"),
            "closed without data",
        );
    }
    report.finish();
}
