//! ext_authz over gRPC: the request's attributes go to `Authorization/Check` on a cluster; an
//! OK lets it on (with the header changes the service asks for), anything else answers it
//! here. Errors and timeouts answer `status_on_error` unless `failure_mode_allow`.

// `HeaderValueOption.append` is deprecated, and what Envoy 1.39 still reads for ext_authz.
#![allow(deprecated)]

use super::{Effects, FilterRequest};
use crate::config::filters::ext_authz::{ExtAuthzCfg, ExtAuthzStats, PerRoute};
use crate::http::body::ReqBody;
use crate::http::reply::Body;
use crate::stream_info::Flag;
use bytes::{BufMut, Bytes, BytesMut};
use envoy_types::pb::envoy::config::core::v3::{
    address, socket_address, Address, HeaderValueOption, Metadata, SocketAddress,
};
use envoy_types::pb::envoy::service::auth::v3::{
    attribute_context, check_response::HttpResponse, AttributeContext, CheckRequest, CheckResponse,
};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use prost::Message;
use std::collections::HashMap;

/// The namespace RBAC's shadow engine writes (Istio gates ext_authz on it).
pub const RBAC_NAMESPACE: &str = "envoy.filters.http.rbac";

static FAILURE_MODE_ALLOWED: HeaderName =
    HeaderName::from_static("x-envoy-auth-failure-mode-allowed");

/// What the service said.
enum Verdict {
    Ok(Box<CheckResponse>),
    Denied(Box<CheckResponse>),
    Error(Option<Box<CheckResponse>>),
}

pub async fn decode(
    cfg: &ExtAuthzCfg,
    stats: &ExtAuthzStats,
    per: Option<&PerRoute>,
    req: &FilterRequest<'_>,
    effects: &mut Effects,
) -> Option<Response<Body>> {
    if matches!(per, Some(PerRoute::Disabled(true))) || req.route.is_none() {
        return None;
    }
    if !enabled(cfg, effects) {
        stats.disabled.inc();
        if cfg.deny_at_disable {
            return Some(reply_error(cfg.status_on_error, None));
        }
        return None;
    }
    let ext = match per {
        Some(PerRoute::ContextExtensions(e)) => e.as_slice(),
        _ => &[],
    };
    let check = check_request(req, ext);
    match call(cfg, req, check).await {
        Verdict::Ok(resp) => {
            stats.ok.inc();
            route_stat(cfg, req, "ok");
            if let Some(HttpResponse::OkResponse(ok)) = resp.http_response {
                effects
                    .request
                    .extend(ok.headers.iter().filter_map(mutation));
                for name in &ok.headers_to_remove {
                    if let Ok(n) = HeaderName::from_bytes(name.as_bytes()) {
                        effects.request.push(Mutation::Remove(n));
                    }
                }
                for h in &ok.response_headers_to_add {
                    if let Some((n, v)) = pair(h) {
                        if h.append.is_some_and(|a| a.value) {
                            effects.added.push((n, v));
                        } else {
                            effects.headers.push((n, v));
                        }
                    }
                }
            }
            None
        }
        Verdict::Denied(resp) => {
            stats.denied.inc();
            route_stat(cfg, req, "denied");
            Some(denied(&resp))
        }
        Verdict::Error(resp) => {
            stats.error.inc();
            route_stat(cfg, req, "error");
            if cfg.failure_mode_allow {
                stats.failure_mode_allowed.inc();
                route_stat(cfg, req, "failure_mode_allowed");
                if cfg.failure_mode_allow_header_add {
                    effects.request.push(Mutation::Set(
                        FAILURE_MODE_ALLOWED.clone(),
                        HeaderValue::from_static("true"),
                    ));
                }
                return None;
            }
            Some(reply_error(cfg.status_on_error, resp.as_deref()))
        }
    }
}

/// `filter_enabled` and `filter_enabled_metadata`.
fn enabled(cfg: &ExtAuthzCfg, effects: &Effects) -> bool {
    if cfg.filter_enabled.is_some_and(|p| !p.draw()) {
        return false;
    }
    match &cfg.filter_enabled_metadata {
        None => true,
        Some(g) => {
            let v = effects
                .metadata
                .iter()
                .find(|(f, k, _)| *f == g.filter && *k == g.key)
                .map(|(_, _, v)| v.as_str());
            v.is_some_and(|v| g.value.matches(v)) != g.invert
        }
    }
}

/// `cluster.<route cluster>.ext_authz.[<stat_prefix>.]<name>`, made on first use as Envoy
/// does.
fn route_stat(cfg: &ExtAuthzCfg, req: &FilterRequest<'_>, name: &str) {
    if let Some(c) = req.cluster {
        let stat = req
            .conn
            .server
            .snapshot
            .load()
            .cluster(c)
            .map(|c| c.cfg.stat_name.clone());
        if let Some(s) = stat {
            crate::stats::registry()
                .counter(
                    crate::stats::Scope::Cluster(&s),
                    &if cfg.stat_prefix.is_empty() {
                        format!("ext_authz.{name}")
                    } else {
                        format!("ext_authz.{}.{name}", cfg.stat_prefix)
                    },
                )
                .inc();
        }
    }
}

