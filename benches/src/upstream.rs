//! The benchmark's own upstream, in-process on the load generator's runtime: a fixed-body
//! HTTP server (HTTP/1.1 and h2c with prior knowledge on one port) and a TCP echo server.
//! `/…/64k` paths answer 64 KiB, everything else a small body; requests with a gRPC content
//! type get a gRPC unary answer (see `grpc`). Both stop when dropped.

use std::convert::Infallible;
use std::net::SocketAddr;

use anyhow::Result;
use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::grpc;

/// The small response body.
pub const SMALL_BODY: &[u8] = b"hello from the ferry-bench upstream\n";
/// The large response body size (the `body64k` scenario).
pub const BIG_BODY_LEN: usize = 64 * 1024;

pub struct Upstream {
    pub http: SocketAddr,
    pub echo: SocketAddr,
    _stop: watch::Sender<bool>,
}

impl Upstream {
    pub async fn start() -> Result<Upstream> {
        let (stop, stopped) = watch::channel(false);
        let http_listener = TcpListener::bind("127.0.0.1:0").await?;
        let echo_listener = TcpListener::bind("127.0.0.1:0").await?;
        let up = Upstream {
            http: http_listener.local_addr()?,
            echo: echo_listener.local_addr()?,
            _stop: stop,
        };
        let big = Bytes::from(vec![b'x'; BIG_BODY_LEN]);
        tokio::spawn(accept_loop(http_listener, stopped.clone(), move |s| {
            tokio::spawn(serve_http(s, big.clone()));
        }));
        tokio::spawn(accept_loop(echo_listener, stopped, |s| {
            tokio::spawn(echo(s));
        }));
        Ok(up)
    }
}

/// Accepts until the `Upstream` is dropped.
async fn accept_loop(
    listener: TcpListener,
    mut stopped: watch::Receiver<bool>,
    on_conn: impl Fn(TcpStream),
) {
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => {
                    let _ = s.set_nodelay(true);
                    on_conn(s);
                }
                // Out of descriptors or similar: back off briefly rather than spin.
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(5)).await,
            },
            _ = stopped.changed() => return,
        }
    }
}

async fn serve_http(stream: TcpStream, big: Bytes) {
    let service = service_fn(move |req: Request<hyper::body::Incoming>| {
        let plain = if grpc::is_grpc(req.headers()) {
            None
        } else if req.uri().path().ends_with("/64k") {
            Some(big.clone())
        } else {
            Some(Bytes::from_static(SMALL_BODY))
        };
        async move {
            let resp = match plain {
                Some(body) => Response::new(Either::Left(Full::new(body))),
                None => grpc::answer(req).await.map(Either::Right),
            };
            Ok::<_, Infallible>(resp)
        }
    });
    let _ = auto::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

async fn echo(mut stream: TcpStream) {
    let (r, mut w) = stream.split();
    let mut r = BufReader::with_capacity(64 * 1024, r);
    let _ = tokio::io::copy_buf(&mut r, &mut w).await;
    let _ = w.shutdown().await;
}
