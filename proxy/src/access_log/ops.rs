//! Envoy's command operators: what each reads from a stream's [`StreamInfo`] and the type of
//! its value (typed JSON prints numbers as numbers, unset values as `null`).

use crate::config::{err, Result};
use crate::stream_info::StreamInfo;
use http::HeaderName;
use std::borrow::Cow;
use std::net::SocketAddr;

/// A header operand: a pseudo-header or a header name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HdrName {
    Method,
    Path,
    Authority,
    Scheme,
    Status,
    Name(HeaderName),
}

/// `REQ(MAIN?ALT)`: the first of the two that is present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hdr {
    main: HdrName,
    alt: Option<HdrName>,
}

impl Hdr {
    pub fn new(main: &str, alt: Option<&str>, path: &str) -> Result<Hdr> {
        Ok(Hdr {
            main: hdr_name(main, path)?,
            alt: alt.map(|a| hdr_name(a, path)).transpose()?,
        })
    }
}

fn hdr_name(s: &str, path: &str) -> Result<HdrName> {
    let lower = s.to_ascii_lowercase();
    Ok(match lower.as_str() {
        ":method" => HdrName::Method,
        ":path" => HdrName::Path,
        ":authority" | "host" => HdrName::Authority,
        ":scheme" => HdrName::Scheme,
        ":status" => HdrName::Status,
        n => HdrName::Name(HeaderName::from_bytes(n.as_bytes()).map_err(|_| {
            crate::config::ConfigError {
                path: path.to_string(),
                msg: format!("invalid header name '{s}'"),
            }
        })?),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addr {
    Full,
    NoPort,
    Port,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrpcForm {
    Camel,
    Snake,
    Number,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    StartTime(Option<String>),
    Req(Hdr),
    Resp(Hdr),
    Trailer(Hdr),
    ResponseCode,
    ResponseCodeDetails,
    ConnectionTerminationDetails,
    ResponseFlags,
    ResponseFlagsLong,
    BytesReceived,
    BytesSent,
    Duration,
    RequestDuration,
    ResponseDuration,
    ResponseTxDuration,
    Protocol,
    UpstreamProtocol,
    UpstreamHost,
    UpstreamCluster,
    UpstreamClusterRaw,
    UpstreamLocalAddress(Addr),
    UpstreamRemoteAddress(Addr),
    UpstreamTransportFailureReason,
    DownstreamLocal(Addr),
    DownstreamRemote(Addr),
    RequestedServerName,
    RouteName,
    VirtualClusterName,
    Hostname,
    AttemptCount,
    AccessLogType,
    Environment(String),
    LocalReplyBody,
    StreamId,
    ConnectionId,
    GrpcStatus(GrpcForm),
    DownstreamPeerUriSan,
    /// The downstream TLS operators (`tls_ops.rs`).
    Tls(super::tls_ops::TlsOp),
}

/// An operator's value.
pub enum Val<'a> {
    /// Not available: `-` in text, `null` in typed JSON.
    None,
    Str(Cow<'a, str>),
    Num(u64),
}

impl Op {
    pub fn parse(name: &str, arg: Option<&str>, path: &str) -> Result<Op> {
        let no_arg = |op: Op| -> Result<Op> {
            match arg {
                Some(_) => err(path, format!("%{name}% takes no argument")),
                None => Ok(op),
            }
        };
        let addr = |base: &str| -> Option<Addr> {
            let rest = name.strip_prefix(base)?;
            match rest {
                "" => Some(Addr::Full),
                "_WITHOUT_PORT" => Some(Addr::NoPort),
                "_PORT" => Some(Addr::Port),
                _ => None,
            }
        };
        if let Some(a) = addr("DOWNSTREAM_LOCAL_ADDRESS") {
            return no_arg(Op::DownstreamLocal(a));
        }
        if let Some(a) =
            addr("DOWNSTREAM_REMOTE_ADDRESS").or_else(|| addr("DOWNSTREAM_DIRECT_REMOTE_ADDRESS"))
        {
            return no_arg(Op::DownstreamRemote(a));
        }
        if name == "DOWNSTREAM_LOCAL_PORT" {
            return no_arg(Op::DownstreamLocal(Addr::Port));
        }
        if name == "DOWNSTREAM_REMOTE_PORT" || name == "DOWNSTREAM_DIRECT_REMOTE_PORT" {
            return no_arg(Op::DownstreamRemote(Addr::Port));
        }
        if let Some(a) = addr("UPSTREAM_LOCAL_ADDRESS") {
            return no_arg(Op::UpstreamLocalAddress(a));
        }
        if let Some(a) = addr("UPSTREAM_REMOTE_ADDRESS") {
            return no_arg(Op::UpstreamRemoteAddress(a));
        }
        if let Some(t) = super::tls_ops::TlsOp::parse(name) {
            return no_arg(Op::Tls(t));
        }
        let op = match name {
            "START_TIME" => return Ok(Op::StartTime(arg.filter(|a| !a.is_empty()).map(str::to_string))),
            "REQ" => return Ok(Op::Req(super::format::header_arg(arg, name, path)?)),
            "RESP" => return Ok(Op::Resp(super::format::header_arg(arg, name, path)?)),
            "TRAILER" => return Ok(Op::Trailer(super::format::header_arg(arg, name, path)?)),
            "ENVIRONMENT" => match arg {
                Some(a) if !a.is_empty() => return Ok(Op::Environment(a.to_string())),
                _ => return err(path, "ENVIRONMENT requires parameters"),
            },
            "GRPC_STATUS" => {
                return Ok(Op::GrpcStatus(match arg.unwrap_or("") {
                    "" | "CAMEL_STRING" => GrpcForm::Camel,
                    "SNAKE_STRING" => GrpcForm::Snake,
                    "NUMBER" => GrpcForm::Number,
                    other => {
                        return err(path, format!("GrpcStatusFormatter only supports CAMEL_STRING, SNAKE_STRING or NUMBER; got {other}"))
                    }
                }))
            }
            "RESPONSE_CODE" => Op::ResponseCode,
            "RESPONSE_CODE_DETAILS" => Op::ResponseCodeDetails,
            "CONNECTION_TERMINATION_DETAILS" => Op::ConnectionTerminationDetails,
            "RESPONSE_FLAGS" => Op::ResponseFlags,
            "RESPONSE_FLAGS_LONG" => Op::ResponseFlagsLong,
            "BYTES_RECEIVED" => Op::BytesReceived,
            "BYTES_SENT" => Op::BytesSent,
            "DURATION" => Op::Duration,
            "REQUEST_DURATION" => Op::RequestDuration,
            "RESPONSE_DURATION" => Op::ResponseDuration,
            "RESPONSE_TX_DURATION" => Op::ResponseTxDuration,
            "PROTOCOL" => Op::Protocol,
            "UPSTREAM_PROTOCOL" => Op::UpstreamProtocol,
            "UPSTREAM_HOST" => Op::UpstreamHost,
            "UPSTREAM_CLUSTER" => Op::UpstreamCluster,
            "UPSTREAM_CLUSTER_RAW" => Op::UpstreamClusterRaw,
            "UPSTREAM_TRANSPORT_FAILURE_REASON" => Op::UpstreamTransportFailureReason,
            "REQUESTED_SERVER_NAME" => Op::RequestedServerName,
            "ROUTE_NAME" => Op::RouteName,
            "VIRTUAL_CLUSTER_NAME" => Op::VirtualClusterName,
            "HOSTNAME" => Op::Hostname,
            "UPSTREAM_REQUEST_ATTEMPT_COUNT" => Op::AttemptCount,
            "ACCESS_LOG_TYPE" => Op::AccessLogType,
            "LOCAL_REPLY_BODY" => Op::LocalReplyBody,
            "STREAM_ID" => Op::StreamId,
            "CONNECTION_ID" => Op::ConnectionId,
            "DOWNSTREAM_PEER_URI_SAN" => Op::DownstreamPeerUriSan,
            other if KNOWN_UNSUPPORTED.contains(&other) => {
                return err(path, format!("%{other}% is not supported by Ferry"))
            }
            other => return err(path, format!("Not supported field in StreamInfo: {other}")),
        };
        no_arg(op)
    }

    /// The value for one stream.
    pub fn eval<'a>(&self, s: &'a StreamInfo) -> Val<'a> {
        let opt_str = |v: Option<&'a str>| v.map_or(Val::None, |v| Val::Str(Cow::Borrowed(v)));
        match self {
            Op::StartTime(fmt) => {
                let c = crate::clock::Civil::of(s.start);
                let mut out = String::new();
                match fmt {
                    None => c.rfc3339_millis(&mut out),
                    Some(f) => crate::clock::strftime(f, &c, &mut out),
                }
                Val::Str(Cow::Owned(out))
            }
            Op::Req(h) => request_header(s, h),
            Op::Resp(h) => response_header(s, s.response_headers.as_ref(), h),
            Op::Trailer(h) => response_header(s, s.response_trailers.as_ref(), h),
            Op::ResponseCode => Val::Num(u64::from(s.code)),
            Op::ResponseCodeDetails => opt_str(s.details.as_deref()),
            Op::ConnectionTerminationDetails => Val::None,
            Op::ResponseFlags | Op::ResponseFlagsLong => {
                if s.flags.is_empty() {
                    return Val::Str(Cow::Borrowed("-"));
                }
                let long = *self == Op::ResponseFlagsLong;
                let names: Vec<&str> = s
                    .flags
                    .iter()
                    .map(|f| if long { f.long() } else { f.code() })
                    .collect();
                Val::Str(Cow::Owned(names.join(",")))
            }
            Op::BytesReceived => Val::Num(s.bytes_received),
            Op::BytesSent => Val::Num(s.bytes_sent),
            Op::Duration => s.ended.map_or(Val::None, |e| Val::Num(s.ms_to(e))),
            Op::RequestDuration => s.request_done.map_or(Val::None, |e| Val::Num(s.ms_to(e))),
            Op::ResponseDuration => s
                .upstream
                .first_byte
                .map_or(Val::None, |e| Val::Num(s.ms_to(e))),
            Op::ResponseTxDuration => match (s.upstream.first_byte, s.ended) {
                (Some(f), Some(e)) => Val::Num(e.saturating_duration_since(f).as_millis() as u64),
                _ => Val::None,
            },
            Op::Protocol => opt_str(s.protocol),
            Op::UpstreamProtocol => opt_str(s.upstream.protocol),
            Op::UpstreamHost => addr(s.upstream.host, Addr::Full),
            Op::UpstreamCluster => opt_str(s.upstream.cluster.as_ref().map(|c| &*c.1)),
            Op::UpstreamClusterRaw => opt_str(s.upstream.cluster.as_ref().map(|c| &*c.0)),
            Op::UpstreamLocalAddress(a) => addr(s.upstream.local, *a),
            Op::UpstreamRemoteAddress(a) => addr(s.upstream.local.and(s.upstream.host), *a),
            Op::UpstreamTransportFailureReason => opt_str(s.upstream.failure.as_deref()),
            Op::DownstreamLocal(a) => addr(Some(s.downstream.local), *a),
            Op::DownstreamRemote(a) => addr(Some(s.downstream.remote), *a),
            Op::RequestedServerName => opt_str(
                s.downstream
                    .peer
                    .as_ref()
                    .and_then(|p| p.sni.as_deref())
                    .filter(|n| !n.is_empty()),
            ),
            Op::RouteName => opt_str(s.route_name.as_deref().filter(|n| !n.is_empty())),
            Op::VirtualClusterName => Val::None,
            Op::Hostname => Val::Str(Cow::Owned(crate::util::hostname())),
            Op::AttemptCount => Val::Num(u64::from(s.attempts)),
            Op::AccessLogType => Val::Str(Cow::Borrowed(s.log_type.name())),
            Op::Environment(var) => Val::Str(Cow::Owned(
                std::env::var(var).unwrap_or_else(|_| "-".to_string()),
            )),
            Op::LocalReplyBody => match s.request {
                Some(_) => Val::Str(Cow::Borrowed("")),
                None => Val::None,
            },
            Op::StreamId => match &s.request {
                Some(r) => opt_str(r.headers.get("x-request-id").and_then(|v| v.to_str().ok())),
                None => Val::None,
            },
            Op::ConnectionId => Val::Num(s.downstream.connection_id),
            Op::GrpcStatus(form) => grpc_status(s, *form),
            Op::Tls(t) => t.eval(s),
            Op::DownstreamPeerUriSan => match s.downstream.peer.as_ref() {
                Some(p) if !p.uris.is_empty() => Val::Str(Cow::Owned(p.uris.join(","))),
                _ => Val::None,
            },
        }
    }
}

/// Envoy operators Ferry does not have yet: refused by name rather than printed wrongly.
const KNOWN_UNSUPPORTED: &[&str] = &[
    "DYNAMIC_METADATA",
    "CLUSTER_METADATA",
    "UPSTREAM_METADATA",
    "FILTER_STATE",
    "UPSTREAM_FILTER_STATE",
    "METADATA",
    "CEL",
    "REQ_WITHOUT_QUERY",
    "REQUEST_HEADERS_BYTES",
    "RESPONSE_HEADERS_BYTES",
    "RESPONSE_TRAILERS_BYTES",
    "REQUEST_TX_DURATION",
    "DOWNSTREAM_TLS_SESSION_ID",
    "DOWNSTREAM_LOCAL_SUBJECT",
    "DOWNSTREAM_LOCAL_DNS_SAN",
    "DOWNSTREAM_PEER_CERT",
    "UPSTREAM_PEER_URI_SAN",
    "UPSTREAM_PEER_SUBJECT",
    "UPSTREAM_TLS_VERSION",
    "UPSTREAM_WIRE_BYTES_SENT",
    "UPSTREAM_WIRE_BYTES_RECEIVED",
    "DOWNSTREAM_WIRE_BYTES_SENT",
    "DOWNSTREAM_WIRE_BYTES_RECEIVED",
    "TRACE_ID",
    "UNIQUE_ID",
];

fn addr(a: Option<SocketAddr>, form: Addr) -> Val<'static> {
    match (a, form) {
        (None, _) => Val::None,
        (Some(a), Addr::Full) => Val::Str(Cow::Owned(a.to_string())),
        (Some(a), Addr::NoPort) => Val::Str(Cow::Owned(a.ip().to_string())),
        (Some(a), Addr::Port) => Val::Num(u64::from(a.port())),
    }
}

fn request_header<'a>(s: &'a StreamInfo, h: &Hdr) -> Val<'a> {
    let Some(r) = s.request.as_ref() else {
        return Val::None;
    };
    let get = |n: &HdrName| -> Option<&'a str> {
        match n {
            HdrName::Method => Some(r.method.as_str()),
            HdrName::Path => Some(r.path.as_str()),
            HdrName::Scheme => Some(r.scheme),
            HdrName::Authority => r
                .headers
                .get(http::header::HOST)
                .and_then(|v| v.to_str().ok()),
            HdrName::Status => None,
            HdrName::Name(n) => r.headers.get(n).and_then(|v| v.to_str().ok()),
        }
    };
    match get(&h.main).or_else(|| h.alt.as_ref().and_then(get)) {
        Some(v) => Val::Str(Cow::Borrowed(v)),
        None => Val::None,
    }
}