/// A request header change an OK asks for.
pub enum Mutation {
    Set(HeaderName, HeaderValue),
    /// Appended to the header, comma-joined, when it is there (else dropped, as Envoy does).
    Append(HeaderName, HeaderValue),
    Remove(HeaderName),
}

fn pair(h: &HeaderValueOption) -> Option<(HeaderName, HeaderValue)> {
    let hv = h.header.as_ref()?;
    let value = if hv.raw_value.is_empty() {
        hv.value.as_bytes()
    } else {
        &hv.raw_value
    };
    Some((
        HeaderName::from_bytes(hv.key.as_bytes()).ok()?,
        HeaderValue::from_bytes(value).ok()?,
    ))
}

fn mutation(h: &HeaderValueOption) -> Option<Mutation> {
    let (n, v) = pair(h)?;
    Some(if h.append.is_some_and(|a| a.value) {
        Mutation::Append(n, v)
    } else {
        Mutation::Set(n, v)
    })
}

/// Applies the OK's changes to the request about to be forwarded.
pub fn apply(h: &mut HeaderMap, muts: Vec<Mutation>) {
    for m in muts {
        match m {
            Mutation::Set(n, v) => {
                h.insert(n, v);
            }
            Mutation::Append(n, v) => {
                let joined = h.get_all(&n).iter().fold(Vec::new(), |mut acc, x| {
                    if !acc.is_empty() {
                        acc.push(b',');
                    }
                    acc.extend_from_slice(x.as_bytes());
                    acc
                });
                if !joined.is_empty() {
                    let mut all = joined;
                    all.push(b',');
                    all.extend_from_slice(v.as_bytes());
                    if let Ok(v) = HeaderValue::from_bytes(&all) {
                        h.insert(n, v);
                    }
                }
            }
            Mutation::Remove(n) => {
                if n != http::header::HOST {
                    h.remove(n);
                }
            }
        }
    }
}

/// The denied reply: the service's status (403 by default), headers and body.
fn denied(resp: &CheckResponse) -> Response<Body> {
    let Some(HttpResponse::DeniedResponse(d)) = &resp.http_response else {
        return tagged(StatusCode::FORBIDDEN, Bytes::new(), &[], "ext_authz_denied");
    };
    let status = d
        .status
        .as_ref()
        .and_then(|s| u16::try_from(s.code).ok())
        .and_then(|c| StatusCode::from_u16(c).ok())
        .filter(|c| c.as_u16() >= 100 && c.as_u16() != 0)
        .unwrap_or(StatusCode::FORBIDDEN);
    tagged(
        status,
        Bytes::from(d.body.clone()),
        &d.headers,
        "ext_authz_denied",
    )
}

fn reply_error(status: u16, resp: Option<&CheckResponse>) -> Response<Body> {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN);
    match resp.and_then(|r| r.http_response.as_ref()) {
        Some(HttpResponse::ErrorResponse(e)) => {
            let status = e
                .status
                .as_ref()
                .and_then(|s| u16::try_from(s.code).ok())
                .filter(|c| *c != 0)
                .and_then(|c| StatusCode::from_u16(c).ok())
                .unwrap_or(status);
            tagged(
                status,
                Bytes::from(e.body.clone()),
                &e.headers,
                "ext_authz_error",
            )
        }
        _ => tagged(status, Bytes::new(), &[], "ext_authz_error"),
    }
}

/// A local reply with the service's headers (those not appended), flag UAEX.
fn tagged(
    status: StatusCode,
    body: Bytes,
    headers: &[HeaderValueOption],
    details: &'static str,
) -> Response<Body> {
    let empty = body.is_empty();
    let mut r = Response::new(if empty {
        Body::empty()
    } else {
        Body::full(body)
    });
    *r.status_mut() = status;
    let h = r.headers_mut();
    if !empty {
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain"),
        );
    }
    let set: Vec<(HeaderName, HeaderValue)> = headers
        .iter()
        .filter(|o| !o.append.is_some_and(|a| a.value))
        .filter_map(pair)
        .collect();
    for (n, _) in &set {
        h.remove(n);
    }
    for (n, v) in set {
        h.append(n, v);
    }
    crate::http::logged::tag(r, Some(Flag::UnauthorizedExternalService), details)
}

fn socket(a: std::net::SocketAddr) -> Address {
    Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: a.ip().to_canonical().to_string(),
            port_specifier: Some(socket_address::PortSpecifier::PortValue(u32::from(
                a.port(),
            ))),
            ..Default::default()
        })),
    }
}

