//! A peer that stops reading never makes the proxy buffer without bound, side by side with
//! Envoy (which has `per_connection_buffer_limit_bytes`, 1 MiB by default): a client that
//! reads a response's headers and then nothing stalls the upstream sending a 1 GiB body, and a
//! client uploading a 1 GiB body to an upstream that never reads is stalled itself. Each
//! side's RSS growth is reported and bounded.

use ferry_tests::proxy::{Proxy, ProxyKind};
use ferry_tests::Setup;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Bytes that may sit in kernel socket buffers (two connections, both directions, loopback
/// autotuning) and in the proxy; growth beyond this means the proxy buffers without bound.
const BOUND: u64 = 48 << 20;

fn rss_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Reads a response's first bytes, then nothing for 3 s; how much the upstream sent by then.
async fn stop_reading(p: &Proxy, sent: &AtomicU64) -> (u64, u64) {
    let before = (sent.load(Relaxed), rss_bytes(p.pid()));
    let mut s = TcpStream::connect(("127.0.0.1", p.port("L1")))
        .await
        .expect("connect");
    s.write_all(b"GET /big HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 1024];
    let _ = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let out = (
        sent.load(Relaxed) - before.0,
        rss_bytes(p.pid()).saturating_sub(before.1),
    );
    drop(s);
    out
}

/// Uploads a 1 GiB body to an upstream that never reads, for 3 s; how much the client got
/// written by then.
async fn upload(p: &Proxy) -> (u64, u64) {
    let rss = rss_bytes(p.pid());
    let mut s = TcpStream::connect(("127.0.0.1", p.port("L2")))
        .await
        .expect("connect");
    let head = format!(
        "POST /up HTTP/1.1\r\nHost: a\r\ncontent-length: {}\r\n\r\n",
        1u64 << 30
    );
    let mut written = 0u64;
    if s.write_all(head.as_bytes()).await.is_ok() {
        let chunk = vec![b'y'; 65536];
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, s.write(&chunk)).await {
            if n == 0 {
                break;
            }
            written += n as u64;
        }
    }
    let grew = rss_bytes(p.pid()).saturating_sub(rss);
    drop(s);
    (written, grew)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_stops_reading_is_not_buffered_for() {
    let sent = Arc::new(AtomicU64::new(0));
    let Some(env) = Setup::new("backpressure", include_str!("../configs/backpressure.yaml"))
        .firehose("UP_FIREHOSE", sent.clone())
        .blackhole("UP_SINK")
        .start()
        .await
    else {
        return;
    };
    let mut report = env.report();
    for (kind, p) in [
        (ProxyKind::Envoy, &env.envoy),
        (ProxyKind::Ferry, &env.ferry),
    ] {
        let (down, down_rss) = stop_reading(p, &sent).await;
        let (up, up_rss) = upload(p).await;
        eprintln!(
            "{kind}: a client reading nothing let the upstream send {} KiB (RSS +{} KiB); an upload to an upstream reading nothing took {} KiB (RSS +{} KiB)",
            down >> 10,
            down_rss >> 10,
            up >> 10,
            up_rss >> 10
        );
        report.check(
            kind,
            "a client that stops reading stalls the upstream",
            down < BOUND && down_rss < BOUND,
            &format!(
                "under {} MiB sent and RSS growth (got {down} bytes, +{down_rss})",
                BOUND >> 20
            ),
        );
        report.check(
            kind,
            "an upstream that stops reading stalls the client",
            up < BOUND && up_rss < BOUND,
            &format!(
                "under {} MiB taken and RSS growth (got {up} bytes, +{up_rss})",
                BOUND >> 20
            ),
        );
    }
    report.finish();
}
