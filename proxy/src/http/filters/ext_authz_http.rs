//! ext_authz over HTTP (`http_service`): the request's method and path (after `path_prefix`)
//! with a few of its headers go to the service; 200 allows, a 5xx is an error, any other
//! status is the answer the client gets.

use super::ext_authz::{Mutation, Outcome};
use super::FilterRequest;
use crate::config::cluster::UpstreamProtocol;
use crate::config::filters::ext_authz::{ExtAuthzCfg, HttpCfg};
use crate::config::matcher::StringMatch;
use crate::http::body::ReqBody;
use crate::http::down::ReadAhead;
use crate::http::reply::Body;
use crate::stream_info::Flag;
use http::{header, HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};

static HEADERS_TO_REMOVE: HeaderName = HeaderName::from_static("x-envoy-auth-headers-to-remove");

fn any(ms: &[StringMatch], name: &HeaderName) -> bool {
    ms.iter().any(|m| m.matches(name.as_str()))
}

pub async fn call(
    cfg: &ExtAuthzCfg,
    h: &HttpCfg,
    req: &FilterRequest<'_>,
    sent: Option<&ReadAhead>,
) -> Outcome {
    let started = std::time::Instant::now();
    let answer = tokio::time::timeout(cfg.timeout, exchange(cfg, h, req, sent)).await;
    let Ok(Some((status, headers, body))) = answer else {
        return Outcome::Error(None);
    };
    if status == StatusCode::OK {
        let mut request = Vec::new();
        let mut add = Vec::new();
        for (n, v) in &headers {
            if any(&h.upstream, n) {
                request.push(Mutation::Set(n.clone(), v.clone()));
            }
            if any(&h.upstream_append, n) {
                request.push(Mutation::Add(n.clone(), v.clone()));
            }
            if any(&h.client_on_success, n) {
                add.push((n.clone(), v.clone()));
            }
        }
        for v in headers.get_all(&HEADERS_TO_REMOVE) {
            for name in v.to_str().unwrap_or("").split(',') {
                if let Ok(n) = HeaderName::from_bytes(name.trim().as_bytes()) {
                    request.push(Mutation::Remove(n));
                }
            }
        }
        return Outcome::Allow {
            request,
            set: Vec::new(),
            add,
        };
    }
    if status.is_server_error() {
        return Outcome::Error(None);
    }
    // A denial: the service's status, body and headers go to the client.
    let mut r = Response::new(if body.is_empty() {
        Body::empty()
    } else {
        Body::full(body.clone())
    });
    *r.status_mut() = status;
    let out = r.headers_mut();
    match &h.client {
        None => {
            for (n, v) in &headers {
                if !matches!(
                    *n,
                    header::HOST | header::CONTENT_LENGTH | header::TRANSFER_ENCODING
                ) && n != "connection"
                    && n != "keep-alive"
                {
                    out.append(n.clone(), v.clone());
                }
            }
            // Envoy's own client adds the service's time, and it goes on with the rest.
            if let Ok(v) = HeaderValue::from_str(&started.elapsed().as_millis().to_string()) {
                out.insert("x-envoy-upstream-service-time", v);
            }
        }
        Some(allowed) => {
            for (n, v) in &headers {
                if any(allowed, n) || matches!(*n, header::WWW_AUTHENTICATE | header::LOCATION) {
                    out.append(n.clone(), v.clone());
                }
            }
            if !body.is_empty() {
                out.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            }
        }
    }
    Outcome::Deny(crate::http::logged::tag(
        r,
        Some(Flag::UnauthorizedExternalService),
        "ext_authz_denied",
    ))
}

async fn exchange(
    cfg: &ExtAuthzCfg,
    h: &HttpCfg,
    req: &FilterRequest<'_>,
    sent: Option<&ReadAhead>,
) -> Option<(StatusCode, HeaderMap, bytes::Bytes)> {
    let (cluster, host) = super::ext_authz::service_host(cfg, &req.conn.server)?;
    let path = format!("{}{}", h.path_prefix, req.subject.path);
    let h2 = cluster.cfg.protocol == UpstreamProtocol::Http2;
    let authority = req
        .headers
        .get(header::HOST)
        .cloned()
        .unwrap_or(HeaderValue::from_static(""));
    let uri = if h2 {
        format!("http://{}{path}", authority.to_str().unwrap_or("localhost"))
    } else {
        path
    };
    let mut b = Request::builder()
        .method(req.subject.method)
        .uri(uri)
        .version(if h2 {
            http::Version::HTTP_2
        } else {
            http::Version::HTTP_11
        });
    let headers = b.headers_mut()?;
    headers.insert(header::HOST, authority);
    for (n, v) in req.headers {
        if (n == header::AUTHORIZATION || any(&h.allowed_headers, n))
            && n != header::HOST
            && n != header::CONTENT_LENGTH
        {
            headers.append(n.clone(), v.clone());
        }
    }
    for (n, v) in &h.headers_to_add {
        headers.insert(n.clone(), v.clone());
    }
    let body = sent.map(|a| a.data.clone()).unwrap_or_default();
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    if let Some(a) = sent {
        let partial = !a.complete || a.received > a.data.len() as u64;
        headers.insert(
            "x-envoy-auth-partial-body",
            HeaderValue::from_static(if partial { "true" } else { "false" }),
        );
    }
    headers.insert("x-envoy-internal", HeaderValue::from_static("true"));
    headers.insert(
        "x-envoy-expected-rq-timeout-ms",
        HeaderValue::from(cfg.timeout.as_millis() as u64),
    );
    let r = b.body(ReqBody::Full(Some(body))).ok()?;
    let (resp, _active) = if h2 {
        host.pool.send_h2(&host, r, None).await.ok()?
    } else {
        host.pool.send_h1(&host, r, None).await.ok()?
    };
    let (parts, incoming) = resp.into_parts();
    let bytes = http_body_util::BodyExt::collect(incoming)
        .await
        .ok()?
        .to_bytes();
    Some((parts.status, parts.headers, bytes))
}
