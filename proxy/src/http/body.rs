//! The upstream request body: the downstream body streamed as it is, or — when the request may
//! be retried or mirrored — streamed while a copy of what passed is kept (up to the buffer
//! limit) so that another attempt can send it again.

use bytes::Bytes;
use http::HeaderMap;
use hyper::body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What an upstream request carries.
pub enum ReqBody {
    /// The downstream body, as it arrives.
    Stream(super::down::DownBody),
    /// The downstream body with a copy kept for another attempt.
    Replay(ReplayBody),
    /// A mirrored copy of a [`ReplayBody`], as it arrives.
    Follow(FollowBody),
    /// Its gRPC messages counted (`grpc_stats`).
    Counted(Box<ReqBody>, Arc<Mutex<super::grpc_stats::Frames>>),
    /// Its bytes counted (access logs).
    Metered(Box<ReqBody>, Arc<super::logged::Meter>),
    Full(Option<Bytes>),
}

impl ReqBody {
    pub fn empty() -> ReqBody {
        ReqBody::Full(None)
    }
}

impl Body for ReqBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            ReqBody::Stream(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
            ReqBody::Replay(b) => b.poll(cx),
            ReqBody::Follow(b) => b.poll(cx),
            ReqBody::Counted(b, frames) => {
                let r = Pin::new(&mut **b).poll_frame(cx);
                if let Poll::Ready(Some(Ok(f))) = &r {
                    if let (Some(d), Ok(mut fr)) = (f.data_ref(), frames.lock()) {
                        fr.feed_bytes(d);
                    }
                }
                r
            }
            ReqBody::Metered(b, m) => {
                let r = Pin::new(&mut **b).poll_frame(cx);
                match &r {
                    Poll::Ready(Some(Ok(f))) => {
                        if let Some(d) = f.data_ref() {
                            m.bytes
                                .fetch_add(d.len() as u64, std::sync::atomic::Ordering::Relaxed);
                        }
                        if b.is_end_stream() {
                            let _ = m.done.set(std::time::Instant::now());
                        }
                    }
                    Poll::Ready(None) => {
                        let _ = m.done.set(std::time::Instant::now());
                    }
                    _ => {}
                }
                r
            }
            ReqBody::Full(b) => Poll::Ready(b.take().map(|d| Ok(Frame::data(d)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ReqBody::Stream(b) => b.is_end_stream(),
            ReqBody::Replay(b) => b.is_end_stream(),
            ReqBody::Follow(_) => false,
            ReqBody::Counted(b, _) | ReqBody::Metered(b, _) => b.is_end_stream(),
            ReqBody::Full(b) => b.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ReqBody::Stream(b) => b.size_hint(),
            ReqBody::Replay(b) | ReqBody::Follow(FollowBody(b, _)) => b.size_hint(),
            ReqBody::Counted(b, _) | ReqBody::Metered(b, _) => b.size_hint(),
            ReqBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the request body was handed to a later attempt")]
struct Superseded;

struct Shared {
    /// The downstream body; `None` once it has ended.
    src: Option<super::down::DownBody>,
    /// Every data frame read so far, while they fit in `limit`.
    kept: Vec<Bytes>,
    kept_len: usize,
    limit: usize,
    /// More than `limit` bytes passed: the body cannot be sent again.
    overflowed: bool,
    trailers: Option<HeaderMap>,
    /// Only the newest attempt's body reads; older ones fail.
    generation: u32,
    size_hint: SizeHint,
    /// Mirrors waiting for the next frame.
    waiting: Vec<std::task::Waker>,
}

/// One attempt's view of a downstream body that several attempts may send.
pub struct ReplayBody {
    shared: Arc<Mutex<Shared>>,
    generation: u32,
    /// The next kept frame this attempt sends before reading on.
    at: usize,
    trailers_sent: bool,
}

impl ReplayBody {
    /// The first attempt's body; up to `limit` bytes of it are kept.
    pub fn new(src: super::down::DownBody, limit: usize) -> ReplayBody {
        let size_hint = src.size_hint();
        let src = (!src.is_end_stream()).then_some(src);
        ReplayBody {
            shared: Arc::new(Mutex::new(Shared {
                src,
                kept: Vec::new(),
                kept_len: 0,
                limit,
                overflowed: false,
                trailers: None,
                generation: 0,
                size_hint,
                waiting: Vec::new(),
            })),
            generation: 0,
            at: 0,
            trailers_sent: false,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A handle that makes the bodies of later attempts.
    pub fn replay(&self) -> Replay {
        Replay(self.shared.clone())
    }
}

/// Makes the bodies of later attempts of a [`ReplayBody`].
#[derive(Clone)]
pub struct Replay(Arc<Mutex<Shared>>);

impl Replay {
    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A body for the next attempt, which sends what was read so far and then reads on; the
    /// earlier attempts' bodies stop. `None` when the body outgrew the buffer limit.
    pub fn again(&self) -> Option<ReplayBody> {
        let mut s = self.lock();
        if s.overflowed {
            return None;
        }
        s.generation += 1;
        Some(ReplayBody {
            shared: self.0.clone(),
            generation: s.generation,
            at: 0,
            trailers_sent: false,
        })
    }

    /// Whether the downstream body has been read to its end.
    pub fn finished(&self) -> bool {
        self.lock().src.is_none()
    }

    /// Whether more than the buffer limit has been read (no further attempt is possible).
    pub fn overflowed(&self) -> bool {
        self.lock().overflowed
    }

    /// The whole body when it has been read entirely and kept (for a mirrored copy).
    pub fn complete(&self) -> Option<(Vec<Bytes>, Option<HeaderMap>)> {
        let s = self.lock();
        (s.src.is_none() && !s.overflowed).then(|| (s.kept.clone(), s.trailers.clone()))
    }
}

impl ReplayBody {
    /// A mirror of this body: the frames the attempts read, as they read them.
    pub fn follow(&self) -> FollowBody {
        FollowBody(
            ReplayBody {
                shared: self.shared.clone(),
                generation: 0,
                at: 0,
                trailers_sent: false,
            },
            (),
        )
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let shared = self.shared.clone();
        let mut s = shared.lock().unwrap_or_else(|p| p.into_inner());
        let r = self.poll_locked(&mut s, cx);
        if r.is_ready() {
            for w in s.waiting.drain(..) {
                w.wake();
            }
        }
        r
    }

    fn poll_locked(
        &mut self,
        s: &mut Shared,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if s.generation != self.generation {
            return Poll::Ready(Some(Err(Box::new(Superseded))));
        }
        if let Some(b) = s.kept.get(self.at) {
            self.at += 1;
            return Poll::Ready(Some(Ok(Frame::data(b.clone()))));
        }
        let Some(src) = s.src.as_mut() else {
            if self.trailers_sent {
                return Poll::Ready(None);
            }
            self.trailers_sent = true;
            return Poll::Ready(s.trailers.clone().map(|t| Ok(Frame::trailers(t))));
        };
        match Pin::new(src).poll_frame(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                s.src = None;
                self.trailers_sent = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                s.src = None;
                s.overflowed = true;
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    if !s.overflowed && s.kept_len + d.len() <= s.limit {
                        s.kept_len += d.len();
                        s.kept.push(d.clone());
                        self.at = s.kept.len();
                    } else if !s.overflowed {
                        s.overflowed = true;
                        s.kept = Vec::new();
                        s.kept_len = 0;
                        self.at = 0;
                    }
                } else if let Some(t) = frame.trailers_ref() {
                    s.trailers = Some(t.clone());
                    self.trailers_sent = true;
                }
                if s.src.as_ref().is_some_and(Body::is_end_stream) {
                    s.src = None;
                    if s.trailers.is_none() {
                        self.trailers_sent = true;
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        let s = self.lock();
        s.generation == self.generation
            && s.src.is_none()
            && self.at >= s.kept.len()
            && (self.trailers_sent || s.trailers.is_none())
    }

    fn size_hint(&self) -> SizeHint {
        self.lock().size_hint
    }
}

/// A mirror's view of a [`ReplayBody`]: each frame once an attempt has read it; it fails when
/// the body outgrew the buffer limit.
pub struct FollowBody(ReplayBody, ());

impl FollowBody {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let b = &mut self.0;
        let mut s = b.shared.lock().unwrap_or_else(|p| p.into_inner());
        if s.overflowed {
            return Poll::Ready(Some(Err(Box::new(Superseded))));
        }
        if let Some(d) = s.kept.get(b.at) {
            b.at += 1;
            return Poll::Ready(Some(Ok(Frame::data(d.clone()))));
        }
        if s.src.is_none() {
            if b.trailers_sent {
                return Poll::Ready(None);
            }
            b.trailers_sent = true;
            return Poll::Ready(s.trailers.clone().map(|t| Ok(Frame::trailers(t))));
        }
        s.waiting.push(cx.waker().clone());
        Poll::Pending
    }
}
