//! The HTTP load generator: HTTP/1.1 keep-alive (one request in flight per connection), h2
//! (C connections × M concurrent streams) or gRPC unary over h2c (likewise; see `grpc`), in
//! two modes:
//! - closed loop: every slot sends its next request as soon as the previous one is answered
//!   (maximum throughput);
//! - open loop at a fixed rate: slot i of S sends request k at t0 + (i + k·S)/rate. When the
//!   slot is still busy at that time, latency is measured from the intended send time
//!   (coordinated-omission correction: the wait is the server's fault). When the slot is idle
//!   it sleeps until then, and latency starts when it wakes (the timer's lateness is the
//!   generator's, not the server's).
//!
//! Both stop at a deadline or after a total request count, whichever comes first.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use hdrhistogram::Histogram;
use http::uri::PathAndQuery;
use http::{header, HeaderValue, Request, Uri};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use crate::grpc;

/// Latency histogram in nanoseconds, 1 ns to 60 s, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("histogram bounds")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    H1,
    H2,
    /// gRPC unary calls of `path` over h2c.
    Grpc,
}

/// What to load and how.
#[derive(Clone, Debug)]
pub struct HttpTarget {
    pub addr: SocketAddr,
    pub proto: Proto,
    /// HTTP/1.1: connections. h2, gRPC: connections.
    pub connections: usize,
    /// h2, gRPC: concurrent streams per connection (ignored for HTTP/1.1).
    pub streams: usize,
    /// The request path (gRPC: the method, `/package.Service/Method`).
    pub path: String,
    /// Host header per connection, cycled (the mesh scenario spreads connections over hosts).
    pub hosts: Vec<String>,
}

#[derive(Debug)]
pub struct LoadResult {
    pub requests: u64,
    pub errors: u64,
    pub bytes: u64,
    pub elapsed: Duration,
    pub hist: Histogram<u64>,
}

