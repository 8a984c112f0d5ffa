//! Per-host upstream connection pools: HTTP/1.1 keep-alive connections (one request at a time
//! each, reused LIFO) and multiplexed HTTP/2 connections, under the cluster's circuit breakers
//! and the pool limits (requests per connection, connection age, concurrent streams).

mod h1;
mod h2;
pub use h2::StreamSlot;

use super::ClusterStats;
use crate::config::cluster::Cluster;
use crate::stats::ActiveGuard;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
    /// The upstream's response could not be parsed (or broke a limit such as
    /// `max_headers_count`): Envoy's 502 "protocol error".
    pub fn is_protocol(&self) -> bool {
        matches!(self, UpstreamError::Reset(e) if e.is_parse() || e.is_parse_too_large())
    }

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
    dial: crate::config::cluster::Dial,
    tls: Option<Arc<crate::tls::client::ClientTls>>,
    idle_timeout: Option<Duration>,
    stats: Arc<ClusterStats>,
    limits: Arc<super::limits::Limits>,
    /// Connections open or opening to this host (a pool without any opens one whatever the
    /// cluster's connection limit).
    open: AtomicU64,
    idle: Mutex<Vec<h1::H1>>,
    h2: Mutex<Vec<h2::H2>>,
    /// `max_requests_per_connection`, `max_connection_duration`, `max_concurrent_streams`.
    limits_cfg: crate::config::cluster::PoolCfg,
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
            dial: cfg.dial(),
            tls,
            idle_timeout: cfg.idle_timeout,
            stats,
            limits,
            open: AtomicU64::new(0),
            idle: Mutex::new(Vec::new()),
            h2: Mutex::new(Vec::new()),
            limits_cfg: cfg.pool.clone(),
            h2_connecting: tokio::sync::Mutex::new(()),
            alpn: std::sync::atomic::AtomicU8::new(0),
        }
    }

    /// The TLS its connections use (none: plaintext).
    pub fn tls(&self) -> Option<&Arc<crate::tls::client::ClientTls>> {
        self.tls.as_ref()
    }

    /// A connection slot under the cluster's `max_connections`: granted when the limit allows,
    /// or when this host has no connection at all (counted as `upstream_cx_overflow` then).
    fn slot(self: &Arc<Self>, force: bool) -> Option<CxSlot> {
        let c = &self.limits.connections;
        let open = self.open.load(Relaxed);
        let cluster_ok = self.host_can_open() && c.try_acquire();
        if !cluster_ok {
            self.stats.upstream_cx_overflow.inc();
            if !(force && open == 0) {
                return None;
            }
            c.force_acquire();
        }
        self.open.fetch_add(1, Relaxed);
        Some(CxSlot(self.clone()))
    }

    /// This host is under its `per_host_thresholds` connection limit.
    fn host_can_open(&self) -> bool {
        let open = self.open.load(Relaxed);
        self.limits
            .cfg
            .per_host_max_connections
            .is_none_or(|m| open < m)
    }

    /// A new connection to this host is allowed now (what a waiting request waits for).
    fn can_open(&self) -> bool {
        self.host_can_open() && self.limits.connections.can_create()
    }

    async fn connect(
        &self,
        host: &super::HostStats,
        alpn: Option<&[Vec<u8>]>,
    ) -> Result<crate::io::Stream, UpstreamError> {
        let s = &self.stats;
        let started = std::time::Instant::now();
        match tokio::time::timeout(
            self.connect_timeout,
            super::connect::open(self.addr, self.dial, self.tls.as_deref(), alpn),
        )
        .await
        {
            Ok(Ok(stream)) => {
                s.connected(started);
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

    fn spawn_conn(
        &self,
        host: &Arc<super::Host>,
        slot: CxSlot,
        ids: Arc<super::UpstreamConn>,
        conn: impl std::future::Future<Output = bool> + Send + 'static,
    ) {
        let active = ActiveGuard::of(&self.stats, |s| &s.upstream_cx_active);
        let stats = self.stats.clone();
        let host = host.clone();
        host.stats.cx_active.fetch_add(1, Relaxed);
        let opened = std::time::Instant::now();
        tokio::spawn(async move {
            let _ = conn.await;
            stats.closed(opened, Some(ids.requests.load(Relaxed)));
            drop(active);
            stats.upstream_cx_destroy.inc();
            host.stats.cx_active.fetch_sub(1, Relaxed);
            drop(slot);
        });
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

    /// The host failed a health or outlier check: pooled connections take no new requests
    /// and close once their responses are done, as Envoy drains a failed host's pools.
    pub fn drain(&self) {
        let idle = std::mem::take(&mut *self.idle.lock().unwrap_or_else(|p| p.into_inner()));
        let h2 = std::mem::take(&mut *self.h2.lock().unwrap_or_else(|p| p.into_inner()));
        drop((idle, h2));
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