/// The attributes Envoy sends for an HTTP request.
fn check_request(req: &FilterRequest<'_>, ext: &[(String, String)]) -> CheckRequest {
    let s = &req.subject;
    let peer = req.conn.peer.as_ref();
    let mut headers: HashMap<String, String> = HashMap::new();
    let host = req
        .headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let scheme = if req.conn.tls { "https" } else { "http" };
    headers.insert(":authority".into(), host.clone());
    headers.insert(":method".into(), s.method.to_string());
    headers.insert(":path".into(), s.path.to_string());
    headers.insert(":scheme".into(), scheme.into());
    for (n, v) in req.headers {
        if n == http::header::HOST {
            continue;
        }
        let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
        headers
            .entry(n.as_str().to_string())
            .and_modify(|e| {
                e.push(',');
                e.push_str(&v);
            })
            .or_insert(v);
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    CheckRequest {
        attributes: Some(AttributeContext {
            source: Some(attribute_context::Peer {
                address: Some(socket(s.remote)),
                principal: peer
                    .and_then(|p| p.uris.first().cloned())
                    .unwrap_or_default(),
                ..Default::default()
            }),
            destination: Some(attribute_context::Peer {
                address: Some(socket(s.local)),
                principal: peer.and_then(|p| p.local_uri.clone()).unwrap_or_default(),
                ..Default::default()
            }),
            request: Some(attribute_context::Request {
                time: Some(envoy_types::pb::google::protobuf::Timestamp {
                    seconds: now.as_secs() as i64,
                    nanos: now.subsec_nanos() as i32,
                }),
                http: Some(attribute_context::HttpRequest {
                    id: fastrand::u64(..).to_string(),
                    method: s.method.to_string(),
                    headers,
                    path: s.path.to_string(),
                    host,
                    scheme: scheme.into(),
                    protocol: req.format.protocol.to_string(),
                    ..Default::default()
                }),
            }),
            context_extensions: ext.iter().cloned().collect(),
            metadata_context: Some(Metadata::default()),
            route_metadata_context: Some(Metadata::default()),
            ..Default::default()
        }),
    }
}

/// One gRPC call to the service's cluster, within the timeout.
async fn call(cfg: &ExtAuthzCfg, req: &FilterRequest<'_>, check: CheckRequest) -> Verdict {
    match tokio::time::timeout(cfg.timeout, exchange(cfg, req, check)).await {
        Ok(Some(resp)) => {
            let code = resp.status.as_ref().map_or(0, |s| s.code);
            match (code, &resp.http_response) {
                (_, Some(HttpResponse::ErrorResponse(_))) => Verdict::Error(Some(Box::new(resp))),
                (0, _) => Verdict::Ok(Box::new(resp)),
                _ => Verdict::Denied(Box::new(resp)),
            }
        }
        _ => Verdict::Error(None),
    }
}

async fn exchange(
    cfg: &ExtAuthzCfg,
    req: &FilterRequest<'_>,
    check: CheckRequest,
) -> Option<CheckResponse> {
    let snapshot = req.conn.server.snapshot.load();
    let cluster = snapshot.cluster(&cfg.cluster)?.clone();
    let lb = crate::cluster::LbContext {
        original_dst: None,
        headers: None,
        hash: None,
        local_cluster: None,
    };
    let host = cluster.pick(&lb)?;
    let msg = check.encode_to_vec();
    let mut frame = BytesMut::with_capacity(5 + msg.len());
    frame.put_u8(0);
    frame.put_u32(msg.len() as u32);
    frame.put_slice(&msg);
    let ms = cfg.timeout.as_millis();
    let mut r = Request::post(format!(
        "http://{}/envoy.service.auth.v3.Authorization/Check",
        cfg.authority
    ))
    .version(http::Version::HTTP_2)
    .header(http::header::CONTENT_TYPE, "application/grpc")
    .header(http::header::TE, "trailers")
    .header("grpc-timeout", format!("{ms}m"))
    .header("x-envoy-internal", "true")
    .header("x-envoy-expected-rq-timeout-ms", ms.to_string());
    if let Some(ip) = crate::util::local_address() {
        r = r.header("x-forwarded-for", ip.to_string());
    }
    let r = r.body(ReqBody::Full(Some(frame.freeze()))).ok()?;
    let (resp, _active) = host.pool.send_h2(&host, r, None).await.ok()?;
    if resp.status() != StatusCode::OK {
        return None;
    }
    let status_in_headers = resp.headers().get("grpc-status").cloned();
    let collected = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .ok()?;
    let trailers = collected.trailers().cloned();
    let grpc_status = trailers
        .as_ref()
        .and_then(|t| t.get("grpc-status").cloned())
        .or(status_in_headers);
    if grpc_status.as_ref().map(|v| v.as_bytes()) != Some(b"0") {
        return None;
    }
    let body = collected.to_bytes();
    let len = u32::from_be_bytes(body.get(1..5)?.try_into().ok()?) as usize;
    if body.first() != Some(&0) {
        return None;
    }
    CheckResponse::decode(body.get(5..5 + len)?).ok()
}
