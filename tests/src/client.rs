//! Test clients: an HTTP/1.1 / h2-prior-knowledge client with full control
//! over the request, and a raw TCP client for malformed input.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Per-request time limit of the HTTP client.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, Debug)]
pub struct HttpRequest {
    pub method: String,
    pub path: String,
    /// Sent as `Host` (HTTP/1.1) or `:authority` (h2). `None`: no Host at
    /// all on HTTP/1.1 (h2 then uses `127.0.0.1`).
    pub authority: Option<String>,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub h2: bool,
}

impl HttpRequest {
    pub fn get(path: &str) -> HttpRequest {
        HttpRequest {
            method: "GET".to_string(),
            path: path.to_string(),
            authority: Some("example.com".to_string()),
            headers: Vec::new(),
            body: Vec::new(),
            h2: false,
        }
    }
}

#[derive(Clone, Debug)]
pub struct HttpResponse {
    pub status: u16,
    /// Lower-case names in wire order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends one request on a fresh connection to 127.0.0.1:`port`.
pub async fn send(port: u16, req: &HttpRequest) -> Result<HttpResponse, String> {
    send_to(SocketAddr::from(([127, 0, 0, 1], port)), req).await
}

/// Sends one request on a fresh connection to `addr` (e.g. `[::1]:port`).
pub async fn send_to(addr: SocketAddr, req: &HttpRequest) -> Result<HttpResponse, String> {
    match tokio::time::timeout(REQUEST_TIMEOUT, send_inner(addr, req)).await {
        Ok(r) => r,
        Err(_) => Err(format!("timeout after {REQUEST_TIMEOUT:?}")),
    }
}

async fn send_inner(addr: SocketAddr, req: &HttpRequest) -> Result<HttpResponse, String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let io = TokioIo::new(stream);

    let uri = if req.h2 {
        let authority = req.authority.as_deref().unwrap_or("127.0.0.1");
        format!("http://{authority}{}", req.path)
    } else {
        req.path.clone()
    };
    let mut builder = Request::builder().method(req.method.as_str()).uri(uri);
    if req.h2 {
        builder = builder.version(http::Version::HTTP_2);
    } else if let Some(authority) = &req.authority {
        builder = builder.header("host", authority.as_str());
    }
    for (name, value) in &req.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    let request = builder
        .body(Full::new(Bytes::from(req.body.clone())))
        .map_err(|e| format!("build request: {e}"))?;

    let response = if req.h2 {
        let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .map_err(|e| format!("h2 handshake: {e}"))?;
        tokio::spawn(conn);
        sender
            .send_request(request)
            .await
            .map_err(|e| format!("request: {}", error_chain(&e)))?
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| format!("h1 handshake: {e}"))?;
        tokio::spawn(conn);
        sender
            .send_request(request)
            .await
            .map_err(|e| format!("request: {}", error_chain(&e)))?
    };

    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {}", error_chain(&e)))?
        .to_bytes()
        .to_vec();
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

/// `GET path` on the admin port (HTTP/1.1, Host 127.0.0.1).
pub async fn admin_get(port: u16, path: &str) -> Result<HttpResponse, String> {
    admin_request(port, "GET", path).await
}

/// `POST path` on the admin port (HTTP/1.1, Host 127.0.0.1).
pub async fn admin_post(port: u16, path: &str) -> Result<HttpResponse, String> {
    admin_request(port, "POST", path).await
}

async fn admin_request(port: u16, method: &str, path: &str) -> Result<HttpResponse, String> {
    let mut req = HttpRequest::get(path);
    req.method = method.to_string();
    req.authority = Some("127.0.0.1".to_string());
    send(port, &req).await
}

/// What the raw client read.
#[derive(Clone, Debug)]
pub struct RawResponse {
    pub bytes: Vec<u8>,
    /// A complete final response was received (then the client half-closes
    /// and drains the connection, so a proxy's delayed close costs nothing).
    pub complete: bool,
    /// The peer closed the connection (as opposed to the read timing out).
    pub closed: bool,
}

impl RawResponse {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    /// The first line, without CRLF (empty when nothing was received).
    pub fn status_line(&self) -> String {
        let text = self.text();
        text.split("\r\n").next().unwrap_or("").to_string()
    }
}

/// Writes `data` to 127.0.0.1:`port`, then reads until a complete response
/// arrived, the peer closes, or `idle` passes without new bytes.
pub async fn raw(port: u16, data: &[u8], idle: Duration) -> Result<RawResponse, String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    stream
        .write_all(data)
        .await
        .map_err(|e| format!("write: {e}"))?;
    read_response(&mut stream, idle).await
}

/// Reads an HTTP/1 response from `stream` (see [`raw`]).
pub async fn read_response(stream: &mut TcpStream, idle: Duration) -> Result<RawResponse, String> {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        match tokio::time::timeout(idle, stream.read(&mut buf)).await {
            Err(_) => {
                return Ok(RawResponse {
                    bytes,
                    complete: false,
                    closed: false,
                })
            }
            Ok(Ok(0)) | Ok(Err(_)) => {
                let complete = response_complete(&bytes);
                return Ok(RawResponse {
                    bytes,
                    complete,
                    closed: true,
                });
            }
            Ok(Ok(n)) => bytes.extend_from_slice(&buf[..n]),
        }
        if response_complete(&bytes) {
            // Half-close and drain briefly so the peer can finish cleanly.
            let _ = stream.shutdown().await;
            let closed = matches!(tokio::time::timeout(idle, drain(stream)).await, Ok(()));
            return Ok(RawResponse {
                bytes,
                complete: true,
                closed,
            });
        }
    }
}

async fn drain(stream: &mut TcpStream) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = stream.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
}

/// True when `bytes` hold a complete final HTTP/1 response (interim 1xx
/// responses skipped; body delimited by Content-Length or chunked coding;
/// 101, 204 and 304 have no body). A body delimited by close is never
/// complete.
pub fn response_complete(bytes: &[u8]) -> bool {
    let mut rest = bytes;
    loop {
        let Some(end) = rest.windows(4).position(|w| w == b"\r\n\r\n") else {
            return false;
        };
        let head = String::from_utf8_lossy(&rest[..end]).to_ascii_lowercase();
        let body = &rest[end + 4..];
        let status: u16 = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        if (100..200).contains(&status) && status != 101 {
            rest = body;
            continue;
        }
        if status == 101 || status == 204 || status == 304 {
            return true;
        }
        let header = |name: &str| {
            head.split("\r\n")
                .skip(1)
                .filter_map(|l| l.split_once(':'))
                .find(|(n, _)| n.trim() == name)
                .map(|(_, v)| v.trim().to_string())
        };
        if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            return body.ends_with(b"0\r\n\r\n");
        }
        return match header("content-length").and_then(|v| v.parse::<usize>().ok()) {
            Some(len) => body.len() >= len,
            None => false,
        };
    }
}
