//! What happened to one stream (an HTTP request, a TCP connection): Envoy's stream info, as
//! access logs and Istio's metrics read it. Filled in as the stream goes; read once at its end.

use http::HeaderMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

/// Envoy's response flags: short code (access logs), long name (`RESPONSE_FLAGS_LONG`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flag {
    NoRoute,
    NoClusterFound,
    NoHealthyUpstream,
    UpstreamConnectFailure,
    UpstreamConnectionTermination,
    UpstreamRequestTimeout,
    UpstreamOverflow,
    UpstreamRetryLimitExceeded,
    UpstreamRemoteReset,
    DownstreamConnectionTermination,
    DownstreamProtocolError,
    StreamIdleTimeout,
    DurationTimeout,
    DelayInjected,
    FaultInjected,
    RateLimited,
    UnauthorizedExternalService,
    UpstreamMaxStreamDurationReached,
    OverloadManager,
    UpstreamProtocolError,
}

impl Flag {
    /// Every flag, for parsing `response_flag_filter`.
    pub const ALL: [Flag; 20] = [
        Flag::NoRoute,
        Flag::NoClusterFound,
        Flag::NoHealthyUpstream,
        Flag::UpstreamConnectFailure,
        Flag::UpstreamConnectionTermination,
        Flag::UpstreamRequestTimeout,
        Flag::UpstreamOverflow,
        Flag::UpstreamRetryLimitExceeded,
        Flag::UpstreamRemoteReset,
        Flag::DownstreamConnectionTermination,
        Flag::DownstreamProtocolError,
        Flag::StreamIdleTimeout,
        Flag::DurationTimeout,
        Flag::DelayInjected,
        Flag::FaultInjected,
        Flag::RateLimited,
        Flag::UnauthorizedExternalService,
        Flag::UpstreamMaxStreamDurationReached,
        Flag::OverloadManager,
        Flag::UpstreamProtocolError,
    ];

    pub fn code(self) -> &'static str {
        self.names().0
    }

    pub fn long(self) -> &'static str {
        self.names().1
    }

    fn names(self) -> (&'static str, &'static str) {
        match self {
            Flag::NoRoute => ("NR", "NoRouteFound"),
            Flag::NoClusterFound => ("NC", "NoClusterFound"),
            Flag::NoHealthyUpstream => ("UH", "NoHealthyUpstream"),
            Flag::UpstreamConnectFailure => ("UF", "UpstreamConnectionFailure"),
            Flag::UpstreamConnectionTermination => ("UC", "UpstreamConnectionTermination"),
            Flag::UpstreamRequestTimeout => ("UT", "UpstreamRequestTimeout"),
            Flag::UpstreamOverflow => ("UO", "UpstreamOverflow"),
            Flag::UpstreamRetryLimitExceeded => ("URX", "UpstreamRetryLimitExceeded"),
            Flag::UpstreamRemoteReset => ("UR", "UpstreamRemoteReset"),
            Flag::DownstreamConnectionTermination => ("DC", "DownstreamConnectionTermination"),
            Flag::DownstreamProtocolError => ("DPE", "DownstreamProtocolError"),
            Flag::StreamIdleTimeout => ("SI", "StreamIdleTimeout"),
            Flag::DurationTimeout => ("DT", "DurationTimeout"),
            Flag::DelayInjected => ("DI", "DelayInjected"),
            Flag::FaultInjected => ("FI", "FaultInjected"),
            Flag::RateLimited => ("RL", "RateLimited"),
            Flag::UnauthorizedExternalService => ("UAEX", "UnauthorizedExternalService"),
            Flag::UpstreamMaxStreamDurationReached => ("UMSDR", "UpstreamMaxStreamDurationReached"),
            Flag::OverloadManager => ("OM", "OverloadManager"),
            Flag::UpstreamProtocolError => ("UPE", "UpstreamProtocolError"),
        }
    }

    /// The flag of a short code (`UF`) or long name (`UpstreamConnectionFailure`).
    pub fn parse(s: &str) -> Option<Flag> {
        Flag::ALL
            .into_iter()
            .find(|f| f.code() == s || f.long() == s)
    }
}

/// Envoy's access log types (`%ACCESS_LOG_TYPE%`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogType {
    NotSet,
    TcpConnectionEnd,
    DownstreamEnd,
}

impl LogType {
    pub fn name(self) -> &'static str {
        match self {
            LogType::NotSet => "NotSet",
            LogType::TcpConnectionEnd => "TcpConnectionEnd",
            LogType::DownstreamEnd => "DownstreamEnd",
        }
    }
}

/// The request line and headers of an HTTP stream, as the connection manager passed them on.
#[derive(Debug, Default, Clone)]
pub struct RequestInfo {
    pub method: String,
    /// Path and query.
    pub path: String,
    pub scheme: &'static str,
    pub headers: HeaderMap,
}

