//! The downstream request body, with the frames a filter read ahead of the router (ext_authz's
//! `with_request_body`) put back in front of the rest.

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

pub struct DownBody {
    ahead: VecDeque<Frame<Bytes>>,
    ahead_len: u64,
    rest: Option<Incoming>,
}

/// What [`DownBody::read_ahead`] found.
pub struct ReadAhead {
    /// The first bytes of the body, at most the limit.
    pub data: Bytes,
    /// Bytes received so far (may pass the limit).
    pub received: u64,
    /// The whole body was read.
    pub complete: bool,
}

impl DownBody {
    pub fn new(b: Incoming) -> DownBody {
        DownBody {
            ahead: VecDeque::new(),
            ahead_len: 0,
            rest: (!b.is_end_stream()).then_some(b),
        }
    }

    /// Reads the body until it ends or more than `max` bytes have come, keeping every frame to
    /// be sent on; the first `max` bytes are returned.
    pub async fn read_ahead(&mut self, max: usize) -> Result<ReadAhead, hyper::Error> {
        while self.ahead_len <= max as u64 {
            let Some(rest) = self.rest.as_mut() else {
                break;
            };
            match rest.frame().await {
                Some(Ok(f)) => {
                    if let Some(d) = f.data_ref() {
                        self.ahead_len += d.len() as u64;
                    }
                    self.ahead.push_back(f);
                    if self.rest.as_ref().is_some_and(|r| r.is_end_stream()) {
                        self.rest = None;
                    }
                }
                Some(Err(e)) => return Err(e),
                None => self.rest = None,
            }
        }
        let mut data = BytesMut::new();
        for f in &self.ahead {
            if let Some(d) = f.data_ref() {
                let room = max.saturating_sub(data.len());
                data.extend_from_slice(&d[..d.len().min(room)]);
            }
        }
        Ok(ReadAhead {
            data: data.freeze(),
            received: self.ahead_len,
            complete: self.rest.is_none(),
        })
    }
}

impl Body for DownBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        if let Some(f) = this.ahead.pop_front() {
            return Poll::Ready(Some(Ok(f)));
        }
        match this.rest.as_mut() {
            Some(r) => Pin::new(r).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ahead.is_empty() && self.rest.as_ref().is_none_or(|r| r.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        let ahead: u64 = self
            .ahead
            .iter()
            .filter_map(|f| f.data_ref())
            .map(|d| d.len() as u64)
            .sum();
        match &self.rest {
            None => SizeHint::with_exact(ahead),
            Some(r) => {
                let h = r.size_hint();
                let mut out = SizeHint::new();
                out.set_lower(h.lower() + ahead);
                if let Some(u) = h.upper() {
                    out.set_upper(u + ahead);
                }
                out
            }
        }
    }
}
