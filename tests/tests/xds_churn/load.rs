//! Bounded load for `xds_churn.rs`: keep-alive HTTP/1.1 clients and h2c
//! (prior knowledge) clients, each on one connection to 127.0.0.1:`port`,
//! sending `GET /` in a loop until stopped (or a time limit), recording
//! the outcome of every request (see [`Outcome`]). A client reconnects
//! only when its connection was closed (HTTP/1.1 `Connection: close`, an
//! h2 GOAWAY); a request sent and not answered is a transport error,
//! unless the library handed it back unsent or a GOAWAY refused it.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// Per-request (and per-connect) time limit: beyond it a request is stuck.
const STUCK: Duration = Duration::from_secs(5);

type Body = Full<Bytes>;

/// What happened to one request.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// 200 with `x-upstream: <name>` (from an echo upstream).
    Ok(String),
    /// Any other answer: status and `x-upstream` (`-` when absent).
    Bad(u16, String),
    /// Sent (or connecting) and never answered: a lost request.
    Transport(String),
    /// Handed back unsent by the client library (the connection closed
    /// before the request was written); sent again on a new connection.
    Unsent(String),
    /// An h2 stream above the `last_stream_id` of a GOAWAY with NO_ERROR:
    /// the proxy did not process it and says so (RFC 9113, 6.8).
    Refused(String),
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Ok(up) => write!(f, "200 from {up}"),
            Outcome::Bad(status, up) => write!(f, "{status} (x-upstream {up})"),
            Outcome::Transport(e) => write!(f, "transport error: {e}"),
            Outcome::Unsent(e) => write!(f, "unsent: {e}"),
            Outcome::Refused(e) => write!(f, "refused by a GOAWAY: {e}"),
        }
    }
}

enum Sender {
    H1(http1::SendRequest<Body>),
    H2(http2::SendRequest<Body>),
}

/// One client connection; closed (its task aborted) when dropped.
pub struct Conn {
    sender: Sender,
    task: JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(&format!(": {inner}"));
        source = inner.source();
    }
    s
}

impl Conn {
    async fn open(port: u16, h2: bool) -> Result<Conn, String> {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let io = TokioIo::new(stream);
        if h2 {
            let (sender, conn) = http2::handshake(TokioExecutor::new(), io)
                .await
                .map_err(|e| format!("h2 handshake: {}", chain(&e)))?;
            let task = tokio::spawn(async move { drop(conn.await) });
            Ok(Conn {
                sender: Sender::H2(sender),
                task,
            })
        } else {
            let (sender, conn) = http1::handshake(io)
                .await
                .map_err(|e| format!("h1 handshake: {}", chain(&e)))?;
            let task = tokio::spawn(async move { drop(conn.await) });
            Ok(Conn {
                sender: Sender::H1(sender),
                task,
            })
        }
    }

    /// The connection has not been closed (by either side).
    pub fn is_open(&self) -> bool {
        !self.task.is_finished()
    }

    /// Waits until a request can be sent; `false` when the connection is
    /// closed (or closing), `Err` when it is stuck.
    async fn ready(&mut self) -> Result<bool, String> {
        let ready = async {
            match &mut self.sender {
                Sender::H1(s) => s.ready().await.is_ok(),
                Sender::H2(s) => s.ready().await.is_ok() && !s.is_closed(),
            }
        };
        tokio::time::timeout(STUCK, ready)
            .await
            .map_err(|_| format!("idle connection not ready after {STUCK:?}"))
    }
}

fn get(h2: bool) -> Request<Body> {
    let builder = if h2 {
        Request::get("http://example.com/").version(http::Version::HTTP_2)
    } else {
        Request::get("/").header("host", "example.com")
    };
    builder
        .body(Body::new(Bytes::new()))
        .expect("valid request")
}

async fn exchange(sender: &mut Sender) -> Outcome {
    let run = async {
        let sent = match sender {
            Sender::H1(s) => s.try_send_request(get(false)).await,
            Sender::H2(s) => s.try_send_request(get(true)).await,
        };
        let resp = match sent {
            Ok(r) => r,
            Err(e) if e.message().is_some() => return Outcome::Unsent(chain(e.error())),
            Err(e) => {
                let msg = chain(e.error());
                // h2's error for a stream above a GOAWAY's last stream id.
                if msg.contains("connection error received: not a result of an error") {
                    return Outcome::Refused(msg);
                }
                return Outcome::Transport(format!("request: {msg}"));
            }
        };
        let status = resp.status().as_u16();
        let upstream = resp
            .headers()
            .get("x-upstream")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_string();
        if let Err(e) = resp.into_body().collect().await {
            return Outcome::Transport(format!("body: {}", chain(&e)));
        }
        match (status, upstream) {
            (200, up) if up != "-" => Outcome::Ok(up),
            (status, up) => Outcome::Bad(status, up),
        }
    };
    tokio::time::timeout(STUCK, run)
        .await
        .unwrap_or_else(|_| Outcome::Transport(format!("no response within {STUCK:?}")))
}

/// What the clients of one load saw.
#[derive(Default)]
pub struct Report {
    pub outcomes: BTreeMap<Outcome, usize>,
    /// Connections opened (the first one of each client included).
    pub connects: usize,
    /// The first failures, with the time since the load started.
    pub failures: Vec<String>,
    /// The clients' connections at the end (open or closed by the proxy).
    pub conns: Vec<Conn>,
    /// (While a client runs) its protocol.
    h2: bool,
}

