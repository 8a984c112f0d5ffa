//! The HTTP connection manager: downstream HTTP/1.1 and HTTP/2 (prior knowledge or by
//! preface with `codec_type: AUTO`), each request routed by [`router`].

mod attempt;
pub mod body;
mod compress;
pub mod down;
mod fctx;
pub(crate) mod filters;
mod forward;
mod grpc_stats;
mod h2watch;
pub mod headers;
mod idle;
mod local;
pub mod logged;
mod mirror;
mod path;
pub mod reply;
mod retry;
pub mod router;
mod throttle;
mod timeouts;
mod upstream;
pub(crate) mod xfcc;

use crate::config::hcm::{Codec, HttpConnMgr};
use crate::snapshot::Server;
use crate::stats::{registry, Counter, Gauge, Scope};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Envoy's `http.<stat_prefix>.*` counters used here.
pub struct HcmStats {
    pub downstream_cx_total: Counter,
    pub downstream_cx_active: Gauge,
    pub downstream_rq_total: Counter,
    pub downstream_rq_active: Gauge,
    pub downstream_rq_http1_total: Counter,
    pub downstream_rq_http2_total: Counter,
    pub downstream_rq_xx: [Counter; 5],
    pub downstream_rq_completed: Counter,
    pub no_route: Counter,
    pub rq_total: Counter,
    pub no_cluster: Counter,
    pub rq_redirect: Counter,
    pub rq_direct_response: Counter,
    pub downstream_rq_ws_on_non_ws_route: Counter,
    pub downstream_cx_idle_timeout: Counter,
    pub downstream_rq_idle_timeout: Counter,
    pub downstream_rq_timeout: Counter,
    pub downstream_rq_max_duration_reached: Counter,
    pub downstream_rq_header_timeout: Counter,
    pub downstream_rq_overload_close: Counter,
    pub downstream_rq_rx_reset: Counter,
    pub downstream_rq_failed_path_normalization: Counter,
    pub downstream_rq_redirected_with_normalized_path: Counter,
    pub downstream_rq_too_many_premature_resets: Counter,
    pub downstream_cx_overload_disable_keepalive: Counter,
    pub downstream_rq_time: Arc<crate::stats::histogram::Lazy>,
    pub downstream_cx_length_ms: Arc<crate::stats::histogram::Lazy>,
    prefix: String,
}

impl HcmStats {
    /// The stats of a prefix, built once and then shared by its connections.
    pub fn get(prefix: &str) -> Arc<HcmStats> {
        static CACHE: std::sync::OnceLock<
            std::sync::Mutex<std::collections::HashMap<String, Arc<HcmStats>>>,
        > = std::sync::OnceLock::new();
        let cache = CACHE.get_or_init(Default::default);
        let mut map = cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = map.get(prefix) {
            return s.clone();
        }
        let s = Self::build(prefix);
        map.insert(prefix.to_string(), s.clone());
        s
    }