fn response_header<'a>(s: &'a StreamInfo, map: Option<&'a http::HeaderMap>, h: &Hdr) -> Val<'a> {
    let get = |n: &HdrName| -> Option<Cow<'a, str>> {
        match n {
            HdrName::Status => map.map(|_| Cow::Owned(s.code.to_string())),
            HdrName::Name(n) => map?.get(n)?.to_str().ok().map(Cow::Borrowed),
            _ => None,
        }
    };
    match get(&h.main).or_else(|| h.alt.as_ref().and_then(get)) {
        Some(v) => Val::Str(v),
        None => Val::None,
    }
}

const GRPC_NAMES: [&str; 17] = [
    "Ok",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];

/// The gRPC status of a gRPC request: `grpc-status` from the trailers, else the headers.
pub fn grpc_code(s: &StreamInfo) -> Option<u64> {
    if !s.grpc {
        return None;
    }
    let find = |m: Option<&http::HeaderMap>| {
        m?.get("grpc-status")?
            .to_str()
            .ok()?
            .trim()
            .parse::<u64>()
            .ok()
    };
    find(s.response_trailers.as_ref()).or_else(|| find(s.response_headers.as_ref()))
}

fn grpc_status(s: &StreamInfo, form: GrpcForm) -> Val<'static> {
    let Some(code) = grpc_code(s) else {
        return Val::None;
    };
    let name = GRPC_NAMES.get(code as usize).copied();
    match (form, name) {
        (GrpcForm::Number, _) | (_, None) => Val::Num(code),
        (GrpcForm::Camel, Some(n)) => Val::Str(Cow::Borrowed(n)),
        (GrpcForm::Snake, Some(n)) => {
            let mut out = String::new();
            for (i, ch) in n.chars().enumerate() {
                if ch.is_ascii_uppercase() && i > 0 {
                    out.push('_');
                }
                out.push(ch.to_ascii_uppercase());
            }
            Val::Str(Cow::Owned(out))
        }
    }
}