impl RequestInfo {
    pub fn of<B>(req: &http::Request<B>, scheme: &'static str) -> RequestInfo {
        RequestInfo {
            method: req.method().as_str().to_string(),
            path: req
                .uri()
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_string(),
            scheme,
            headers: req.headers().clone(),
        }
    }
}

/// What the downstream connection says of itself.
#[derive(Debug, Clone)]
pub struct Downstream {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// The TLS peer and SNI (none for plaintext).
    pub peer: Option<Arc<crate::io::Peer>>,
    pub connection_id: u64,
    /// The listener's traffic direction is INBOUND.
    pub inbound: bool,
}

/// The upstream side of a stream.
#[derive(Debug, Default, Clone)]
pub struct Upstream {
    /// The cluster's name and its stat name (`alt_stat_name`).
    pub cluster: Option<(Arc<str>, Arc<str>)>,
    pub host: Option<SocketAddr>,
    pub local: Option<SocketAddr>,
    /// Why the last connect failed (`delayed_connect_error:_Connection_refused`).
    pub failure: Option<String>,
    pub protocol: Option<&'static str>,
    /// When the upstream's response headers arrived.
    pub first_byte: Option<Instant>,
    /// The first URI SANs of the upstream TLS peer's certificate and of Ferry's own.
    pub peer_san: Option<Arc<str>>,
    pub local_san: Option<Arc<str>>,
    /// The service Istio's metadata names for the cluster.
    pub service: Option<Arc<crate::istio::Service>>,
}

#[derive(Debug, Clone)]
pub struct StreamInfo {
    pub log_type: LogType,
    pub start: SystemTime,
    pub started: Instant,
    /// When the last byte went downstream (none: the stream has not ended).
    pub ended: Option<Instant>,
    /// When the request was complete downstream.
    pub request_done: Option<Instant>,
    pub downstream: Downstream,
    pub protocol: Option<&'static str>,
    pub request: Option<RequestInfo>,
    pub response_headers: Option<HeaderMap>,
    pub response_trailers: Option<HeaderMap>,
    /// The status sent downstream (0: none).
    pub code: u16,
    pub details: Option<std::borrow::Cow<'static, str>>,
    /// In the order they were set.
    pub flags: Vec<Flag>,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub route_name: Option<Arc<str>>,
    pub upstream: Upstream,
    pub attempts: u32,
    pub grpc: bool,
    /// The workloads at either end, as Istio's metadata exchange found them.
    pub downstream_peer: Option<Box<crate::istio::Workload>>,
    pub upstream_peer: Option<Box<crate::istio::Workload>>,
    /// The request's span, reported when the stream ends.
    pub span: Option<Box<crate::trace::Span>>,
}

impl StreamInfo {
    pub fn new(log_type: LogType, downstream: Downstream) -> StreamInfo {
        StreamInfo {
            span: None,
            log_type,
            start: SystemTime::now(),
            started: Instant::now(),
            ended: None,
            request_done: None,
            downstream,
            protocol: None,
            request: None,
            response_headers: None,
            response_trailers: None,
            code: 0,
            details: None,
            flags: Vec::new(),
            bytes_received: 0,
            bytes_sent: 0,
            route_name: None,
            upstream: Upstream::default(),
            attempts: 0,
            grpc: false,
            downstream_peer: None,
            upstream_peer: None,
        }
    }

    /// The request's size on the wire (HTTP/1 framing: request line, headers, body).
    pub fn wire_received(&self) -> u64 {
        let Some(r) = &self.request else {
            return self.bytes_received;
        };
        let line = r.method.len() + r.path.len() + 12;
        (line + headers_len(&r.headers) + 2) as u64 + self.bytes_received
    }

    /// The response's size on the wire (status line, headers, body).
    pub fn wire_sent(&self) -> u64 {
        let head = self
            .response_headers
            .as_ref()
            .map_or(0, |h| 17 + headers_len(h) + 2);
        head as u64 + self.bytes_sent
    }

    pub fn flag(&mut self, f: Flag) {
        if !self.flags.contains(&f) {
            self.flags.push(f);
        }
    }

    /// Milliseconds since the stream started, to `at`.
    pub fn ms_to(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.started).as_millis() as u64
    }
}

/// Numbers downstream connections, as Envoy's connection ids do.
pub fn next_connection_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Envoy's transport failure text for a connect error: `delayed_connect_error:` and the
/// error's description, spaces as underscores.
pub fn connect_failure(e: &std::io::Error) -> String {
    let text = match e.raw_os_error() {
        Some(code) => {
            let s = std::io::Error::from_raw_os_error(code).to_string();
            match s.find(" (os error") {
                Some(i) => s[..i].to_string(),
                None => s,
            }
        }
        None => e.to_string(),
    };
    format!("delayed_connect_error:_{}", text.replace(' ', "_"))
}

fn headers_len(h: &HeaderMap) -> usize {
    h.iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum()
}
