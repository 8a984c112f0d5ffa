//! Access logging of HTTP streams: the stream's info gathered while it is handled (what the
//! connection manager saw, what the router and the upstream exchange report through response
//! extensions), then one line per access log when the response body has gone downstream, or
//! when the stream is dropped first (the client went away: `DC`).

use super::reply::Body;
use super::ConnCtx;
use crate::access_log::{log_all, AccessLogs};
use crate::stream_info::{Downstream, Flag, LogType, RequestInfo, StreamInfo, Upstream};
use bytes::Bytes;
use http::{HeaderMap, Response, Version};
use hyper::body::{Body as _, Frame};
use std::borrow::Cow;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

/// What a local reply says of itself: its response flag and details.
#[derive(Debug, Clone)]
pub struct Tag {
    pub flag: Option<Flag>,
    pub details: Cow<'static, str>,
}

/// Marks a response made here with its flag and details.
pub fn tag(
    mut r: Response<Body>,
    flag: Option<Flag>,
    details: impl Into<Cow<'static, str>>,
) -> Response<Body> {
    r.extensions_mut().insert(Tag {
        flag,
        details: details.into(),
    });
    r
}

/// The request body bytes that reached the upstream, and when the body was complete.
#[derive(Debug, Default)]
pub struct Meter {
    pub bytes: AtomicU64,
    pub done: OnceLock<Instant>,
}

/// What the forwarding step reports for the log.
#[derive(Debug, Default, Clone)]
pub struct UpstreamReport {
    pub upstream: Upstream,
    pub attempts: u32,
    pub retries_exhausted: bool,
    pub meter: Option<Arc<Meter>>,
}

/// The request as the connection manager passed it on (after its own header changes).
#[derive(Debug, Default)]
pub struct Seen {
    pub headers: Option<HeaderMap>,
    pub route: Option<Arc<str>>,
    pub downstream_peer: Option<Box<crate::istio::Workload>>,
    pub upstream_peer: Option<Box<crate::istio::Workload>>,
    pub span: Option<Box<crate::trace::Span>>,
}

/// A stream being logged: logs at its end even if it never gets a response.
pub struct Pending {
    info: Option<Box<StreamInfo>>,
    logs: AccessLogs,
    istio: Option<Arc<crate::istio::stats::IstioStats>>,
}

impl Pending {
    pub fn start(ctx: &ConnCtx, req: &http::Request<hyper::body::Incoming>) -> Pending {
        let mut info = Box::new(StreamInfo::new(
            LogType::DownstreamEnd,
            Downstream {
                local: ctx.local,
                remote: ctx.remote,
                peer: ctx.peer.clone().map(Arc::new),
                connection_id: ctx.connection_id,
                inbound: ctx.inbound,
            },
        ));
        info.protocol = Some(match req.version() {
            Version::HTTP_10 => "HTTP/1.0",
            Version::HTTP_2 => "HTTP/2",
            _ => "HTTP/1.1",
        });
        info.request = Some(RequestInfo::of(req, if ctx.tls { "https" } else { "http" }));
        info.grpc = super::reply::GrpcReply::of(req.headers()).is_grpc();
        if req.body().is_end_stream() {
            info.request_done = Some(Instant::now());
        }
        Pending {
            info: Some(info),
            logs: ctx.hcm.access_logs.clone(),
            istio: ctx.hcm.istio_stats.clone(),
        }
    }

    /// Takes in what handling the request found, and makes the response body log at its end.
    pub fn respond(&mut self, seen: Seen, mut resp: Response<Body>) -> Response<Body> {
        let Some(mut info) = self.info.take() else {
            return resp;
        };
        if let (Some(h), Some(r)) = (seen.headers, info.request.as_mut()) {
            r.headers = h;
        }
        info.route_name = seen.route;
        info.downstream_peer = seen.downstream_peer;
        info.upstream_peer = seen.upstream_peer;
        info.span = seen.span;
        let mut meter = None;
        let tag = resp.extensions_mut().remove::<Tag>();
        if let Some(rep) = resp.extensions_mut().remove::<UpstreamReport>() {
            info.upstream = rep.upstream;
            info.attempts = rep.attempts;
            if rep.retries_exhausted {
                info.flag(Flag::UpstreamRetryLimitExceeded);
            }
            meter = rep.meter;
            if tag.is_none() {
                info.details = Some(Cow::Borrowed("via_upstream"));
            }
        }
        if let Some(t) = tag {
            if let Some(f) = t.flag {
                info.flag(f);
            }
            info.details = Some(t.details);
        }
        info.code = resp.status().as_u16();
        info.response_headers = Some(resp.headers().clone());
        let logs = self.logs.clone();
        let (parts, body) = resp.into_parts();
        Response::from_parts(
            parts,
            Body::Logged(Box::new(Logged {
                inner: body,
                info: Some(info),
                logs,
                istio: self.istio.clone(),
                meter,
            })),
        )
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(mut info) = self.info.take() {
            info.flag(Flag::DownstreamConnectionTermination);
            info.details = Some(Cow::Borrowed("downstream_remote_disconnect"));
            info.ended = Some(Instant::now());
            log_all(&self.logs, &info);
            if let Some(i) = &self.istio {
                i.record(&info);
            }
        }
    }
}

/// The end of a logged stream: its span, if it has one.
fn end_span(info: &mut StreamInfo) {
    if let Some(s) = info.span.take() {
        crate::trace::finish(&s, info);
    }
}

/// A response body that counts what it sends and logs the stream when it ends.
pub struct Logged {
    inner: Body,
    info: Option<Box<StreamInfo>>,
    logs: AccessLogs,
    istio: Option<Arc<crate::istio::stats::IstioStats>>,
    meter: Option<Arc<Meter>>,
}

impl Logged {
    pub fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, super::body::BoxError>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        match &r {
            Poll::Ready(Some(Ok(f))) => {
                if let Some(info) = self.info.as_mut() {
                    if let Some(d) = f.data_ref() {
                        info.bytes_sent += d.len() as u64;
                    } else if let Some(t) = f.trailers_ref() {
                        info.response_trailers = Some(t.clone());
                    }
                }
                if self.inner.is_end_stream() {
                    self.finish();
                }
            }
            Poll::Ready(None) => self.finish(),
            Poll::Ready(Some(Err(_))) => {
                if let Some(info) = self.info.as_mut() {
                    info.flag(Flag::UpstreamRemoteReset);
                }
                self.finish();
            }
            Poll::Pending => {}
        }
        r
    }

    pub fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    pub fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }

    fn finish(&mut self) {
        if let Some(mut info) = self.info.take() {
            info.ended = Some(Instant::now());
            if let Some(m) = &self.meter {
                info.bytes_received = m.bytes.load(Relaxed);
                if let Some(at) = m.done.get() {
                    info.request_done = Some(*at);
                }
            }
            log_all(&self.logs, &info);
            if let Some(i) = &self.istio {
                i.record(&info);
            }
            end_span(&mut info);
        }
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        // A body never polled to its end (HEAD, an empty body, or the client went away).
        if let Some(info) = self.info.as_mut() {
            if !self.inner.is_end_stream() {
                info.flag(Flag::DownstreamConnectionTermination);
            }
        }
        self.finish();
    }
}
