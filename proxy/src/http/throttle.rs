//! A response body sent no faster than a rate (the fault filter's response rate limit): a
//! token bucket of bytes, refilled continuously, that starts empty (as Envoy's does).

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
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
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
