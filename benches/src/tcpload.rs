//! Load that is not keep-alive HTTP: TCP stream throughput through an echo (every byte goes
//! through the proxy twice, there and back) and the new-connection rate (one HTTP/1.1 request
//! per connection, `Connection: close`), optionally each over a new TLS session (the mtls
//! scenario's handshake rate). Both bounded by a deadline (and a count for the connection rate).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use hdrhistogram::Histogram;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

use crate::load::new_histogram;

#[derive(Debug)]
pub struct TcpResult {
    /// Payload bytes echoed back to the client within the window.
    pub bytes: u64,
    pub elapsed: Duration,
}

impl TcpResult {
    pub fn gbit_per_s(&self) -> f64 {
        self.bytes as f64 * 8.0 / self.elapsed.as_secs_f64().max(1e-9) / 1e9
    }
}

/// `connections` streams, each writing 64 KiB chunks as fast as the echo returns them.
pub async fn throughput(
    addr: SocketAddr,
    connections: usize,
    duration: Duration,
) -> Result<TcpResult> {
    let mut streams = Vec::new();
    for _ in 0..connections.max(1) {
        let s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        streams.push(s);
    }
    let start = Instant::now();
    let deadline = start + duration;
    let received = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for s in streams {
        let received = received.clone();
        tasks.push(tokio::spawn(
            async move { pump(s, deadline, received).await },
        ));
    }
    for t in tasks {
        t.await??;
    }
    let elapsed = start.elapsed();
    let bytes = received.load(Ordering::Relaxed);
    if bytes == 0 {
        bail!("nothing was echoed back through {addr}");
    }
    Ok(TcpResult { bytes, elapsed })
}

async fn pump(stream: TcpStream, deadline: Instant, received: Arc<AtomicU64>) -> Result<()> {
    let (mut r, mut w) = stream.into_split();
    let writer = tokio::spawn(async move {
        let chunk = vec![0x5au8; 64 * 1024];
        while Instant::now() < deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, w.write_all(&chunk)).await {
                Ok(Ok(())) => {}
                _ => break,
            }
        }
        // Dropping the write half closes the connection; the reader stops at the deadline.
    });
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match tokio::time::timeout(left, r.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => {
                received.fetch_add(n as u64, Ordering::Relaxed);
            }
        }
    }
    writer.abort();
    let _ = writer.await;
    Ok(())
}

#[derive(Debug)]
pub struct ConnResult {
    pub connections: u64,
    pub errors: u64,
    pub elapsed: Duration,
    pub hist: Histogram<u64>,
}

impl ConnResult {
    pub fn per_second(&self) -> f64 {
        self.connections as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// A TLS client for `conn_rate`: each connection makes a new session, sending `name` as SNI.
#[derive(Clone)]
pub struct Tls {
    pub connector: TlsConnector,
    pub name: ServerName<'static>,
}

/// `workers` closed loops of connect (→ TLS handshake) → one request → read to EOF.
pub async fn conn_rate(
    addr: SocketAddr,
    workers: usize,
    duration: Duration,
    max_connections: u64,
    tls: Option<Tls>,
) -> Result<ConnResult> {
    let start = Instant::now();
    let deadline = start + duration;
    let issued = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..workers.max(1) {
        let issued = issued.clone();
        let tls = tls.clone();
        tasks.push(tokio::spawn(async move {
            let mut hist = new_histogram();
            let (mut ok, mut errors) = (0u64, 0u64);
            while Instant::now() < deadline
                && issued.fetch_add(1, Ordering::Relaxed) < max_connections
            {
                let began = Instant::now();
                match one_connection(addr, tls.as_ref(), deadline + Duration::from_secs(2)).await {
                    Ok(()) => {
                        ok += 1;
                        hist.saturating_record(began.elapsed().as_nanos() as u64);
                    }
                    Err(_) => {
                        errors += 1;
                        // Do not hammer a failing target (e.g. out of ports).
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
            }
            (ok, errors, hist)
        }));
    }
    let mut hist = new_histogram();
    let (mut connections, mut errors) = (0, 0);
    for t in tasks {
        let (ok, err, h) = t.await?;
        connections += ok;
        errors += err;
        hist.add(&h).expect("same histogram bounds");
    }
    Ok(ConnResult {
        connections,
        errors,
        elapsed: start.elapsed(),
        hist,
    })
}

const CONN_REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: bench.local\r\nConnection: close\r\n\r\n";

async fn one_connection(addr: SocketAddr, tls: Option<&Tls>, give_up: Instant) -> Result<()> {
    let left = give_up.saturating_duration_since(Instant::now());
    tokio::time::timeout(left, async {
        let s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        match tls {
            None => exchange(s).await,
            Some(t) => exchange(t.connector.connect(t.name.clone(), s).await?).await,
        }
    })
    .await?
}

/// Sends the request and reads the answer to EOF (the server closes after
/// `Connection: close`), at most 1 MiB; the status must be 200.
async fn exchange(mut s: impl AsyncRead + AsyncWrite + Unpin) -> Result<()> {
    s.write_all(CONN_REQUEST).await?;
    let mut buf = [0u8; 4096];
    let mut head = Vec::with_capacity(512);
    let mut total = 0usize;
    loop {
        let n = match s.read(&mut buf).await {
            Ok(n) => n,
            // A TLS peer that closes without close_notify, after its answer.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && total > 0 => 0,
            Err(e) => return Err(e.into()),
        };
        if n == 0 {
            break;
        }
        if head.len() < 16 {
            head.extend_from_slice(&buf[..n.min(16)]);
        }
        total += n;
        if total > 1 << 20 {
            bail!("response too long");
        }
    }
    if !head.starts_with(b"HTTP/1.1 200") {
        bail!("unexpected response {:?}", String::from_utf8_lossy(&head));
    }
    Ok(())
}