impl Report {
    fn record(&mut self, started: Instant, outcome: Outcome) {
        if !matches!(outcome, Outcome::Ok(_)) && self.failures.len() < 10 {
            let at = started.elapsed().as_millis();
            let proto = if self.h2 { "h2" } else { "HTTP/1.1" };
            self.failures.push(format!("{proto} at {at} ms: {outcome}"));
        }
        *self.outcomes.entry(outcome).or_default() += 1;
    }

    fn merge(&mut self, other: Report) {
        for (o, n) in other.outcomes {
            *self.outcomes.entry(o).or_default() += n;
        }
        self.connects += other.connects;
        self.failures.extend(other.failures);
        self.conns.extend(other.conns);
    }

    /// Requests sent (unsent ones, retried, are not counted).
    pub fn requests(&self) -> usize {
        self.count(|o| !matches!(o, Outcome::Unsent(_)))
    }

    /// Requests sent and lost: no answer, or not a 200 from an upstream.
    pub fn lost(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Transport(_) | Outcome::Bad(..)))
    }

    /// Requests the proxy never processed and said so: handed back unsent
    /// after a close, or refused by a GOAWAY.
    pub fn bounced(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Unsent(_) | Outcome::Refused(_)))
    }

    fn count(&self, pred: impl Fn(&Outcome) -> bool) -> usize {
        let hits = self.outcomes.iter().filter(|(o, _)| pred(o));
        hits.map(|(_, n)| n).sum()
    }

    pub fn served_by(&self, upstream: &str) -> usize {
        self.count(|o| *o == Outcome::Ok(upstream.to_string()))
    }

    pub fn open_connections(&self) -> usize {
        self.conns.iter().filter(|c| c.is_open()).count()
    }

    pub fn summary(&self) -> String {
        let counts: Vec<String> = self
            .outcomes
            .iter()
            .map(|(o, n)| format!("{n} x {o}"))
            .collect();
        format!(
            "{} requests ({}), {} connections opened",
            self.requests(),
            counts.join(", "),
            self.connects
        )
    }
}

/// Shared by a load's clients: the stop flag and the live number of
/// requests answered 200.
#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    ok: AtomicUsize,
}

/// One client: a connection, with one request in flight (HTTP/1.1) or two
/// streams (h2), until `stop` or `deadline`.
async fn client(port: u16, h2: bool, shared: Arc<Shared>, deadline: Instant) -> Report {
    let started = Instant::now();
    let mut rep = Report {
        h2,
        ..Report::default()
    };
    let mut conn: Option<Conn> = None;
    let record = |rep: &mut Report, o: Outcome| {
        if matches!(o, Outcome::Ok(_)) {
            shared.ok.fetch_add(1, Ordering::Relaxed);
        }
        rep.record(started, o);
    };
    while !shared.stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        let usable = match conn.as_mut().map(Conn::ready) {
            Some(ready) => ready.await,
            None => Ok(false),
        };
        match usable {
            Ok(true) => {}
            Ok(false) => match tokio::time::timeout(STUCK, Conn::open(port, h2)).await {
                Ok(Ok(c)) => {
                    rep.connects += 1;
                    conn = Some(c);
                }
                Ok(Err(e)) => {
                    record(&mut rep, Outcome::Transport(e));
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
                Err(_) => {
                    record(&mut rep, Outcome::Transport("connect timed out".into()));
                    continue;
                }
            },
            Err(stuck) => {
                record(&mut rep, Outcome::Transport(stuck));
                conn = None;
                continue;
            }
        }
        let c = conn.as_mut().expect("connected");
        match &mut c.sender {
            Sender::H2(s) => {
                let (mut x, mut y) = (Sender::H2(s.clone()), Sender::H2(s.clone()));
                let (ox, oy) = tokio::join!(exchange(&mut x), exchange(&mut y));
                record(&mut rep, ox);
                record(&mut rep, oy);
            }
            sender @ Sender::H1(_) => {
                let o = exchange(sender).await;
                record(&mut rep, o);
            }
        }
    }
    rep.conns.extend(conn);
    rep
}

/// Running clients; [`Load::stop`] ends them and returns their report.
pub struct Load {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<Report>>,
}

impl Load {
    /// Starts `h1` HTTP/1.1 and `h2` h2c clients on 127.0.0.1:`port`,
    /// each stopping by itself after `limit`.
    pub fn start(port: u16, h1: usize, h2: usize, limit: Duration) -> Load {
        let shared = Arc::new(Shared::default());
        let deadline = Instant::now() + limit;
        let tasks = (0..h1 + h2)
            .map(|i| tokio::spawn(client(port, i >= h1, shared.clone(), deadline)))
            .collect();
        Load { shared, tasks }
    }

    /// Requests answered 200 so far.
    pub fn ok_so_far(&self) -> usize {
        self.shared.ok.load(Ordering::Relaxed)
    }

    /// Stops every client (requests in flight complete) and merges their
    /// reports; their connections stay as they are, in the report.
    pub async fn stop(self) -> Report {
        self.shared.stop.store(true, Ordering::Relaxed);
        let mut all = Report::default();
        for t in self.tasks {
            all.merge(t.await.expect("load client panicked"));
        }
        all
    }
}
