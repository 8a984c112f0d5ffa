//! HTTP/1.1 upstream connections: one request at a time each, the most recently used ready
//! one first; a request without one is pending until a connection opens or frees up.

use super::{CxSlot, HostPool, UpstreamError};
use crate::cluster::{ActiveRequest, Host};
use crate::http::body::ReqBody;
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::time::Instant;

/// A pooled HTTP/1.1 connection.
#[derive(Debug)]
pub(super) struct H1 {
    sender: http1::SendRequest<ReqBody>,
    /// When it last took a request back (for `idle_timeout`).
    since: Instant,
    opened: Instant,
    /// Requests it has carried (for `max_requests_per_connection`).
    used: u32,
    conn: Arc<crate::cluster::UpstreamConn>,
}

impl HostPool {
    /// Whether `c` may take another request: not closed, not idle too long, not too old.
    fn reusable(&self, c: &H1) -> bool {
        let cfg = &self.limits_cfg;
        !c.sender.is_closed()
            && self.idle_timeout.is_none_or(|t| c.since.elapsed() < t)
            && cfg
                .max_connection_duration
                .is_none_or(|d| c.opened.elapsed() < d)
    }

    /// The most recently used connection that is ready for a request. Connections still
    /// streaming a response stay in the list; closed and expired ones are dropped.
    fn checkout_h1(&self) -> Option<H1> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let i = idle
                .iter()
                .rposition(|c| c.sender.is_ready() || !self.reusable(c))?;
            let c = idle.remove(i);
            if self.reusable(&c) {
                return Some(c);
            }
        }
    }

    /// Returns a connection to the pool as soon as its response headers are in: it becomes
    /// ready again by itself once the response body has been read. A connection that has
    /// carried `max_requests_per_connection` requests is let go (it closes once done).
    fn checkin_h1(&self, mut c: H1) {
        if self
            .limits_cfg
            .max_requests_per_connection
            .is_some_and(|m| c.used >= m)
        {
            self.stats.upstream_cx_max_requests.inc();
            return;
        }
        c.since = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.push(c);
    }

    async fn new_h1(
        &self,
        host: &Arc<Host>,
        slot: CxSlot,
        alpn: Option<&[Vec<u8>]>,
    ) -> Result<H1, UpstreamError> {
        let stream = self.connect(&host.stats, alpn).await?;
        self.h1_over(host, stream, slot).await
    }

    pub(super) async fn h1_over(
        &self,
        host: &Arc<Host>,
        stream: crate::io::Stream,
        slot: CxSlot,
    ) -> Result<H1, UpstreamError> {
        let ids = crate::cluster::UpstreamConn::of(&stream);
        let cfg = &self.limits_cfg;
        let (sender, conn) = http1::Builder::new()
            .max_headers(cfg.max_response_headers as usize)
            // hyper's buffer floor is 8 KiB; the head limit is checked against the buffer.
            .max_buf_size((cfg.max_response_headers_kb as usize * 1024).max(8192))
            .handshake(TokioIo::new(stream))
            .await
            .map_err(UpstreamError::Reset)?;
        self.stats.upstream_cx_http1_total.inc();
        self.spawn_conn(host, slot, ids.clone(), async move {
            conn.with_upgrades().await.is_ok()
        });
        let now = Instant::now();
        Ok(H1 {
            sender,
            since: now,
            opened: now,
            used: 0,
            conn: ids,
        })
    }

    /// Makes a new connection ready and pools it (ALPN found HTTP/1.1).
    pub(super) async fn pool_ready_h1(&self, mut c: H1) -> Result<(), UpstreamError> {
        c.sender.ready().await.map_err(UpstreamError::Reset)?;
        self.checkin_h1(c);
        Ok(())
    }

    /// A connection of this pool still busy with a response (not closed): a pending request
    /// takes it and waits for it to become ready.
    fn take_busy_h1(&self) -> Option<H1> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.retain(|c| !c.sender.is_closed());
        let i = idle.iter().position(|c| !c.sender.is_ready())?;
        Some(idle.remove(i))
    }

    fn has_h1_candidate(&self) -> bool {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.iter().any(|c| !c.sender.is_closed())
    }

    /// A connection for a pending HTTP/1.1 request: an idle one, a new one if the cluster's
    /// connection limit allows, else the first of this host's busy connections to finish.
    async fn wait_h1(
        self: &Arc<Self>,
        host: &Arc<Host>,
        alpn: Option<&[Vec<u8>]>,
    ) -> Result<H1, UpstreamError> {
        let mut force = true;
        loop {
            if let Some(c) = self.checkout_h1() {
                return Ok(c);
            }
            if let Some(slot) = self.slot(force) {
                return self.new_h1(host, slot, alpn).await;
            }
            force = false;
            if let Some(mut c) = self.take_busy_h1() {
                if c.sender.ready().await.is_ok() {
                    return Ok(c);
                }
                continue;
            }
            self.limits
                .wait_until(|| (self.has_h1_candidate() || self.can_open()).then_some(()))
                .await;
        }
    }

    /// Sends a request over HTTP/1.1, reusing an idle connection when one is ready. A request
    /// that a pooled connection could not take (closed meanwhile) is sent on a new one.
    pub async fn send_h1(
        self: &Arc<Self>,
        host: &Arc<Host>,
        mut req: Request<ReqBody>,
        alpn: Option<&[Vec<u8>]>,
    ) -> Result<(Response<Incoming>, ActiveRequest), UpstreamError> {
        while let Some(mut c) = self.checkout_h1() {
            let Some(mut active) = self.attach(host) else {
                self.checkin_h1(c);
                return Err(UpstreamError::Overflow);
            };
            c.conn
                .requests
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            active.conn = Some(c.conn.clone());
            c.used += 1;
            match c.sender.try_send_request(req).await {
                Ok(resp) => {
                    self.checkin_h1(c);
                    return Ok((resp, active));
                }
                Err(mut e) => match e.take_message() {
                    Some(r) => req = r,
                    None => return Err(UpstreamError::Reset(e.into_error())),
                },
            }
        }
        let mut c = {
            let _pending = self.pending(&host.stats)?;
            self.wait_h1(host, alpn).await?
        };
        let Some(mut active) = self.attach(host) else {
            self.checkin_h1(c);
            return Err(UpstreamError::Overflow);
        };
        c.conn
            .requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        active.conn = Some(c.conn.clone());
        c.used += 1;
        let resp = c
            .sender
            .send_request(req)
            .await
            .map_err(UpstreamError::Reset)?;
        if resp.status() != http::StatusCode::SWITCHING_PROTOCOLS {
            self.checkin_h1(c);
        }
        Ok((resp, active))
    }
}