    fn build(prefix: &str) -> Arc<HcmStats> {
        // One set per prefix; the registry hands back the same atomics for the same names.
        let r = registry();
        let c = |s: &str| r.counter(Scope::Http(prefix), s);
        Arc::new(HcmStats {
            downstream_cx_total: c("downstream_cx_total"),
            downstream_cx_active: r.gauge(Scope::Http(prefix), "downstream_cx_active"),
            downstream_rq_total: c("downstream_rq_total"),
            downstream_rq_active: r.gauge(Scope::Http(prefix), "downstream_rq_active"),
            downstream_rq_http1_total: c("downstream_rq_http1_total"),
            downstream_rq_http2_total: c("downstream_rq_http2_total"),
            downstream_rq_xx: [
                c("downstream_rq_1xx"),
                c("downstream_rq_2xx"),
                c("downstream_rq_3xx"),
                c("downstream_rq_4xx"),
                c("downstream_rq_5xx"),
            ],
            downstream_rq_completed: c("downstream_rq_completed"),
            no_route: c("no_route"),
            rq_total: c("rq_total"),
            no_cluster: c("no_cluster"),
            rq_redirect: c("rq_redirect"),
            rq_direct_response: c("rq_direct_response"),
            downstream_rq_ws_on_non_ws_route: c("downstream_rq_ws_on_non_ws_route"),
            downstream_cx_idle_timeout: c("downstream_cx_idle_timeout"),
            downstream_rq_idle_timeout: c("downstream_rq_idle_timeout"),
            downstream_rq_timeout: c("downstream_rq_timeout"),
            downstream_rq_max_duration_reached: c("downstream_rq_max_duration_reached"),
            downstream_rq_header_timeout: c("downstream_rq_header_timeout"),
            downstream_rq_overload_close: c("downstream_rq_overload_close"),
            downstream_rq_rx_reset: c("downstream_rq_rx_reset"),
            downstream_rq_failed_path_normalization: c("downstream_rq_failed_path_normalization"),
            downstream_rq_redirected_with_normalized_path: c(
                "downstream_rq_redirected_with_normalized_path",
            ),
            downstream_rq_too_many_premature_resets: c("downstream_rq_too_many_premature_resets"),
            downstream_cx_overload_disable_keepalive: c("downstream_cx_overload_disable_keepalive"),
            downstream_rq_time: r.histogram(Scope::Http(prefix), "downstream_rq_time"),
            downstream_cx_length_ms: r.histogram(Scope::Http(prefix), "downstream_cx_length_ms"),
            prefix: prefix.to_string(),
        })
    }

    pub fn record_rq_time(&self, since: std::time::Instant) {
        self.downstream_rq_time.record(
            || format!("http.{}.downstream_rq_time", self.prefix),
            since.elapsed().as_millis() as u64,
        );
    }
}

/// Everything a request on this connection needs, shared by its requests.
pub struct ConnCtx {
    pub server: Arc<Server>,
    pub hcm: Arc<HttpConnMgr>,
    pub stats: Arc<HcmStats>,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// The restored original destination (what an ORIGINAL_DST cluster connects to).
    pub original_dst: Option<SocketAddr>,
    /// The downstream connection is TLS (x-forwarded-proto `https`).
    pub tls: bool,
    /// The TLS peer, kept when a filter reads it (RBAC).
    pub peer: Option<crate::io::Peer>,
    /// The client presented a certificate (mTLS).
    pub mtls: bool,
    /// This hop's `x-forwarded-client-cert` entry, when the connection manager writes one.
    pub xfcc: Option<http::HeaderValue>,
    pub activity: Arc<idle::Activity>,
    /// Envoy's downstream connection id (`%CONNECTION_ID%`).
    pub connection_id: u64,
    /// The listener's traffic direction is INBOUND.
    pub inbound: bool,
    /// The listener's traffic direction is OUTBOUND.
    pub outbound: bool,
    /// The listener's `bypass_overload_manager`.
    pub bypass_overload: bool,
    /// The listener's `per_connection_buffer_limit_bytes`: the request body kept for retries
    /// and mirrors when the route sets no `per_request_buffer_limit_bytes`.
    pub buffer_limit: u32,
}

