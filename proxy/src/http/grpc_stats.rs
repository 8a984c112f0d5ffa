//! gRPC call stats (`envoy.filters.http.grpc_stats`): request and response messages counted
//! from their 5-byte frame headers (a frame that is not gRPC stops the count), the call
//! charged by its `grpc-status` (trailers, else the response headers; a call without one
//! counts only its messages), as Envoy does.

use crate::stats::{registry, Scope};
use bytes::Bytes;
use http::HeaderMap;

/// Counts gRPC messages in a byte stream.
#[derive(Debug, Default)]
pub struct Frames {
    /// Bytes of the current frame header seen, and the frame's length once known.
    header: Vec<u8>,
    left: u64,
    pub count: u64,
    /// A frame header with an unknown flag: not gRPC framing, nothing more is counted.
    invalid: bool,
}

impl Frames {
    pub fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() && !self.invalid {
            if self.left > 0 {
                let n = (self.left as usize).min(data.len());
                self.left -= n as u64;
                data = &data[n..];
                continue;
            }
            let need = 5 - self.header.len();
            let n = need.min(data.len());
            self.header.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.header.len() == 5 {
                if self.header[0] > 1 {
                    self.invalid = true;
                    return;
                }
                self.count += 1;
                let len = u32::from_be_bytes([
                    self.header[1],
                    self.header[2],
                    self.header[3],
                    self.header[4],
                ]);
                self.left = u64::from(len);
                self.header.clear();
            }
        }
    }

    pub fn feed_bytes(&mut self, b: &Bytes) {
        self.feed(b)
    }
}

/// One call's stats, charged once.
#[derive(Debug)]
pub struct Call {
    pub cluster: String,
    /// `grpc.` or `grpc.<service>.<method>.`
    pub prefix: String,
    pub request: std::sync::Arc<std::sync::Mutex<Frames>>,
    pub response: Frames,
    /// The status in the response headers, used when no trailers follow.
    pub header_status: Option<HeaderMap>,
    charged: bool,
}

impl Call {
    pub fn new(cluster: String, prefix: String) -> Call {
        Call {
            cluster,
            prefix,
            request: Default::default(),
            response: Frames::default(),
            header_status: None,
            charged: false,
        }
    }

    /// Charges the call with the status in `h` (trailers, or trailers-only headers).
    pub fn charge(&mut self, h: Option<&HeaderMap>) {
        if self.charged {
            return;
        }
        self.charged = true;
        let status = |h: &HeaderMap| {
            h.get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        let code = h
            .and_then(status)
            .or_else(|| self.header_status.as_ref().and_then(status));
        let r = registry();
        let c = |s: &str| {
            r.counter(
                Scope::Cluster(&self.cluster),
                &format!("{}{s}", self.prefix),
            )
        };
        if let Some(code) = code {
            c(if code == 0 { "success" } else { "failure" }).inc();
            c(&code.to_string()).inc();
            c("total").inc();
        }
        let req = self.request.lock().map(|f| f.count).unwrap_or(0);
        if req > 0 {
            c("request_message_count").add(req);
        }
        if self.response.count > 0 {
            c("response_message_count").add(self.response.count);
        }
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        self.charge(None);
    }
}

/// A response body whose gRPC messages and final status are counted.
pub struct Observed {
    pub inner: super::reply::Body,
    pub call: Call,
}

impl Observed {
    pub fn poll(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, super::body::BoxError>>> {
        use hyper::body::Body as _;
        let r = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        match &r {
            std::task::Poll::Ready(Some(Ok(f))) => {
                if let Some(d) = f.data_ref() {
                    self.call.response.feed_bytes(d);
                } else if let Some(t) = f.trailers_ref() {
                    self.call.charge(Some(t));
                }
            }
            std::task::Poll::Ready(None) => self.call.charge(None),
            _ => {}
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::Frames;

    #[test]
    fn frames_across_chunks() {
        let mut f = Frames::default();
        // Two messages of 3 and 0 bytes, split at awkward places.
        let stream = [0u8, 0, 0, 0, 3, b'a', b'b', b'c', 0, 0, 0, 0, 0];
        for chunk in stream.chunks(2) {
            f.feed(chunk);
        }
        assert_eq!(f.count, 2);
    }
}
