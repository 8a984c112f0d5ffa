//! Upstream test servers: an HTTP/1.1 + h2c echo server, a TCP echo server,
//! a "refusing" address and a "blackhole" listener. All bind 127.0.0.1:0.
//!
//! The HTTP echo answers every request with 200 and a JSON description of
//! what it received:
//! `{"method","path","version","authority","headers":{name:[values]},"body","upstream"}`
//! plus the response header `x-upstream: <name>`. Special paths:
//! - `/status/NNN` answers with status NNN (same JSON body);
//! - `/fail/NAME/NNN` answers with status NNN from the upstream named NAME and
//!   200 from the others (one failing endpoint among several);
//! - `/delay/MS` waits MS milliseconds before answering;
//! - `/close` drops the connection (HTTP/1) or resets the stream (h2)
//!   without sending response headers;
//! - `/big/N` answers with an N-byte body of `x`.
//! - `/flaky/N/HOW[/…]` fails the first N attempts of each request (attempts of one request
//!   share its `x-request-id`), across all echo upstreams, then answers normally. HOW is a
//!   status code, `close` (drop without answering), `slowMS` (answer after MS milliseconds)
//!   or `grpcCODE` (200 with `grpc-status: CODE`). Every answer carries `x-echo-attempt`: the
//!   attempt number as the upstreams counted it.
//!
//! Each request header `x-echo-response: NAME=VALUE` makes the echo add the
//! response header `NAME: VALUE` (to test response header manipulation).
//!
//! A request carrying `Upgrade: websocket` is answered with 101 (with
//! `x-echo-path`, `x-echo-connection` and `x-echo-upgrade` telling what the
//! upstream saw) and the upgraded connection then echoes raw bytes back.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A running upstream server; the accept loop stops when this is dropped.
pub struct Upstream {
    pub name: String,
    pub addr: SocketAddr,
    task: Option<JoinHandle<()>>,
}

impl Upstream {
    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn bind_local() -> TcpListener {
    TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0 for a test upstream")
}

/// Starts the HTTP/1.1 + h2c (prior knowledge) echo server.
pub async fn start_http(name: &str) -> Upstream {
    serve_http(name, bind_local().await)
}

/// The HTTP echo server on `[::1]:0`; `None` when the machine has no IPv6
/// loopback.
pub async fn start_http_v6(name: &str) -> Option<Upstream> {
    let listener = TcpListener::bind("[::1]:0").await.ok()?;
    Some(serve_http(name, listener))
}

fn serve_http(name: &str, listener: TcpListener) -> Upstream {
    let upstream: Arc<str> = Arc::from(name);
    accept_loop(name, listener, move |stream| {
        let upstream = upstream.clone();
        async move {
            let service = service_fn(move |req| handle(upstream.clone(), req));
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            // Errors here are expected (e.g. `/close`, client resets).
            let _ = builder
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .await;
        }
    })
}

/// Accepts connections on `listener` until the returned upstream is dropped, serving each with
/// `per_conn` in its own task.
fn accept_loop<F, Fut>(name: &str, listener: TcpListener, per_conn: F) -> Upstream
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let addr = listener.local_addr().expect("local_addr");
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(per_conn(stream));
        }
    });
    Upstream {
        name: name.to_string(),
        addr,
        task: Some(task),
    }
}

static SEEN_LOG: std::sync::Mutex<Vec<serde_json::Value>> = std::sync::Mutex::new(Vec::new());

/// What the HTTP echo upstreams of this process received whose `x-request-id` is `id` (as
/// they answered it: the echo JSON), oldest first.
pub fn seen_with_request_id(id: &str) -> Vec<serde_json::Value> {
    SEEN_LOG
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter(|j| j["headers"]["x-request-id"][0] == id)
        .cloned()
        .collect()
}

/// `/flaky/N/HOW`: this attempt's number (counted per path and `x-request-id`), whether it
/// fails, and how.
fn flaky(req: &Request<Incoming>, path: &str) -> Option<(u32, bool, String)> {
    static SEEN: std::sync::Mutex<BTreeMap<String, u32>> = std::sync::Mutex::new(BTreeMap::new());
    let rest = path.strip_prefix("/flaky/")?;
    let mut parts = rest.split('/');
    let n: u32 = parts.next()?.parse().ok()?;
    let how = parts.next()?.to_string();
    let id = req
        .headers()
        .get("x-request-id")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    let mut seen = SEEN.lock().unwrap_or_else(|p| p.into_inner());
    let count = seen.entry(format!("{path} {id}")).or_insert(0);
    *count += 1;
    Some((*count, *count <= n, how))
}

/// Error returned by the echo service to make hyper drop the connection
/// (HTTP/1) or reset the stream (h2) without answering.
#[derive(Debug)]
struct CloseWithoutAnswer;

impl std::fmt::Display for CloseWithoutAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("close requested by /close")
    }
}

impl std::error::Error for CloseWithoutAnswer {}

type EchoResult = Result<Response<Full<Bytes>>, CloseWithoutAnswer>;