pub async fn serve(
    server: Arc<Server>,
    hcm: Arc<HttpConnMgr>,
    stream: crate::io::Stream,
    down: crate::listener::Downstream,
    listener_drain: tokio::sync::watch::Receiver<bool>,
) {
    let stats = HcmStats::get(&hcm.stat_prefix);
    stats.downstream_cx_total.inc();
    let _active = crate::stats::ActiveGuard::new(&stats.downstream_cx_active);
    let opened = std::time::Instant::now();
    let cx_stats = stats.clone();
    let _length = CxLength(move || {
        cx_stats.downstream_cx_length_ms.record(
            || format!("http.{}.downstream_cx_length_ms", cx_stats.prefix),
            opened.elapsed().as_millis() as u64,
        )
    });
    let drain = server.drain.subscribe();
    let activity = idle::Activity::new();
    let ctx = Arc::new(ConnCtx {
        server,
        hcm: hcm.clone(),
        stats: stats.clone(),
        local: down.local,
        remote: down.remote,
        original_dst: down.original_dst,
        tls: stream.is_tls(),
        peer: if hcm.observes_streams()
            || hcm.filters.iter().any(|f| {
                matches!(
                    f.filter,
                    crate::config::filters::HttpFilter::Rbac(..)
                        | crate::config::filters::HttpFilter::ExtAuthz(..)
                )
            }) {
            stream.peer().map(|mut p| {
                p.local_uri = down.local_uri.clone();
                p
            })
        } else {
            None
        },
        mtls: stream.peer_cert().is_some(),
        xfcc: if hcm.xfcc.sets() && stream.peer_cert().is_some() {
            xfcc::entry(&hcm.xfcc, &stream.peer_chain(), down.local_uri.as_deref())
        } else {
            None
        },
        activity: activity.clone(),
        connection_id: down.connection_id,
        inbound: down.inbound,
        outbound: down.outbound,
        bypass_overload: down.bypass_overload,
        buffer_limit: down.buffer_limit,
    });
    // hyper keeps a slot for the request's future for the connection's whole life, so its
    // size (about 10 KiB) is part of every idle connection's cost. Boxing it per request saved
    // that but cost 1.2 µs a request (the future is built, then moved); shrinking the router's
    // future is the way to have both.
    let svc = service_fn(move |req| {
        let ctx = ctx.clone();
        async move { Ok::<_, std::convert::Infallible>(router::handle(ctx, req).await) }
    });
    let io = TokioIo::new(idle::Tracked::new(stream, activity.clone(), stats.clone()));
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let max_buf = (hcm.max_request_headers_kb as usize * 1024).max(8192);
    builder
        .http1()
        .timer(TokioTimer::new())
        .max_buf_size(max_buf)
        .max_headers(hcm.max_headers_count as usize)
        .header_read_timeout(None);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(hcm.max_request_headers_kb * 1024)
        .max_concurrent_streams(hcm.h2.max_concurrent_streams)
        .initial_stream_window_size(hcm.h2.initial_stream_window_size)
        .initial_connection_window_size(hcm.h2.initial_connection_window_size)
        .enable_connect_protocol();
    let builder = match hcm.codec {
        // HTTP1 gets no protocol detection: an HTTP/2 preface is a malformed HTTP/1 request.
        Codec::Auto | Codec::Http1 => builder,
        Codec::Http2 => builder.http2_only(),
    };
    if hcm.codec == Codec::Http1 {
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .max_buf_size(max_buf)
            .max_headers(hcm.max_headers_count as usize)
            .header_read_timeout(None)
            .serve_connection(io, svc)
            .with_upgrades();
        tokio::pin!(conn);
        drive(conn, drain, listener_drain, &activity, &hcm, &stats).await;
        return;
    }
    let conn = builder.serve_connection_with_upgrades(io, svc);
    tokio::pin!(conn);
    drive(conn, drain, listener_drain, &activity, &hcm, &stats).await;
}

