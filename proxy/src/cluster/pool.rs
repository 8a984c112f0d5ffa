//! Per-host upstream connection pools: HTTP/1.1 keep-alive connections (one request at a time
//! each, reused LIFO) and one multiplexed HTTP/2 connection.

use super::ClusterStats;
use crate::config::cluster::Cluster;
use crate::stats::ActiveGuard;
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Why an upstream request failed before response headers arrived. Each maps to Envoy's
/// response flag and reset reason.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("remote connection failure, transport failure reason: delayed connect error: {0}")]
    ConnectFailed(std::io::Error),
    #[error("connection timeout")]
    ConnectTimeout,
    #[error("connection termination")]
    Reset(#[source] hyper::Error),
    /// A circuit breaker (pending requests or requests) is at its limit.
    #[error("overflow")]
    Overflow,
}

impl UpstreamError {
    pub fn is_connect(&self) -> bool {
        matches!(
            self,
            UpstreamError::ConnectFailed(_) | UpstreamError::ConnectTimeout
        )
    }

    /// The exchange failed because the downstream request body failed (a malformed chunk, or
    /// the client went away), not because of the upstream: hyper reports the request body as
    /// the "user" body that errored.
    pub fn is_downstream_body(&self) -> bool {
        matches!(self, UpstreamError::Reset(e) if e.is_user())
    }
}

#[derive(Debug)]
pub struct HostPool {
    addr: SocketAddr,
    connect_timeout: Duration,
    bind: Option<crate::config::cluster::BindCfg>,
    tls: Option<Arc<crate::tls::client::ClientTls>>,
    idle_timeout: Option<Duration>,
    stats: Arc<ClusterStats>,
    limits: Arc<super::limits::Limits>,
    /// Connections open or opening to this host (a pool without any opens one whatever the
    /// cluster's connection limit).
    open: AtomicU64,
    idle: Mutex<Vec<(http1::SendRequest<Incoming>, Instant)>>,
    h2: Mutex<Option<http2::SendRequest<Incoming>>>,
    /// Held while the HTTP/2 connection is being opened, so that concurrent requests share it.
    h2_connecting: tokio::sync::Mutex<()>,
    /// `auto_config`: what ALPN chose with this host (0 not known yet, 1 HTTP/1.1, 2 h2).
    alpn: std::sync::atomic::AtomicU8,
}

impl HostPool {
    pub fn new(
        addr: SocketAddr,
        cfg: &Cluster,
        stats: Arc<ClusterStats>,
        limits: Arc<super::limits::Limits>,
        tls: Option<Arc<crate::tls::client::ClientTls>>,
    ) -> HostPool {
        HostPool {
            addr,
            connect_timeout: cfg.connect_timeout,
            bind: cfg.bind,
            tls,
            idle_timeout: cfg.idle_timeout,
            stats,
            limits,
            open: AtomicU64::new(0),
            idle: Mutex::new(Vec::new()),
            h2: Mutex::new(None),
            h2_connecting: tokio::sync::Mutex::new(()),
            alpn: std::sync::atomic::AtomicU8::new(0),
        }
    }

    /// A connection slot under the cluster's `max_connections`: granted when the limit allows,
    /// or when this host has no connection at all (counted as `upstream_cx_overflow` then).
    fn slot(self: &Arc<Self>, force: bool) -> Option<CxSlot> {
        let c = &self.limits.connections;
        if !c.try_acquire() {
            self.stats.upstream_cx_overflow.inc();
            if !(force && self.open.load(Relaxed) == 0) {
                return None;
            }
            c.force_acquire();
        }
        self.open.fetch_add(1, Relaxed);
        Some(CxSlot(self.clone()))
    }

    async fn connect(&self, host: &super::HostStats) -> Result<crate::io::Stream, UpstreamError> {
        let s = &self.stats;
        match tokio::time::timeout(
            self.connect_timeout,
            super::connect::open(self.addr, self.bind, self.tls.as_deref()),
        )
        .await
        {
            Ok(Ok(stream)) => {
                s.upstream_cx_total.inc();
                host.cx_total.fetch_add(1, Relaxed);
                Ok(stream)
            }
            Ok(Err(e)) => {
                s.upstream_cx_connect_fail.inc();
                host.cx_connect_fail.fetch_add(1, Relaxed);
                Err(UpstreamError::ConnectFailed(e))
            }
            Err(_) => {
                s.upstream_cx_connect_fail.inc();
                s.upstream_cx_connect_timeout.inc();
                host.cx_connect_fail.fetch_add(1, Relaxed);
                Err(UpstreamError::ConnectTimeout)
            }
        }
    }