async fn handle(upstream: Arc<str>, mut req: Request<Incoming>) -> EchoResult {
    let path = req
        .uri()
        .path_and_query()
        .map(|pq| pq.as_str().to_string())
        .unwrap_or_else(|| "/".to_string());
    let bare_path = req.uri().path().to_string();

    if bare_path == "/close" {
        return Err(CloseWithoutAnswer);
    }
    let flaky = flaky(&req, &bare_path);
    let mut flaky_status = None;
    let mut flaky_grpc = None;
    if let Some((attempt, fail, how)) = &flaky {
        if *fail {
            if how == "close" {
                return Err(CloseWithoutAnswer);
            } else if let Some(ms) = how.strip_prefix("slow") {
                tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(0))).await;
            } else if let Some(code) = how.strip_prefix("grpc") {
                flaky_grpc = Some(code.to_string());
            } else {
                flaky_status = how
                    .parse::<u16>()
                    .ok()
                    .and_then(|s| StatusCode::from_u16(s).ok());
            }
        }
        let _ = attempt;
    }
    if let Some(ms) = bare_path.strip_prefix("/delay/") {
        let ms: u64 = ms.parse().unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }

    let is_upgrade = req
        .headers()
        .get(http::header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    let on_upgrade = is_upgrade.then(|| hyper::upgrade::on(&mut req));
    let seen = |name: http::header::HeaderName| {
        req.headers()
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_default()
    };
    let seen_connection = seen(http::header::CONNECTION);
    let seen_upgrade = seen(http::header::UPGRADE);

    let method = req.method().to_string();
    let version = format!("{:?}", req.version());
    let authority = req
        .uri()
        .authority()
        .map(|a| a.to_string())
        .or_else(|| {
            req.headers()
                .get(http::header::HOST)
                .map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned())
        })
        .unwrap_or_default();
    let extra_response_headers: Vec<(String, String)> = req
        .headers()
        .get_all("x-echo-response")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split_once('='))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in req.headers() {
        headers
            .entry(name.as_str().to_string())
            .or_default()
            .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
    }
    let body = match req.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => Bytes::new(),
    };

    if let Some(n) = bare_path.strip_prefix("/big/") {
        let n: usize = n.parse().unwrap_or(0);
        let resp = Response::builder()
            .status(StatusCode::OK)
            .header("x-upstream", &*upstream)
            .header("content-type", "text/plain")
            .body(Full::new(Bytes::from(vec![b'x'; n])))
            .expect("valid /big response");
        return Ok(resp);
    }

    let failing = bare_path
        .strip_prefix("/fail/")
        .and_then(|s| s.split_once('/'))
        .filter(|(name, _)| *name == &*upstream)
        .map(|(_, code)| code);
    let status = bare_path
        .strip_prefix("/status/")
        .or(failing)
        .and_then(|s| s.parse::<u16>().ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .or(flaky_status)
        .unwrap_or(StatusCode::OK);

    let json = serde_json::json!({
        "method": method,
        "path": path,
        "version": version,
        "authority": authority,
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
        "upstream": &*upstream,
    });
    let text = serde_json::to_vec(&json).expect("serialise echo JSON");
    SEEN_LOG
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(json.clone());

    if let Some(on_upgrade) = on_upgrade {
        tokio::spawn(async move {
            if let Ok(upgraded) = on_upgrade.await {
                let mut io = TokioIo::new(upgraded);
                let mut buf = [0u8; 4096];
                loop {
                    match io.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if io.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                }
                let _ = io.shutdown().await;
            }
        });
        let resp = Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("connection", "Upgrade")
            .header("upgrade", "websocket")
            .header("x-upstream", &*upstream)
            // What the upstream saw, since a 101 has no body to echo it in.
            .header("x-echo-path", path.as_str())
            .header("x-echo-connection", seen_connection.as_str())
            .header("x-echo-upgrade", seen_upgrade.as_str())
            .body(Full::new(Bytes::new()))
            .expect("valid 101 response");
        return Ok(resp);
    }

    let mut builder = Response::builder()
        .status(status)
        .header("x-upstream", &*upstream);
    if let Some((attempt, _, _)) = &flaky {
        builder = builder.header("x-echo-attempt", attempt.to_string());
    }
    if let Some(code) = &flaky_grpc {
        builder = builder
            .header("grpc-status", code.as_str())
            .header("content-type", "application/grpc");
    }
    if flaky_grpc.is_none() {
        builder = builder.header("content-type", "application/json");
    }
    for (name, value) in &extra_response_headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    let resp = match builder.body(Full::new(Bytes::from(text.clone()))) {
        Ok(resp) => resp,
        // An invalid x-echo-response header: answer without the extras.
        Err(_) => Response::builder()
            .status(status)
            .header("x-upstream", &*upstream)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(text)))
            .expect("valid echo response"),
    };
    Ok(resp)
}

/// Starts a TCP server that echoes bytes back; when the client half-closes,
/// it finishes echoing and then half-closes too.
pub async fn start_tcp_echo(name: &str) -> Upstream {
    start_tcp(name, false).await
}