/// Runs a connection to its end, closing it gracefully on drain or after the idle timeout.
async fn drive<C, E>(
    mut conn: std::pin::Pin<&mut C>,
    mut drain: tokio::sync::watch::Receiver<bool>,
    mut listener_drain: tokio::sync::watch::Receiver<bool>,
    activity: &Arc<idle::Activity>,
    hcm: &HttpConnMgr,
    stats: &HcmStats,
) where
    C: std::future::Future<Output = Result<(), E>> + GracefulShutdown,
    E: std::fmt::Display,
{
    let mut draining = *drain.borrow() || *listener_drain.borrow();
    let mut listener_open = true;
    if draining {
        conn.as_mut().begin_shutdown();
    }
    let idle_timeout = hcm.idle_timeout;
    let mut idle_closed = false;
    // After the idle timeout, Envoy drains the connection for drain_timeout before closing.
    let mut close_at: Option<tokio::time::Instant> = None;
    loop {
        let idle_wait = match (idle_timeout, idle_closed) {
            (Some(t), false) => activity.remaining(t),
            _ => None,
        };
        // The request being read has until its headers' deadline; with none being read, the
        // first byte of the next one starts the clock.
        let headers_left = hcm
            .request_headers_timeout
            .and_then(|t| activity.headers_remaining(t));
        let headers_timed = hcm.request_headers_timeout.is_some();
        tokio::select! {
            res = conn.as_mut() => {
                if let Err(e) = res {
                    tracing::debug!("downstream connection error: {e}");
                }
                break;
            }
            changed = drain.changed(), if !draining => {
                if changed.is_err() || *drain.borrow() {
                    draining = true;
                    conn.as_mut().begin_shutdown();
                }
            }
            // The listener was removed or replaced: its connections drain.
            changed = listener_drain.changed(), if !draining && listener_open => {
                match changed {
                    Ok(()) if *listener_drain.borrow() => {
                        draining = true;
                        conn.as_mut().begin_shutdown();
                    }
                    Ok(()) => {}
                    Err(_) => listener_open = false,
                }
            }
            () = tokio::time::sleep(idle_wait.unwrap_or(Duration::ZERO)), if idle_timeout.is_some() && !idle_closed => {
                if idle_wait.is_none() || activity.remaining(idle_timeout.unwrap_or_default()).is_none() {
                    idle_closed = true;
                    stats.downstream_cx_idle_timeout.inc();
                    close_at = Some(tokio::time::Instant::now() + hcm.drain_timeout);
                }
            }
            // A request's headers took longer than `request_headers_timeout`: the connection
            // closes (a client trickling its headers holds nothing longer than that).
            () = tokio::time::sleep(headers_left.unwrap_or(Duration::ZERO)), if headers_left.is_some() => {
                if let Some(t) = hcm.request_headers_timeout {
                    if activity.headers_remaining(t).is_some_and(|left| left.is_zero()) {
                        stats.downstream_rq_header_timeout.inc();
                        tracing::debug!("request headers timeout: closing the connection");
                        break;
                    }
                }
            }
            () = activity.headers_started.notified(), if headers_timed && headers_left.is_none() => {}
            () = activity.close_requested.notified(), if !draining => {
                draining = true;
                conn.as_mut().begin_shutdown();
            }
            () = tokio::time::sleep_until(close_at.unwrap_or_else(tokio::time::Instant::now)), if close_at.is_some() => {
                close_at = None;
                conn.as_mut().begin_shutdown();
            }
        }
    }
}

/// Graceful close for the two connection types served here.
trait GracefulShutdown {
    fn begin_shutdown(self: std::pin::Pin<&mut Self>);
}

impl<I, S> GracefulShutdown for hyper::server::conn::http1::UpgradeableConnection<I, S>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<hyper::body::Incoming>,
    S::ResBody: hyper::body::Body + 'static,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn begin_shutdown(self: std::pin::Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

impl<I, S, E> GracefulShutdown
    for hyper_util::server::conn::auto::UpgradeableConnection<'_, I, S, E>
where
    S: hyper::service::Service<
        http::Request<hyper::body::Incoming>,
        Response = http::Response<reply::Body>,
    >,
    S::Future: 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    E: hyper::rt::bounds::Http2ServerConnExec<S::Future, reply::Body>,
{
    fn begin_shutdown(self: std::pin::Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

/// Runs its closure when dropped (a connection's length, however it ends).
struct CxLength<F: FnMut()>(F);

impl<F: FnMut()> Drop for CxLength<F> {
    fn drop(&mut self) {
        (self.0)();
    }
}
