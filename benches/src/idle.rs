//! The idle-connections scenario: how much memory a proxy spends per idle keep-alive
//! connection. N connections each get one request answered, then stay open and silent; the
//! proxy's RSS growth over its idle footprint, divided by the connections it still holds,
//! is the cost of one. A sample of them is asked once more at the end to show they were held.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::proxy::Proxy;
use crate::results::Recorder;

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n";

/// Reads one response (Content-Length framed); `false` if the connection ended first.
async fn read_response(s: &mut TcpStream) -> bool {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                return head.starts_with("http/1.1 200");
            }
        }
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return false,
        }
    }
}

async fn open_one(addr: SocketAddr) -> Option<TcpStream> {
    let mut s = TcpStream::connect(addr).await.ok()?;
    s.write_all(REQUEST).await.ok()?;
    read_response(&mut s).await.then_some(s)
}

/// Opens `n` connections, `batch` at a time, keeping those that were answered.
async fn open(addr: SocketAddr, n: usize, batch: usize) -> Vec<TcpStream> {
    let mut held = Vec::with_capacity(n);
    let mut left = n;
    while left > 0 {
        let k = left.min(batch);
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..k {
            set.spawn(open_one(addr));
        }
        while let Some(r) = set.join_next().await {
            if let Ok(Some(s)) = r {
                held.push(s);
            }
        }
        left -= k;
    }
    held
}

pub async fn measure(
    rec: &mut Recorder<'_>,
    proxy: &Proxy,
    addr: SocketAddr,
    n: usize,
) -> Result<()> {
    let (before, _) = proxy.memory_kib();
    let heap_before = crate::proxy::allocated_bytes(proxy.admin).await;
    let mut held = open(addr, n, 200).await;
    if held.is_empty() {
        bail!("no connection was answered");
    }
    // Let the proxy settle (freed request buffers, pool bookkeeping), then read its RSS.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (after, _) = proxy.memory_kib();
    let heap_after = crate::proxy::allocated_bytes(proxy.admin).await;
    // Every 100th connection answers a second request: they were held, not dropped.
    let mut alive = 0usize;
    let mut asked = 0usize;
    for s in held.iter_mut().step_by(100) {
        asked += 1;
        if s.write_all(REQUEST).await.is_ok() && read_response(s).await {
            alive += 1;
        }
    }
    let count = held.len();
    drop(held);
    rec.put(
        "idle_conns_held",
        count as f64 * alive as f64 / asked.max(1) as f64,
    );
    rec.put(
        "kib_per_idle_conn",
        after.saturating_sub(before) as f64 / count as f64,
    );
    rec.put("rss_idle_conns_mib", after as f64 / 1024.0);
    if let (Some(b), Some(a)) = (heap_before, heap_after) {
        rec.put(
            "kib_heap_per_idle_conn",
            a.saturating_sub(b) as f64 / 1024.0 / count as f64,
        );
    }
    Ok(())
}
