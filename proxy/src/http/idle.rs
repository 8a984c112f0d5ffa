//! Downstream connection idle timeout (`common_http_protocol_options.idle_timeout`): a
//! connection with no bytes moving and no request in flight for that long is closed gracefully.
//! Also the request headers timeout of HTTP/1 connections (`request_headers_timeout`): from the
//! first byte of a request until its headers are in, as Envoy counts it (an idle keep-alive
//! connection waiting for its next request is not timed).

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Shared between the connection's I/O and its idle watchdog.
#[derive(Debug)]
pub struct Activity {
    /// `util::coarse_ms()` when bytes last moved.
    last_ms: AtomicU64,
    pub in_flight: AtomicUsize,
    /// `util::coarse_ms()` when the first byte of the request being read arrived (0: none).
    headers_since: AtomicU64,
    /// The connection speaks HTTP/2 (its streams are not timed here).
    h2: std::sync::atomic::AtomicBool,
    /// No byte has been read yet.
    fresh: std::sync::atomic::AtomicBool,
    /// Wakes the connection's driver when a request's first byte arrives.
    pub headers_started: tokio::sync::Notify,
    /// Set once something asked the connection to drain (overload); wakes its driver.
    closing: std::sync::atomic::AtomicBool,
    pub close_requested: tokio::sync::Notify,
}

impl Activity {
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity {
            last_ms: AtomicU64::new(crate::util::coarse_ms()),
            in_flight: AtomicUsize::new(0),
            headers_since: AtomicU64::new(0),
            h2: Default::default(),
            fresh: std::sync::atomic::AtomicBool::new(true),
            headers_started: tokio::sync::Notify::new(),
            closing: Default::default(),
            close_requested: tokio::sync::Notify::new(),
        })
    }

    /// Asks the connection to drain gracefully; `true` the first time.
    pub fn request_close(&self) -> bool {
        let first = !self.closing.swap(true, Relaxed);
        if first {
            self.close_requested.notify_one();
        }
        first
    }

    /// Marks a request in flight until the guard drops (also when the request is cancelled);
    /// its headers are in.
    pub fn enter(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Relaxed);
        self.headers_since.store(0, Relaxed);
        InFlight(self.clone())
    }

    fn touch(&self) {
        self.last_ms.store(crate::util::coarse_ms(), Relaxed);
    }

    /// Bytes were read: the first bytes of a request start its headers' clock.
    fn read(&self, first_bytes: &[u8]) {
        let now = crate::util::coarse_ms();
        self.last_ms.store(now, Relaxed);
        if self.fresh.swap(false, Relaxed) && first_bytes.starts_with(b"PRI * HTTP/2") {
            self.h2.store(true, Relaxed);
        }
        if self.in_flight.load(Relaxed) == 0 && self.headers_since.load(Relaxed) == 0 {
            self.headers_since.store(now.max(1), Relaxed);
            self.headers_started.notify_one();
        }
    }

    /// How long the request being read has left for its headers; `Some(ZERO)` once it is
    /// over, `None` when no request is being read (or on HTTP/2).
    pub fn headers_remaining(&self, timeout: Duration) -> Option<Duration> {
        let since = self.headers_since.load(Relaxed);
        if since == 0 || self.h2.load(Relaxed) || self.in_flight.load(Relaxed) > 0 {
            return None;
        }
        let spent = Duration::from_millis(crate::util::coarse_ms().saturating_sub(since));
        Some(timeout.saturating_sub(spent))
    }

    /// How long until the connection has been idle for `timeout`; `None` once it has.
    pub fn remaining(&self, timeout: Duration) -> Option<Duration> {
        if self.in_flight.load(Relaxed) > 0 {
            return Some(timeout);
        }
        let idle = Duration::from_millis(
            crate::util::coarse_ms().saturating_sub(self.last_ms.load(Relaxed)),
        );
        timeout.checked_sub(idle).filter(|d| !d.is_zero())
    }
}

pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Relaxed);
        self.0.touch();
    }
}

/// An I/O stream that records when bytes last moved, and on HTTP/2 connections watches the
/// frames for the `http2.*` counters.
pub struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
    /// Until the first bytes are read: the stats a frame watcher would count into.
    stats: Option<Arc<super::HcmStats>>,
    h2: Option<Box<super::h2watch::H2Watch>>,
}

impl<S> Tracked<S> {
    pub fn new(inner: S, activity: Arc<Activity>, stats: Arc<super::HcmStats>) -> Self {
        Tracked {
            inner,
            activity,
            stats: Some(stats),
            h2: None,
        }
    }

    fn wrote(&mut self, n: usize, bufs: &[std::io::IoSlice<'_>]) {
        let Some(w) = self.h2.as_mut() else { return };
        let mut left = n;
        for b in bufs {
            if left == 0 {
                break;
            }
            let take = left.min(b.len());
            w.wrote(&b[..take]);
            left -= take;
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            let this = &mut *self;
            let got = &buf.filled()[before..];
            this.activity.read(got);
            if let Some(stats) = this.stats.take() {
                if got.starts_with(b"PRI * HTTP/2") {
                    this.h2 = Some(Box::new(super::h2watch::H2Watch::new(stats)));
                }
            }
            if let Some(w) = this.h2.as_mut() {
                w.read(got);
            }
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = r {
            if n > 0 {
                self.activity.touch();
                self.wrote(n, &[std::io::IoSlice::new(data)]);
            }
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = r {
            if n > 0 {
                self.activity.touch();
                self.wrote(n, bufs);
            }
        }
        r
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