/// Like [`start_tcp_echo`], but each connection is first greeted with
/// `<name>\n`, so a client can tell which upstream it reached.
pub async fn start_tcp_greeter(name: &str) -> Upstream {
    start_tcp(name, true).await
}

async fn start_tcp(name: &str, greet: bool) -> Upstream {
    let listener = bind_local().await;
    let addr = listener.local_addr().expect("local_addr");
    let name_owned = name.to_string();
    let task = tokio::spawn(async move {
        let name = name_owned;
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let greeting = greet.then(|| format!("{name}\n"));
            tokio::spawn(tcp_echo_conn(stream, greeting));
        }
    });
    Upstream {
        name: name.to_string(),
        addr,
        task: Some(task),
    }
}

async fn tcp_echo_conn(mut stream: TcpStream, greeting: Option<String>) {
    if let Some(greeting) = greeting {
        if stream.write_all(greeting.as_bytes()).await.is_err() {
            return;
        }
    }
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if stream.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
    let _ = stream.shutdown().await;
}

/// A listener that accepts connections and never reads or answers; the
/// connections are held open until the returned value is dropped.
pub async fn start_blackhole(name: &str) -> Upstream {
    let listener = bind_local().await;
    let addr = listener.local_addr().expect("local_addr");
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            if let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        }
    });
    Upstream {
        name: name.to_string(),
        addr,
        task: Some(task),
    }
}

/// An address where connections are refused: a port that was bound and
/// released. (Another process could grab it in between; unlikely in tests.)
pub fn refusing(name: &str) -> Upstream {
    let addr = crate::ports::free_port_addr();
    Upstream {
        name: name.to_string(),
        addr,
        task: None,
    }
}

/// A gRPC health server (h2c): every `grpc.health.v1.Health/Check` is answered SERVING, or
/// NOT_SERVING when `serving` is false, with `grpc-status: 0` in the trailers.
pub async fn start_grpc_health(name: &str, serving: bool) -> Upstream {
    use hyper::body::Frame;
    let listener = bind_local().await;
    accept_loop(name, listener, move |stream| async move {
        let service = service_fn(move |req: Request<Incoming>| async move {
            let ok = req.uri().path() == "/grpc.health.v1.Health/Check";
            // Read the request message before answering.
            let _ = req.into_body().collect().await;
            // HealthCheckResponse { status: SERVING (1) or NOT_SERVING (2) }.
            let msg: [u8; 7] = [0, 0, 0, 0, 2, 0x08, if serving { 1 } else { 2 }];
            let mut trailers = http::HeaderMap::new();
            trailers.insert(
                "grpc-status",
                if ok { "0" } else { "12" }.parse().expect("valid"),
            );
            let frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = vec![
                Ok(Frame::data(Bytes::copy_from_slice(&msg))),
                Ok(Frame::trailers(trailers)),
            ];
            let body = http_body_util::StreamBody::new(tokio_stream::iter(frames));
            Response::builder()
                .header("content-type", "application/grpc")
                .body(body)
        });
        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .serve_connection(TokioIo::new(stream), service)
            .await;
    })
}

/// An h2c server that answers each connection's first request (200, `x-upstream: <name>`) and
/// then sends GOAWAY: the client must take its next request to a new connection.
pub async fn start_h2_goaway(name: &str) -> Upstream {
    let listener = bind_local().await;
    let upstream: Arc<str> = Arc::from(name);
    accept_loop(name, listener, move |stream| {
        let upstream = upstream.clone();
        async move {
            let answered = Arc::new(tokio::sync::Notify::new());
            let notify = answered.clone();
            let service = service_fn(move |_req: Request<Incoming>| {
                let upstream = upstream.clone();
                let notify = notify.clone();
                async move {
                    notify.notify_one();
                    Response::builder()
                        .header("x-upstream", &*upstream)
                        .body(Full::new(Bytes::from_static(b"ok")))
                }
            });
            let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = answered.notified() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        }
    })
}

/// An HTTP/1.1 upstream that answers every request with a 1 GiB body, written as fast as the
/// connection takes it; `sent` counts the body bytes the kernel accepted.
pub async fn start_firehose(name: &str, sent: Arc<std::sync::atomic::AtomicU64>) -> Upstream {
    let listener = bind_local().await;
    accept_loop(name, listener, move |mut stream| {
        let sent = sent.clone();
        async move {
            let mut head = Vec::new();
            let mut buf = [0u8; 4096];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf).await {
                    Ok(n) if n > 0 => head.extend_from_slice(&buf[..n]),
                    _ => return,
                }
            }
            let total: u64 = 1 << 30;
            let hdr = format!("HTTP/1.1 200 OK\r\ncontent-length: {total}\r\n\r\n");
            if stream.write_all(hdr.as_bytes()).await.is_err() {
                return;
            }
            let chunk = vec![b'x'; 65536];
            let mut written = 0u64;
            while written < total {
                match stream.write(&chunk).await {
                    Ok(n) if n > 0 => {
                        written += n as u64;
                        sent.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
                    }
                    _ => return,
                }
            }
        }
    })
}