    /// The most recently used connection that is ready for a request. Connections still
    /// streaming a response stay in the list; closed and expired ones are dropped.
    fn checkout_h1(&self) -> Option<http1::SendRequest<Incoming>> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let i = idle
                .iter()
                .rposition(|(s, _)| s.is_ready() || s.is_closed())?;
            let (sender, since) = idle.remove(i);
            let expired = self.idle_timeout.is_some_and(|t| since.elapsed() >= t);
            if !sender.is_closed() && !expired {
                return Some(sender);
            }
        }
    }

    /// Returns a connection to the pool as soon as its response headers are in: it becomes
    /// ready again by itself once the response body has been read.
    fn checkin_h1(&self, sender: http1::SendRequest<Incoming>) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.push((sender, Instant::now()));
    }

    async fn new_h1(
        &self,
        host: &Arc<super::Host>,
        slot: CxSlot,
    ) -> Result<http1::SendRequest<Incoming>, UpstreamError> {
        let stream = self.connect(&host.stats).await?;
        self.h1_over(host, stream, slot).await
    }

    async fn h1_over(
        &self,
        host: &Arc<super::Host>,
        stream: crate::io::Stream,
        slot: CxSlot,
    ) -> Result<http1::SendRequest<Incoming>, UpstreamError> {
        let (sender, conn) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(UpstreamError::Reset)?;
        self.stats.upstream_cx_http1_total.inc();
        self.spawn_conn(
            host,
            slot,
            async move { conn.with_upgrades().await.is_ok() },
        );
        Ok(sender)
    }

    fn spawn_conn(
        &self,
        host: &Arc<super::Host>,
        slot: CxSlot,
        conn: impl std::future::Future<Output = bool> + Send + 'static,
    ) {
        let active = ActiveGuard::new(&self.stats.upstream_cx_active);
        let destroy = self.stats.upstream_cx_destroy.clone();
        let host = host.clone();
        host.stats.cx_active.fetch_add(1, Relaxed);
        tokio::spawn(async move {
            let _ = conn.await;
            drop(active);
            destroy.inc();
            host.stats.cx_active.fetch_sub(1, Relaxed);
            drop(slot);
        });
    }

    /// A connection of this pool still busy with a response (not closed): a pending request
    /// takes it and waits for it to become ready.
    fn take_busy_h1(&self) -> Option<http1::SendRequest<Incoming>> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.retain(|(s, _)| !s.is_closed());
        let i = idle.iter().position(|(s, _)| !s.is_ready())?;
        Some(idle.remove(i).0)
    }

    fn has_h1_candidate(&self) -> bool {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.iter().any(|(s, _)| !s.is_closed())
    }

    /// A request is pending while it has no connection: counted against
    /// `max_pending_requests` (over it: overflow).
    fn pending<'a>(&'a self, host: &'a super::HostStats) -> Result<Pending<'a>, UpstreamError> {
        if !self.limits.pending.try_acquire() {
            self.stats.upstream_rq_pending_overflow.inc();
            return Err(UpstreamError::Overflow);
        }
        self.stats.upstream_rq_pending_total.inc();
        self.stats.upstream_rq_pending_active.inc();
        host.rq_pending_active.fetch_add(1, Relaxed);
        Ok(Pending(self, host))
    }

    /// A connection for a pending HTTP/1.1 request: an idle one, a new one if the cluster's
    /// connection limit allows, else the first of this host's busy connections to finish.
    async fn wait_h1(
        self: &Arc<Self>,
        host: &Arc<super::Host>,
    ) -> Result<http1::SendRequest<Incoming>, UpstreamError> {
        let mut force = true;
        loop {
            if let Some(s) = self.checkout_h1() {
                return Ok(s);
            }
            if let Some(slot) = self.slot(force) {
                return self.new_h1(host, slot).await;
            }
            force = false;
            if let Some(mut s) = self.take_busy_h1() {
                if s.ready().await.is_ok() {
                    return Ok(s);
                }
                continue;
            }
            self.limits
                .wait_until(|| {
                    (self.has_h1_candidate() || self.limits.connections.can_create()).then_some(())
                })
                .await;
        }
    }

    /// Sends a request over HTTP/1.1, reusing an idle connection when one is ready. A request
    /// that a pooled connection could not take (closed meanwhile) is sent on a new one.
    pub async fn send_h1(
        self: &Arc<Self>,
        host: &Arc<super::Host>,
        mut req: Request<Incoming>,
    ) -> Result<(Response<Incoming>, super::ActiveRequest), UpstreamError> {
        while let Some(mut sender) = self.checkout_h1() {
            let Some(active) = self.attach(host) else {
                self.checkin_h1(sender);
                return Err(UpstreamError::Overflow);
            };
            match sender.try_send_request(req).await {
                Ok(resp) => {
                    self.checkin_h1(sender);
                    return Ok((resp, active));
                }
                Err(mut e) => match e.take_message() {
                    Some(r) => req = r,
                    None => return Err(UpstreamError::Reset(e.into_error())),
                },
            }
        }
        let mut sender = {
            let _pending = self.pending(&host.stats)?;
            self.wait_h1(host).await?
        };
        let Some(active) = self.attach(host) else {
            self.checkin_h1(sender);
            return Err(UpstreamError::Overflow);
        };
        let resp = sender
            .send_request(req)
            .await
            .map_err(UpstreamError::Reset)?;
        if resp.status() != http::StatusCode::SWITCHING_PROTOCOLS {
            self.checkin_h1(sender);
        }
        Ok((resp, active))
    }

    /// A request takes its connection: admitted under `max_requests`, or it overflows
    /// (`upstream_rq_active_overflow`; the caller gives the connection back).
    fn attach(&self, host: &Arc<super::Host>) -> Option<super::ActiveRequest> {
        let a = super::ActiveRequest::admit(&self.limits, &self.stats, host);
        if a.is_none() {
            self.stats.upstream_rq_active_overflow.inc();
        }
        a
    }

    /// Sends a request over the host's shared HTTP/2 connection, opening it if needed.
    pub async fn send_h2(
        self: &Arc<Self>,
        host: &Arc<super::Host>,
        req: Request<Incoming>,
    ) -> Result<(Response<Incoming>, super::ActiveRequest), UpstreamError> {
        let current = || {
            let g = self.h2.lock().unwrap_or_else(|p| p.into_inner());
            g.as_ref().filter(|s| !s.is_closed()).cloned()
        };
        let mut sender = match current() {
            Some(s) => s,
            None => {
                // One opener at a time; the others then find its connection.
                let _opening = self.h2_connecting.lock().await;
                match current() {
                    Some(s) => s,
                    None => {
                        let _pending = self.pending(&host.stats)?;
                        let slot = self.slot(true).ok_or(UpstreamError::Overflow)?;
                        let stream = self.connect(&host.stats).await?;
                        self.h2_over(host, stream, slot).await?
                    }
                }
            }
        };
        sender.ready().await.map_err(UpstreamError::Reset)?;
        let active = self.attach(host).ok_or(UpstreamError::Overflow)?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(UpstreamError::Reset)?;
        Ok((resp, active))
    }

    /// Makes `stream` the host's shared HTTP/2 connection.
    async fn h2_over(
        &self,
        host: &Arc<super::Host>,
        stream: crate::io::Stream,
        slot: CxSlot,
    ) -> Result<http2::SendRequest<Incoming>, UpstreamError> {
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .timer(hyper_util::rt::TokioTimer::new())
            .handshake(TokioIo::new(stream))
            .await
            .map_err(UpstreamError::Reset)?;
        self.stats.upstream_cx_http2_total.inc();
        self.spawn_conn(host, slot, async move { conn.await.is_ok() });
        *self.h2.lock().unwrap_or_else(|p| p.into_inner()) = Some(sender.clone());
        Ok(sender)
    }

    /// `auto_config`: whether requests to this host go over HTTP/2, as the TLS handshake's ALPN
    /// decided (HTTP/1.1 without TLS or without ALPN). The first connection finds out and
    /// joins the pool of its protocol.
    pub async fn auto_is_h2(
        self: &Arc<Self>,
        host: &Arc<super::Host>,
    ) -> Result<bool, UpstreamError> {
        use std::sync::atomic::Ordering::Relaxed;
        match self.alpn.load(Relaxed) {
            1 => return Ok(false),
            2 => return Ok(true),
            _ => {}
        }
        if self.tls.is_none() {
            self.alpn.store(1, Relaxed);
            return Ok(false);
        }
        let _opening = self.h2_connecting.lock().await;
        match self.alpn.load(Relaxed) {
            1 => return Ok(false),
            2 => return Ok(true),
            _ => {}
        }
        let slot = self.slot(true).ok_or(UpstreamError::Overflow)?;
        let stream = self.connect(&host.stats).await?;
        let h2 = stream.alpn() == Some(b"h2".as_slice());
        if h2 {
            self.h2_over(host, stream, slot).await?;
        } else {
            let mut sender = self.h1_over(host, stream, slot).await?;
            // Ready before it joins the idle list, so that the request that asked takes it.
            sender.ready().await.map_err(UpstreamError::Reset)?;
            self.checkin_h1(sender);
        }
        self.alpn.store(if h2 { 2 } else { 1 }, Relaxed);
        Ok(h2)
    }
}

/// One connection counted against the cluster's `max_connections`, given back when the
/// connection closes (or never opened).
pub struct CxSlot(Arc<HostPool>);

impl Drop for CxSlot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Relaxed);
        self.0.limits.connections.release();
        self.0.limits.wake();
    }
}

/// A request waiting for a connection.
struct Pending<'a>(&'a HostPool, &'a super::HostStats);

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.0.limits.pending.release();
        self.0.stats.upstream_rq_pending_active.dec();
        self.1.rq_pending_active.fetch_sub(1, Relaxed);
    }
}
