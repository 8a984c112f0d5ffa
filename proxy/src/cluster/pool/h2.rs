//! HTTP/2 upstream connections: requests share a connection until it carries
//! `max_concurrent_streams` streams, then another one opens; a connection that reached
//! `max_requests_per_connection` or `max_connection_duration` takes no new streams and closes
//! once its streams are done.

use super::{CxSlot, HostPool, UpstreamError};
use crate::cluster::{ActiveRequest, Host};
use crate::http::body::ReqBody;
use hyper::body::Incoming;
use hyper::client::conn::http2;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;

/// A pooled HTTP/2 connection.
#[derive(Debug)]
pub(super) struct H2 {
    sender: http2::SendRequest<ReqBody>,
    /// Streams open on it now.
    active: Arc<AtomicU32>,
    /// Streams it has carried.
    total: u32,
    opened: Instant,
    conn: Arc<crate::cluster::UpstreamConn>,
}

/// One open stream of a pooled HTTP/2 connection, until its response is done.
#[derive(Debug)]
pub struct StreamSlot(Arc<AtomicU32>);

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

type Taken = (
    http2::SendRequest<ReqBody>,
    StreamSlot,
    Arc<crate::cluster::UpstreamConn>,
);

impl HostPool {
    /// A connection with a free stream, the stream counted as taken. With `any`, the least
    /// loaded open connection when none has a free stream.
    fn checkout_h2(&self, any: bool) -> Option<Taken> {
        let cfg = &self.limits_cfg;
        let mut conns = self.h2.lock().unwrap_or_else(|p| p.into_inner());
        conns.retain(|c| {
            !c.sender.is_closed()
                && cfg
                    .max_connection_duration
                    .is_none_or(|d| c.opened.elapsed() < d)
        });
        let free = conns
            .iter()
            .position(|c| c.active.load(Relaxed) < cfg.max_concurrent_streams);
        let i = match free {
            Some(i) => i,
            None if any => conns
                .iter()
                .enumerate()
                .min_by_key(|(_, c)| c.active.load(Relaxed))
                .map(|(i, _)| i)?,
            None => return None,
        };
        let c = &mut conns[i];
        c.total += 1;
        c.active.fetch_add(1, Relaxed);
        let taken = (
            c.sender.clone(),
            StreamSlot(c.active.clone()),
            c.conn.clone(),
        );
        if cfg
            .max_requests_per_connection
            .is_some_and(|m| c.total >= m)
        {
            // No new streams: it closes once the last handle (the one taken) is gone.
            self.stats.upstream_cx_max_requests.inc();
            conns.remove(i);
        }
        Some(taken)
    }

    /// Sends a request on a pooled HTTP/2 connection with a free stream, opening one if none
    /// has (at the cluster's connection limit, the least loaded connection takes it).
    pub async fn send_h2(
        self: &Arc<Self>,
        host: &Arc<Host>,
        req: Request<ReqBody>,
        alpn: Option<&[Vec<u8>]>,
    ) -> Result<(Response<Incoming>, ActiveRequest), UpstreamError> {
        let (mut sender, stream, conn) = match self.checkout_h2(false) {
            Some(t) => t,
            None => {
                // One opener at a time; the others then find its connection.
                let _opening = self.h2_connecting.lock().await;
                match self.checkout_h2(false) {
                    Some(t) => t,
                    None => {
                        let _pending = self.pending(&host.stats)?;
                        match self.slot(true) {
                            Some(slot) => {
                                let s = self.connect(&host.stats, alpn).await?;
                                self.h2_over(host, s, slot).await?;
                                self.checkout_h2(true).ok_or(UpstreamError::Overflow)?
                            }
                            None => self.checkout_h2(true).ok_or(UpstreamError::Overflow)?,
                        }
                    }
                }
            }
        };
        sender.ready().await.map_err(UpstreamError::Reset)?;
        let mut active = self.attach(host).ok_or(UpstreamError::Overflow)?;
        active.stream = Some(stream);
        conn.requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        active.conn = Some(conn);
        let resp = sender
            .send_request(req)
            .await
            .map_err(UpstreamError::Reset)?;
        Ok((resp, active))
    }

    /// Pools `stream` as a new HTTP/2 connection.
    pub(super) async fn h2_over(
        &self,
        host: &Arc<Host>,
        stream: crate::io::Stream,
        slot: CxSlot,
    ) -> Result<(), UpstreamError> {
        let ids = crate::cluster::UpstreamConn::of(&stream);
        let mut builder = http2::Builder::new(TokioExecutor::new());
        builder.timer(hyper_util::rt::TokioTimer::new());
        builder.max_header_list_size(self.limits_cfg.max_response_headers_kb * 1024);
        if let Some(w) = self.limits_cfg.h2_windows.0 {
            builder.initial_stream_window_size(w);
        }
        if let Some(w) = self.limits_cfg.h2_windows.1 {
            builder.initial_connection_window_size(w);
        }
        let (sender, conn) = builder
            .handshake(TokioIo::new(stream))
            .await
            .map_err(UpstreamError::Reset)?;
        self.stats.upstream_cx_http2_total.inc();
        self.spawn_conn(host, slot, ids.clone(), async move { conn.await.is_ok() });
        self.h2.lock().unwrap_or_else(|p| p.into_inner()).push(H2 {
            sender,
            active: Arc::new(AtomicU32::new(0)),
            total: 0,
            opened: Instant::now(),
            conn: ids,
        });
        Ok(())
    }

    /// `auto_config`: whether requests to this host go over HTTP/2, as the TLS handshake's ALPN
    /// decided (HTTP/1.1 without TLS or without ALPN). The first connection finds out and
    /// joins the pool of its protocol.
    pub async fn auto_is_h2(self: &Arc<Self>, host: &Arc<Host>) -> Result<bool, UpstreamError> {
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
        let stream = self.connect(&host.stats, None).await?;
        let h2 = stream.alpn() == Some(b"h2".as_slice());
        if h2 {
            self.h2_over(host, stream, slot).await?;
        } else {
            // Ready before it joins the pool, so that the request that asked takes it.
            let c = self.h1_over(host, stream, slot).await?;
            self.pool_ready_h1(c).await?;
        }
        self.alpn.store(if h2 { 2 } else { 1 }, Relaxed);
        Ok(h2)
    }
}