impl LoadResult {
    pub fn rps(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// One place a request can be sent from: a connection (HTTP/1.1) or a stream slot (h2, gRPC).
struct Slot {
    send: Sender,
    target: Arc<HttpTarget>,
    uri: Uri,
    host: HeaderValue,
    reconnects: u32,
}

enum Sender {
    H1(http1::SendRequest<Empty<Bytes>>),
    H2(http2::SendRequest<Empty<Bytes>>),
    Grpc {
        client: grpc::Client,
        conn: grpc::H2,
        path: PathAndQuery,
    },
}

const MAX_RECONNECTS: u32 = 20;

impl Slot {
    /// One request; returns the response body size (gRPC: the reply message's). Non-2xx
    /// answers are errors, and so are failed gRPC calls (see `grpc`).
    async fn request(&mut self) -> Result<u64> {
        let get = || Request::get(self.uri.clone()).body(Empty::<Bytes>::new());
        let resp = match &mut self.send {
            Sender::H1(s) => {
                let mut req = get()?;
                req.headers_mut().insert(header::HOST, self.host.clone());
                s.ready().await?;
                s.send_request(req).await?
            }
            Sender::H2(s) => {
                let req = get()?;
                s.ready().await?;
                s.send_request(req).await?
            }
            Sender::Grpc { client, path, .. } => return grpc::call(client, path).await,
        };
        let status = resp.status();
        let mut body = resp.into_body();
        let mut n = 0u64;
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame?.into_data() {
                n += data.len() as u64;
            }
        }
        if !status.is_success() {
            bail!("status {status}");
        }
        Ok(n)
    }

    /// After an error: carry on if the connection is still open; reopen a closed HTTP/1.1
    /// connection (bounded); give up on a closed h2 connection (its slots share it).
    async fn recover(&mut self) -> bool {
        let closed = match &self.send {
            Sender::H1(s) => s.is_closed(),
            Sender::H2(s) => s.is_closed(),
            Sender::Grpc { conn, .. } => conn.is_closed(),
        };
        if !closed {
            return true;
        }
        if !matches!(self.send, Sender::H1(_)) || self.reconnects >= MAX_RECONNECTS {
            return false;
        }
        self.reconnects += 1;
        match connect_h1(self.target.addr).await {
            Ok(s) => {
                self.send = Sender::H1(s);
                true
            }
            Err(_) => false,
        }
    }
}

async fn tcp(addr: SocketAddr) -> Result<TokioIo<TcpStream>> {
    let s = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connect {addr}"))?;
    s.set_nodelay(true)?;
    Ok(TokioIo::new(s))
}

async fn connect_h1(addr: SocketAddr) -> Result<http1::SendRequest<Empty<Bytes>>> {
    let (send, conn) = http1::handshake(tcp(addr).await?).await?;
    tokio::spawn(conn);
    Ok(send)
}

async fn connect_h2(addr: SocketAddr) -> Result<http2::SendRequest<Empty<Bytes>>> {
    let (send, conn) = http2::Builder::new(TokioExecutor::new())
        .initial_stream_window_size(1 << 20)
        .initial_connection_window_size(16 << 20)
        .handshake(tcp(addr).await?)
        .await?;
    tokio::spawn(conn);
    Ok(send)
}

/// Opens the connections and returns one slot per connection (HTTP/1.1) or per stream (h2,
/// gRPC).
async fn slots(target: &HttpTarget) -> Result<Vec<Slot>> {
    let target = Arc::new(target.clone());
    let authority = target.addr.to_string();
    let mut out = Vec::new();
    for c in 0..target.connections.max(1) {
        let host = target.hosts[c % target.hosts.len()].clone();
        let host_value = HeaderValue::from_str(&host)?;
        let (sends, uri) = match target.proto {
            Proto::H1 => {
                let s = connect_h1(target.addr).await?;
                (vec![Sender::H1(s)], target.path.parse::<Uri>()?)
            }
            Proto::H2 => {
                let s = connect_h2(target.addr).await?;
                let sends = (0..target.streams.max(1))
                    .map(|_| Sender::H2(s.clone()))
                    .collect();
                let uri = format!("http://{authority}{}", target.path).parse::<Uri>()?;
                (sends, uri)
            }
            Proto::Grpc => {
                let (client, conn) = grpc::connect(target.addr).await?;
                let path = target.path.parse::<PathAndQuery>()?;
                let sends = (0..target.streams.max(1))
                    .map(|_| Sender::Grpc {
                        client: client.clone(),
                        conn: conn.clone(),
                        path: path.clone(),
                    })
                    .collect();
                (sends, Uri::from(path))
            }
        };
        for send in sends {
            out.push(Slot {
                send,
                target: target.clone(),
                uri: uri.clone(),
                host: host_value.clone(),
                reconnects: 0,
            });
        }
    }
    Ok(out)
}

#[derive(Default)]
struct SlotStats {
    requests: u64,
    errors: u64,
    bytes: u64,
}

/// Closed loop for `duration` or `max_requests` in total.
pub async fn closed(
    target: &HttpTarget,
    duration: Duration,
    max_requests: u64,
) -> Result<LoadResult> {
    run(target, duration, max_requests, None).await
}

/// Open loop at `rate` requests/s in total for `duration` (or `max_requests`).
pub async fn open(
    target: &HttpTarget,
    rate: f64,
    duration: Duration,
    max_requests: u64,
) -> Result<LoadResult> {
    if rate.is_nan() || rate <= 0.0 {
        bail!("rate must be > 0");
    }
    run(target, duration, max_requests, Some(rate)).await
}

async fn run(
    target: &HttpTarget,
    duration: Duration,
    max_requests: u64,
    rate: Option<f64>,
) -> Result<LoadResult> {
    let slots = slots(target).await?;
    let n = slots.len();
    let issued = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::with_capacity(n);
    for (i, slot) in slots.into_iter().enumerate() {
        let issued = issued.clone();
        tasks.push(tokio::spawn(async move {
            let schedule = rate.map(|r| (start, i, n, r));
            drive(slot, deadline, max_requests, issued, schedule).await
        }));
    }
    let mut hist = new_histogram();
    let mut total = SlotStats::default();
    for t in tasks {
        let (stats, h) = t.await?;
        total.requests += stats.requests;
        total.errors += stats.errors;
        total.bytes += stats.bytes;
        hist.add(&h).expect("same histogram bounds");
    }
    Ok(LoadResult {
        requests: total.requests,
        errors: total.errors,
        bytes: total.bytes,
        elapsed: start.elapsed(),
        hist,
    })
}

/// One slot's loop. `schedule`: (t0, slot index, slot count, total rate) for the open loop.
async fn drive(
    mut slot: Slot,
    deadline: Instant,
    max_requests: u64,
    issued: Arc<AtomicU64>,
    schedule: Option<(Instant, usize, usize, f64)>,
) -> (SlotStats, Histogram<u64>) {
    let mut hist = new_histogram();
    let mut stats = SlotStats::default();
    let mut k: u64 = 0;
    loop {
        let began = match schedule {
            None => {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                now
            }
            Some((t0, i, n, rate)) => {
                let offset = (i as f64 + (k * n as u64) as f64) / rate;
                let intended = t0 + Duration::from_secs_f64(offset);
                if intended >= deadline {
                    break;
                }
                let now = Instant::now();
                if now < intended {
                    tokio::time::sleep_until(intended.into()).await;
                    Instant::now()
                } else {
                    intended
                }
            }
        };
        if issued.fetch_add(1, Ordering::Relaxed) >= max_requests {
            break;
        }
        k += 1;
        match slot.request().await {
            Ok(bytes) => {
                stats.requests += 1;
                stats.bytes += bytes;
                hist.saturating_record(began.elapsed().as_nanos() as u64);
            }
            Err(_) => {
                stats.errors += 1;
                if !slot.recover().await {
                    break;
                }
            }
        }
    }
    (stats, hist)
}
