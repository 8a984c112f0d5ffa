//! Response bodies under a clock: one sent no faster than a rate (the fault filter's response
//! rate limit: a token bucket of bytes, refilled continuously, that starts empty as Envoy's
//! does), and one reset when its upstream stays idle too long (`per_try_idle_timeout`).

use super::reply::Body;
use bytes::Bytes;
use hyper::body::{Body as _, Frame};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

pub struct Throttle {
    inner: Body,
    /// Bytes per second.
    rate: f64,
    tokens: f64,
    at: Instant,
    /// Data read from `inner` but not sent yet.
    held: Option<Bytes>,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl Throttle {
    pub fn new(inner: Body, bytes_per_sec: u64) -> Throttle {
        let rate = bytes_per_sec.max(1) as f64;
        Throttle {
            inner,
            rate,
            tokens: 0.0,
            at: Instant::now(),
            held: None,
            sleep: None,
        }
    }

    pub fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, super::body::BoxError>>> {
        if let Some(s) = &mut self.sleep {
            if s.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.sleep = None;
        }
        let data = match self.held.take() {
            Some(d) => d,
            None => match Pin::new(&mut self.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(f))) => match f.into_data() {
                    Ok(d) => d,
                    Err(f) => return Poll::Ready(Some(Ok(f))),
                },
                other => return other,
            },
        };
        let now = Instant::now();
        self.tokens = (self.tokens + (now - self.at).as_secs_f64() * self.rate).min(self.rate);
        self.at = now;
        let n = (self.tokens as usize).min(data.len());
        if n == 0 {
            self.held = Some(data);
            // Send again once 50 ms worth has accumulated.
            let mut s = Box::pin(tokio::time::sleep(Duration::from_millis(50)));
            let _ = s.as_mut().poll(cx);
            self.sleep = Some(s);
            return Poll::Pending;
        }
        self.tokens -= n as f64;
        let mut data = data;
        let now_part = data.split_to(n);
        if !data.is_empty() {
            self.held = Some(data);
        }
        Poll::Ready(Some(Ok(Frame::data(now_part))))
    }

    pub fn is_end_stream(&self) -> bool {
        self.held.is_none() && self.inner.is_end_stream()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("upstream per-try idle timeout")]
struct IdleTimeout;

/// An upstream response body that fails (resetting the downstream stream) when no frame
/// arrives within the idle timeout.
pub struct Watched {
    inner: Body,
    idle: Duration,
    sleep: Pin<Box<Sleep>>,
    stats: std::sync::Arc<crate::cluster::ClusterStats>,
}

impl Watched {
    pub fn new(
        inner: Body,
        idle: Duration,
        stats: std::sync::Arc<crate::cluster::ClusterStats>,
    ) -> Watched {
        Watched {
            inner,
            idle,
            sleep: Box::pin(tokio::time::sleep(idle)),
            stats,
        }
    }

    pub fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, super::body::BoxError>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(r) => {
                let deadline = Instant::now() + self.idle;
                self.sleep.as_mut().reset(deadline);
                Poll::Ready(r)
            }
            Poll::Pending => {
                if self.sleep.as_mut().poll(cx).is_ready() {
                    self.stats.upstream_rq_per_try_idle_timeout.inc();
                    tracing::debug!("upstream per-try idle timeout; resetting the response");
                    return Poll::Ready(Some(Err(Box::new(IdleTimeout))));
                }
                Poll::Pending
            }
        }
    }

    pub fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    pub fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn stats() -> std::sync::Arc<crate::cluster::ClusterStats> {
        crate::cluster::ClusterStats::for_test("throttle_test")
    }

    #[tokio::test]
    async fn throttled_body_takes_its_time() {
        // 2,000 bytes at 20,000 B/s: about 100 ms.
        let body = Body::full(vec![b'x'; 2000]);
        let started = Instant::now();
        let out = Body::Throttled(Box::new(Throttle::new(body, 20_000)))
            .collect()
            .await
            .map(|c| c.to_bytes().len());
        assert_eq!(out.ok(), Some(2000));
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(80), "{took:?}");
    }

    #[tokio::test]
    async fn watched_body_fails_when_idle() {
        // 1 byte a second: the first byte waits ~50 ms, past the 20 ms idle timeout.
        let slow = Body::Throttled(Box::new(Throttle::new(Body::full("hello"), 1)));
        let s = stats();
        let watched = Body::Watched(Box::new(Watched::new(
            slow,
            Duration::from_millis(20),
            s.clone(),
        )));
        assert!(watched.collect().await.is_err());
        assert_eq!(s.upstream_rq_per_try_idle_timeout.get(), 1);
        // A body that keeps moving is not cut.
        let ok = Body::Watched(Box::new(Watched::new(
            Body::full("hi"),
            Duration::from_millis(20),
            s,
        )));
        assert_eq!(ok.collect().await.map(|c| c.to_bytes().len()).ok(), Some(2));
    }
}
