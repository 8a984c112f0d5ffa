//! Connection-level helpers for lifecycle tests: whether a listener still
//! accepts, when the proxy closes an idle connection, several requests over
//! one downstream connection, and admin values (stats, /server_info).

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::client::{self, error_chain, REQUEST_TIMEOUT};

/// How a fresh connection to 127.0.0.1:`port` fares: `refused` (connect
/// error), `served <status>` (a `GET /` with `Host: example.com` got an
/// answer), `closed` (accepted, then closed without an answer) or
/// `accepted, no answer` (nothing within 1 s).
pub async fn probe(port: u16) -> String {
    let Ok(connected) = tokio::time::timeout(
        Duration::from_secs(1),
        TcpStream::connect(("127.0.0.1", port)),
    )
    .await
    else {
        return "connect timed out".into();
    };
    let mut stream = match connected {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return "refused".into(),
        Err(e) => return format!("connect error: {:?}", e.kind()),
    };
    let req = b"GET / HTTP/1.1\r\nhost: example.com\r\n\r\n";
    if stream.write_all(req).await.is_err() {
        return "closed".into();
    }
    match client::read_response(&mut stream, Duration::from_secs(1)).await {
        Ok(r) if !r.bytes.is_empty() => {
            let line = r.status_line();
            let status = line.split(' ').nth(1).unwrap_or("?");
            format!("served {status}")
        }
        Ok(r) if r.closed => "closed".into(),
        Ok(_) => "accepted, no answer".into(),
        Err(e) => e,
    }
}

/// Reads (discarding data) until the peer closes `stream` or `limit`
/// passes. Returns how long after the call the close came, `None` if the
/// connection was still open at `limit`.
pub async fn time_until_closed(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        let left = limit.checked_sub(started.elapsed())?;
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

/// Describes a close time against an expected window, for observations:
/// `closed in window`, `closed too early (<ms> ms, before <ms> ms)` or
/// `not closed`.
pub fn close_verdict(closed: Option<Duration>, earliest: Duration) -> String {
    match closed {
        Some(d) if d < earliest => format!(
            "closed too early ({} ms, before {} ms)",
            d.as_millis(),
            earliest.as_millis()
        ),
        Some(_) => "closed in window".into(),
        None => "not closed".into(),
    }
}

fn get(path: &str, h2: bool) -> Request<Full<Bytes>> {
    let builder = if h2 {
        Request::get(format!("http://example.com{path}")).version(http::Version::HTTP_2)
    } else {
        Request::get(path).header("host", "example.com")
    };
    builder
        .body(Full::new(Bytes::new()))
        .expect("valid request")
}

async fn status_of(
    resp: Result<http::Response<hyper::body::Incoming>, hyper::Error>,
) -> Result<u16, String> {
    let resp = resp.map_err(|e| format!("request: {}", error_chain(&e)))?;
    let status = resp.status().as_u16();
    resp.into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {}", error_chain(&e)))?;
    Ok(status)
}

/// Sends `GET path` for each path, one after the other, over one HTTP/1.1
/// keep-alive connection to 127.0.0.1:`port`. Returns each status (or the
/// error, after which the rest are not sent).
pub async fn h1_sequential(port: u16, paths: &[&str]) -> Vec<Result<u16, String>> {
    let run = async {
        let mut out = Vec::new();
        let stream = match TcpStream::connect(("127.0.0.1", port)).await {
            Ok(s) => s,
            Err(e) => return vec![Err(format!("connect: {e}"))],
        };
        let (mut sender, conn) =
            match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await {
                Ok(x) => x,
                Err(e) => return vec![Err(format!("h1 handshake: {e}"))],
            };
        tokio::spawn(conn);
        for path in paths {
            if let Err(e) = sender.ready().await {
                out.push(Err(format!("connection not reusable: {}", error_chain(&e))));
                break;
            }
            let r = status_of(sender.send_request(get(path, false)).await).await;
            let failed = r.is_err();
            out.push(r);
            if failed {
                break;
            }
        }
        out
    };
    tokio::time::timeout(REQUEST_TIMEOUT, run)
        .await
        .unwrap_or_else(|_| vec![Err(format!("timeout after {REQUEST_TIMEOUT:?}"))])
}

/// Sends `GET path` for each path concurrently, as streams of one h2c
/// (prior knowledge) connection to 127.0.0.1:`port`. Returns the statuses.
pub async fn h2_concurrent(port: u16, paths: &[&str]) -> Vec<Result<u16, String>> {
    let run = async {
        let stream = match TcpStream::connect(("127.0.0.1", port)).await {
            Ok(s) => s,
            Err(e) => return vec![Err(format!("connect: {e}"))],
        };
        let io = TokioIo::new(stream);
        let (sender, conn) =
            match hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await {
                Ok(x) => x,
                Err(e) => return vec![Err(format!("h2 handshake: {e}"))],
            };
        tokio::spawn(conn);
        let requests = paths.iter().map(|path| {
            let mut sender = sender.clone();
            let req = get(path, true);
            async move { status_of(sender.send_request(req).await).await }
        });
        futures_join_all(requests).await
    };
    tokio::time::timeout(REQUEST_TIMEOUT, run)
        .await
        .unwrap_or_else(|_| vec![Err(format!("timeout after {REQUEST_TIMEOUT:?}"))])
}

/// Runs the futures concurrently (as tasks) and returns their outputs in
/// order.
async fn futures_join_all<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("request task panicked"));
    }
    out
}

/// The value of stat `name` in the admin `/stats` text output, or
/// `<absent>`.
pub async fn stat(admin: u16, name: &str) -> String {
    let text = client::admin_get(admin, "/stats")
        .await
        .map(|r| r.text())
        .unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
        .unwrap_or("<absent>")
        .to_string()
}

/// `GET /server_info` as JSON (`Null` when unavailable).
pub async fn server_info(admin: u16) -> serde_json::Value {
    client::admin_get(admin, "/server_info")
        .await
        .ok()
        .and_then(|r| serde_json::from_slice(&r.body).ok())
        .unwrap_or(serde_json::Value::Null)
}
