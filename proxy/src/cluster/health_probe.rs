//! One active health check of one host: an HTTP or gRPC request (on a kept connection when
//! `reuse_connection`), or a TCP connect with optional send and expected bytes.

use super::health::Verdict;
use super::{ClusterRt, Host};
use crate::config::cluster::health::Check;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A connection a session keeps between checks (`reuse_connection`).
pub(super) enum Conn {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
    Raw(crate::io::Stream),
}

pub(super) async fn check(c: &ClusterRt, host: &Host, conn: &mut Option<Conn>) -> Verdict {
    let Some(hc) = &c.health else {
        return Verdict::Healthy;
    };
    match &hc.cfg.check {
        Check::Http {
            host: authority,
            path,
            method,
            expected,
            retriable,
            http2,
        } => {
            let authority = authority.clone().unwrap_or_else(|| c.cfg.name.clone());
            let scheme = if host.pool.tls().is_some() {
                "https"
            } else {
                "http"
            };
            let mut req = http::Request::builder()
                .method(method.clone())
                .header(http::header::USER_AGENT, "Envoy/HC");
            req = if *http2 {
                req.uri(format!("{scheme}://{authority}{path}"))
            } else {
                req.uri(path.as_str())
                    .header(http::header::HOST, &authority)
            };
            let Ok(req) = req.body(Full::new(Bytes::new())) else {
                return Verdict::Failed;
            };
            let resp = match send(c, host, conn, *http2, req).await {
                Ok(r) => r,
                Err(v) => return v,
            };
            let close = resp
                .headers()
                .get(http::header::CONNECTION)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
            let degraded = resp.headers().contains_key("x-envoy-degraded");
            let status = resp.status().as_u16();
            // The body is read so that the connection can take the next check.
            if resp.into_body().collect().await.is_err() || close {
                *conn = None;
            }
            let within = |r: &[(u16, u16)]| r.iter().any(|&(a, b)| (a..b).contains(&status));
            if within(expected) {
                if degraded {
                    Verdict::Degraded
                } else {
                    Verdict::Healthy
                }
            } else if within(retriable) {
                Verdict::Retriable
            } else {
                Verdict::Failed
            }
        }
        Check::Grpc { service, authority } => {
            let authority = authority.clone().unwrap_or_else(|| c.cfg.name.clone());
            let scheme = if host.pool.tls().is_some() {
                "https"
            } else {
                "http"
            };
            // grpc.health.v1.HealthCheckRequest { service = 1 } in one gRPC frame.
            let mut msg = Vec::with_capacity(service.len() + 8);
            if !service.is_empty() {
                msg.push(0x0a);
                push_varint(&mut msg, service.len() as u64);
                msg.extend_from_slice(service.as_bytes());
            }
            let mut frame = vec![0u8];
            frame.extend_from_slice(&(msg.len() as u32).to_be_bytes());
            frame.extend_from_slice(&msg);
            let req = http::Request::post(format!(
                "{scheme}://{authority}/grpc.health.v1.Health/Check"
            ))
            .header(http::header::CONTENT_TYPE, "application/grpc")
            .header("te", "trailers")
            .header(http::header::USER_AGENT, "Envoy/HC")
            .body(Full::new(Bytes::from(frame)));
            let Ok(req) = req else {
                return Verdict::Failed;
            };
            let resp = match send(c, host, conn, true, req).await {
                Ok(r) => r,
                Err(v) => return v,
            };
            if resp.status() != http::StatusCode::OK {
                return Verdict::Failed;
            }
            let grpc_status =
                |h: &http::HeaderMap| h.get("grpc-status").map(|v| v.as_bytes().to_vec());
            let early = grpc_status(resp.headers());
            let Ok(body) = resp.into_body().collect().await else {
                return Verdict::Network;
            };
            let trailer = body.trailers().and_then(grpc_status);
            if early.or(trailer).as_deref() != Some(b"0") {
                return Verdict::Failed;
            }
            // HealthCheckResponse { status = 1 }: SERVING is 1.
            match body.to_bytes().get(5..) {
                Some([0x08, 1, ..]) => Verdict::Healthy,
                _ => Verdict::Failed,
            }
        }
        Check::Tcp { send, receive } => {
            let mut stream = match conn.take() {
                Some(Conn::Raw(s)) => s,
                _ => match super::connect::open(
                    host.addr,
                    c.cfg.dial(),
                    host.pool.tls().map(|t| &**t),
                    None,
                )
                .await
                {
                    Ok(s) => s,
                    Err(_) => return Verdict::Network,
                },
            };
            if receive.is_empty() {
                // Connecting is the check.
                return Verdict::Healthy;
            }
            if !send.is_empty() && stream.write_all(send).await.is_err() {
                return Verdict::Network;
            }
            let mut got = Vec::new();
            let mut buf = [0u8; 1024];
            loop {
                if contains_in_order(&got, receive) {
                    *conn = Some(Conn::Raw(stream));
                    return Verdict::Healthy;
                }
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return Verdict::Network,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
        }
    }
}

/// Sends a check request over the kept connection, or a new one.
async fn send(
    c: &ClusterRt,
    host: &Host,
    conn: &mut Option<Conn>,
    http2: bool,
    req: http::Request<Full<Bytes>>,
) -> Result<http::Response<hyper::body::Incoming>, Verdict> {
    let usable = match conn {
        Some(Conn::H1(s)) => !http2 && s.ready().await.is_ok(),
        Some(Conn::H2(s)) => http2 && s.ready().await.is_ok(),
        _ => false,
    };
    if !usable {
        let stream =
            super::connect::open(host.addr, c.cfg.dial(), host.pool.tls().map(|t| &**t), None)
                .await
                .map_err(|_| Verdict::Network)?;
        let io = TokioIo::new(stream);
        *conn = Some(if http2 {
            let (s, driver) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
                .handshake(io)
                .await
                .map_err(|_| Verdict::Network)?;
            tokio::spawn(driver);
            Conn::H2(s)
        } else {
            let (s, driver) = hyper::client::conn::http1::handshake(io)
                .await
                .map_err(|_| Verdict::Network)?;
            tokio::spawn(driver);
            Conn::H1(s)
        });
    }
    let sent = match conn {
        Some(Conn::H1(s)) => s.send_request(req).await,
        Some(Conn::H2(s)) => s.send_request(req).await,
        _ => return Err(Verdict::Network),
    };
    sent.map_err(|_| {
        *conn = None;
        Verdict::Network
    })
}

fn push_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Whether each of `parts` appears in `data`, in order (a loose sequence match).
fn contains_in_order(data: &[u8], parts: &[Vec<u8>]) -> bool {
    let mut at = 0;
    for p in parts {
        match data[at..]
            .windows(p.len().max(1))
            .position(|w| w == p.as_slice())
        {
            Some(i) => at += i + p.len(),
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loose_sequence_match() {
        let parts = vec![b"PO".to_vec(), b"NG".to_vec()];
        assert!(contains_in_order(b"xxPOyyNG", &parts));
        assert!(!contains_in_order(b"NGPO", &parts));
        assert!(!contains_in_order(b"PO", &parts));
    }
}
