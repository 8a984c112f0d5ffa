//! ext_authz's gRPC side: the CheckRequest Envoy sends for an HTTP request, the call to
//! `envoy.service.auth.v3.Authorization/Check` on the service's cluster, and what its
//! CheckResponse means.

// `HeaderValueOption.append` is deprecated, and what Envoy 1.39 still reads for ext_authz.
#![allow(deprecated)]

use super::ext_authz::{service_host, Mutation, Outcome};
use super::FilterRequest;
use crate::config::filters::ext_authz::ExtAuthzCfg;
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
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use prost::Message;
use std::collections::HashMap;

/// What the service said.
pub(crate) enum Verdict {
    Ok(Box<CheckResponse>),
    Denied(Box<CheckResponse>),
    Error(Option<Box<CheckResponse>>),
}

pub(super) fn grpc_outcome(cfg: &ExtAuthzCfg, v: Verdict) -> Outcome {
    match v {
        Verdict::Ok(resp) => {
            let (mut request, mut set, mut add) = (Vec::new(), Vec::new(), Vec::new());
            if let Some(HttpResponse::OkResponse(ok)) = resp.http_response {
                request.extend(ok.headers.iter().filter_map(mutation));
                for name in &ok.headers_to_remove {
                    if let Ok(n) = HeaderName::from_bytes(name.as_bytes()) {
                        request.push(Mutation::Remove(n));
                    }
                }
                for q in &ok.query_parameters_to_set {
                    request.push(Mutation::QuerySet(q.key.clone(), q.value.clone()));
                }
                for k in &ok.query_parameters_to_remove {
                    request.push(Mutation::QueryRemove(k.clone()));
                }
                for h in &ok.response_headers_to_add {
                    if let Some((n, v)) = pair(h) {
                        if h.append.is_some_and(|a| a.value) {
                            add.push((n, v));
                        } else {
                            set.push((n, v));
                        }
                    }
                }
            }
            Outcome::Allow { request, set, add }
        }
        Verdict::Denied(resp) => Outcome::Deny(denied(&resp)),
        Verdict::Error(resp) => Outcome::Error(
            resp.filter(|r| matches!(r.http_response, Some(HttpResponse::ErrorResponse(_))))
                .map(|r| reply_error(cfg.status_on_error, Some(&r))),
        ),
    }
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

pub(super) fn reply_error(status: u16, resp: Option<&CheckResponse>) -> Response<Body> {
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
pub(super) fn tagged(
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

pub(crate) fn socket(a: std::net::SocketAddr) -> Address {
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

/// `source.certificate` with `include_peer_certificate`: the client's certificate, PEM,
/// URL-encoded.
pub(crate) fn peer_certificate(peer: Option<&crate::io::Peer>, include: bool) -> String {
    match peer.and_then(|p| p.cert.as_deref()) {
        Some(c) if include => crate::http::xfcc::url_encoded_pem(&[c]),
        _ => String::new(),
    }
}

/// The attributes Envoy sends for an HTTP request.
pub(super) fn check_request(
    req: &FilterRequest<'_>,
    ext: &[(String, String)],
    sent: Option<(crate::http::down::ReadAhead, bool)>,
    include_cert: bool,
) -> CheckRequest {
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
    let (mut body, mut raw_body, mut size) = (String::new(), Vec::new(), 0);
    if let Some((ahead, as_bytes)) = sent {
        let partial = !ahead.complete || ahead.received > ahead.data.len() as u64;
        headers.insert(
            "x-envoy-auth-partial-body".into(),
            if partial { "true" } else { "false" }.into(),
        );
        size = ahead.received as i64;
        if as_bytes {
            raw_body = ahead.data.to_vec();
        } else {
            body = String::from_utf8_lossy(&ahead.data).into_owned();
        }
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
                certificate: peer_certificate(req.conn.peer.as_ref(), include_cert),
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
                    size,
                    body,
                    raw_body,
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
pub(crate) async fn call(
    cfg: &ExtAuthzCfg,
    server: &crate::snapshot::Server,
    check: CheckRequest,
) -> Verdict {
    match tokio::time::timeout(cfg.timeout, exchange(cfg, server, check)).await {
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
    server: &crate::snapshot::Server,
    check: CheckRequest,
) -> Option<CheckResponse> {
    let (_, host) = service_host(cfg, server)?;
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
    for (n, v) in &cfg.metadata {
        r = r.header(n, v);
    }
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
