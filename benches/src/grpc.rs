//! gRPC unary over h2c, both ends: the upstream's answer (one length-prefixed message back,
//! `grpc-status` in the trailers) and the load generator's client — tonic's `Grpc` with a
//! pass-through codec over `bytes` (no protobuf, no codegen), sending on a hyper h2 connection
//! of its own. tonic's `Channel` is not used: it puts a buffer task and a channel hop in front
//! of every call, load-generator CPU that the upstream shares.
//!
//! A call succeeds only with HTTP 200, a gRPC content type, exactly one complete message and
//! `grpc-status: 0` in the trailers (tonic rejects a missing or non-zero status, a truncated
//! message and a trailers-only answer; the HTTP status and content type are checked here).

use std::convert::Infallible;
use std::future::{ready, Future, Ready};
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use anyhow::{anyhow, Result};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::uri::PathAndQuery;
use http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode, Uri};
use http_body_util::combinators::WithTrailers;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::Status;

/// The service's path prefix (the proxies route it to their h2 cluster).
pub const SERVICE: &str = "/ferry.bench.Bench/";
/// The one method the upstream serves (under `SERVICE`).
pub const METHOD: &str = "/ferry.bench.Bench/Unary";
/// The request message the load generator sends.
pub const REQUEST: &[u8] = b"ferry-bench unary request";
/// The reply message the upstream sends back.
pub const REPLY: &[u8] = b"hello from the ferry-bench upstream (gRPC)";

const CONTENT_TYPE: &str = "application/grpc";
/// gRPC status codes the upstream answers with.
const OK: u8 = 0;
const INTERNAL: u8 = 13;
const UNIMPLEMENTED: u8 = 12;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Whether a request is gRPC (by its content type).
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(CONTENT_TYPE))
}

/// One uncompressed length-prefixed message.
pub fn frame(msg: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(5 + msg.len());
    b.put_u8(0);
    b.put_u32(msg.len() as u32);
    b.put_slice(msg);
    b.freeze()
}

/// The message of a body holding exactly one uncompressed length-prefixed message.
pub fn unframe(mut body: &[u8]) -> Option<&[u8]> {
    if body.len() < 5 || body[0] != 0 {
        return None;
    }
    body.advance(1);
    let len = body.get_u32() as usize;
    (body.len() == len).then_some(body)
}

/// A response body: data, then trailers (if any).
pub type GrpcBody = WithTrailers<Full<Bytes>, Ready<Option<Result<HeaderMap, Infallible>>>>;

/// `grpc-status: code` as a header map.
pub fn status_map(code: u8) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("grpc-status", HeaderValue::from(u16::from(code)));
    h
}

/// A gRPC-shaped response: `status`, content type `application/grpc`, `body`, `trailers`.
pub fn response(
    status: StatusCode,
    body: Bytes,
    trailers: Option<HeaderMap>,
) -> Response<GrpcBody> {
    let mut resp = Response::new(Full::new(body).with_trailers(ready(trailers.map(Ok))));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    resp
}

/// A trailers-only answer: HTTP 200, `grpc-status` in the headers, no message.
fn status_only(code: u8) -> Response<GrpcBody> {
    let mut resp = response(StatusCode::OK, Bytes::new(), None);
    resp.headers_mut().extend(status_map(code));
    resp
}

/// The upstream's answer to a gRPC request: `REPLY` for `METHOD` with one well-formed
/// message (at most 64 KiB), else a trailers-only error status.
pub async fn answer(req: Request<Incoming>) -> Response<GrpcBody> {
    if req.uri().path() != METHOD {
        return status_only(UNIMPLEMENTED);
    }
    let body = match Limited::new(req.into_body(), 64 * 1024).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return status_only(INTERNAL),
    };
    if unframe(&body).is_none() {
        return status_only(INTERNAL);
    }
    response(StatusCode::OK, frame(REPLY), Some(status_map(OK)))
}

/// Messages are raw bytes: encoding copies them in, decoding takes them out.
#[derive(Clone, Copy, Default)]
pub struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }
    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// tonic's transport: one h2c connection; answers other than HTTP 200 with a gRPC content
/// type are errors.
#[derive(Clone)]
pub struct H2(http2::SendRequest<tonic::body::Body>);

impl H2 {
    pub fn is_closed(&self) -> bool {
        self.0.is_closed()
    }
}

type CallFuture = Pin<Box<dyn Future<Output = Result<Response<Incoming>, BoxError>> + Send>>;

impl tonic::codegen::Service<Request<tonic::body::Body>> for H2 {
    type Response = Response<Incoming>;
    type Error = BoxError;
    type Future = CallFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.0.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<tonic::body::Body>) -> CallFuture {
        let sent = self.0.send_request(req);
        Box::pin(async move {
            let resp = sent.await?;
            if resp.status() != StatusCode::OK {
                return Err(format!("HTTP status {}", resp.status()).into());
            }
            if !is_grpc(resp.headers()) {
                return Err("not a gRPC content type".into());
            }
            Ok(resp)
        })
    }
}

pub type Client = tonic::client::Grpc<H2>;

/// Opens an h2c connection to `addr` (flow-control windows as the h2 load uses).
pub async fn connect(addr: SocketAddr) -> Result<(Client, H2)> {
    let s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    let (send, conn) = http2::Builder::new(TokioExecutor::new())
        .initial_stream_window_size(1 << 20)
        .initial_connection_window_size(16 << 20)
        .handshake(TokioIo::new(s))
        .await?;
    tokio::spawn(conn);
    let h2 = H2(send);
    let origin: Uri = format!("http://{addr}").parse()?;
    Ok((tonic::client::Grpc::with_origin(h2.clone(), origin), h2))
}

/// One unary call of `path` with `REQUEST`; returns the reply message's size.
pub async fn call(client: &mut Client, path: &PathAndQuery) -> Result<u64> {
    client.ready().await.map_err(|e| anyhow!("{e}"))?;
    let req = tonic::Request::new(Bytes::from_static(REQUEST));
    let reply = client.unary(req, path.clone(), RawCodec).await?;
    Ok(reply.into_inner().len() as u64)
}
