//! Per-request routing: virtual host and route selection, then the route's action (forward,
//! redirect, direct response). Pure matching lives in `config::route`; this is the thin I/O part.

use super::fctx::{finalize_response, format_ctx};
use super::headers::{requested_upgrade, set_server, X_REQUEST_ID};
use super::logged::tag;
use super::reply::{local, Body, Flag};
use super::ConnCtx;
use crate::config::hcm::{RouteSource, Underscores};

use crate::config::route::{Action, RequestView, RouteTable};
use crate::stats::ActiveGuard;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use std::sync::Arc;

pub async fn handle(ctx: Arc<ConnCtx>, req: Request<Incoming>) -> Response<Body> {
    let st = &ctx.stats;
    let received = std::time::Instant::now();
    st.downstream_rq_total.inc();
    if req.version() == Version::HTTP_2 {
        st.downstream_rq_http2_total.inc();
    } else {
        st.downstream_rq_http1_total.inc();
    }
    let version = req.version();
    let _active = ActiveGuard::new(&st.downstream_rq_active);
    let _in_flight = ctx.activity.enter();
    let mut pending = ctx
        .hcm
        .observes_streams()
        .then(|| super::logged::Pending::start(&ctx, &req));
    let mut seen = Seen {
        logging: pending.is_some(),
        ..Seen::default()
    };
    let mut effects = super::filters::Effects::default();
    let (mut parts, body) = req.into_parts();
    let compress = super::compress::on_request(&ctx.hcm.filters, &mut parts);
    let peers = ctx
        .hcm
        .peer_metadata
        .map(|pm| (pm, crate::istio::peer::on_request(&pm, &mut parts.headers)));
    let req = Request::from_parts(parts, body);
    let mut resp = dispatch(&ctx, req, &mut seen, &mut effects).await;
    if let Some((pm, down)) = peers {
        let (d, u) = crate::istio::peer::on_response(&pm, down, resp.headers_mut());
        seen.log.downstream_peer = d;
        seen.log.upstream_peer = u;
    }
    let request_id = seen.request_id.take();
    if let Some(facts) = &compress {
        super::compress::on_response(&ctx.hcm.filters, facts, &mut resp);
    }
    for (name, value) in effects.headers {
        resp.headers_mut().insert(name, value);
    }
    for (name, value) in effects.added {
        resp.headers_mut().append(name, value);
    }
    if let Some(rate) = effects.throttle {
        let body = std::mem::replace(resp.body_mut(), Body::empty());
        *resp.body_mut() = Body::Throttled(Box::new(super::throttle::Throttle::new(body, rate)));
    }
    set_server(resp.headers_mut(), &ctx.hcm);
    // `disable_http_keepalive`: an HTTP/1 response closes its connection; an HTTP/2 connection
    // starts draining (GOAWAY). Counted once per connection, as in Envoy.
    if !ctx.bypass_overload && crate::overload::disable_keepalive() {
        if version == Version::HTTP_2 {
            if ctx.activity.request_close() {
                st.downstream_cx_overload_disable_keepalive.inc();
            }
        } else if !resp.headers().contains_key(header::CONNECTION) {
            st.downstream_cx_overload_disable_keepalive.inc();
            resp = close(resp);
        }
    }
    if ctx.hcm.always_set_request_id_in_response {
        if let Some(id) = request_id {
            resp.headers_mut().entry(&X_REQUEST_ID).or_insert(id);
        }
    }
    let class = (resp.status().as_u16() / 100) as usize;
    if (1..=5).contains(&class) {
        st.downstream_rq_xx[class - 1].inc();
    }
    st.downstream_rq_completed.inc();
    st.record_rq_time(received);
    match pending.as_mut() {
        Some(p) => p.respond(seen.log, resp),
        None => resp,
    }
}

/// What handling a request found out, for the response and the access log.
#[derive(Default)]
struct Seen {
    logging: bool,
    request_id: Option<HeaderValue>,
    log: super::logged::Seen,
}

async fn dispatch(
    ctx: &Arc<ConnCtx>,
    req: Request<Incoming>,
    seen: &mut Seen,
    effects: &mut super::filters::Effects,
) -> Response<Body> {
    let mut req = req.map(super::down::DownBody::new);
    let hcm = &ctx.hcm;
    ctx.stats.rq_total.inc();
    // `stop_accepting_requests`: new requests get Envoy's 503 while the action is saturated.
    if !ctx.bypass_overload && crate::overload::stop_requests() {
        ctx.stats.downstream_rq_overload_close.inc();
        return tag(
            local(StatusCode::SERVICE_UNAVAILABLE, "envoy overloaded"),
            Some(Flag::OverloadManager),
            "overload",
        );
    }
    // Two Host headers, or an HTTP/2 `:authority` that a Host header contradicts: the request
    // is ambiguous (routes and the upstream could read different hosts). Envoy merges two Host
    // headers into `a,b` and forwards them; Ferry refuses, as RFC 9110 §7.2 and RFC 9113
    // §8.3.1 allow.
    if super::headers::ambiguous_host(&req) {
        return close(tag(
            local(StatusCode::BAD_REQUEST, "Bad Request"),
            Some(Flag::DownstreamProtocolError),
            "ambiguous_host",
        ));
    }
    // HTTP/2's :authority and an HTTP/1.1 absolute-form URI name the host; they win over a
    // Host header, and routing and HTTP/1.1 upstreams read `host`.
    if let Some(a) = req.uri().authority().map(|a| a.as_str().to_string()) {
        if let Ok(v) = HeaderValue::from_str(&a) {
            req.headers_mut().insert(header::HOST, v);
        }
    }
    if req.version() == Version::HTTP_10 {
        if !hcm.accept_http_10 {
            return close(tag(
                local(StatusCode::UPGRADE_REQUIRED, "Upgrade Required"),
                None,
                "low_version",
            ));
        }
        if let (false, Some(h)) = (
            req.headers().contains_key(header::HOST),
            &hcm.default_host_for_http_10,
        ) {
            req.headers_mut().insert(header::HOST, h.clone());
        }
    }
    if !req.headers().contains_key(header::HOST) && req.version() == Version::HTTP_11 {
        return close(tag(
            local(StatusCode::BAD_REQUEST, ""),
            Some(Flag::DownstreamProtocolError),
            "missing_host_header",
        ));
    }
    // Both framings at once is a smuggling vector: refuse, as Envoy does.
    if req.headers().contains_key(header::CONTENT_LENGTH)
        && req.headers().contains_key(header::TRANSFER_ENCODING)
    {
        return close(local(StatusCode::BAD_REQUEST, "Bad Request"));
    }
    super::headers::strip_host_port(ctx, &mut req);
    match super::path::normalize(&mut req, hcm) {
        super::path::Outcome::Continue => {}
        super::path::Outcome::Reject => {
            ctx.stats.downstream_rq_failed_path_normalization.inc();
            return close(tag(
                local(StatusCode::BAD_REQUEST, ""),
                Some(Flag::DownstreamProtocolError),
                "path_normalization_failed",
            ));
        }
        super::path::Outcome::Redirect => {
            ctx.stats
                .downstream_rq_redirected_with_normalized_path
                .inc();
            let mut r = local(StatusCode::TEMPORARY_REDIRECT, "");
            if let Some(pq) = req.uri().path_and_query() {
                if let Ok(v) = HeaderValue::from_str(pq.as_str()) {
                    r.headers_mut().insert(header::LOCATION, v);
                }
            }
            return tag(r, None, "path_normalization_redirect");
        }
    }
    // The route table: inline, or the RDS one in the current snapshot.
    let table: Arc<RouteTable> = match &hcm.routes {
        RouteSource::Static(t) => t.clone(),
        RouteSource::Rds(name) => match ctx.server.snapshot.load().routes.get(name) {
            Some(t) => t.clone(),
            None => {
                ctx.stats.no_route.inc();
                tracing::debug!(flag = Flag::NoRoute.code(), route_config = %name, "RDS route configuration not known yet");
                return no_route();
            }
        },
    };
    let table: &RouteTable = &table;
    super::headers::mutate_request(
        req.headers_mut(),
        hcm,
        ctx.remote,
        ctx.tls,
        &table.internal_only,
    );
    super::xfcc::apply(req.headers_mut(), &hcm.xfcc, ctx.mtls, ctx.xfcc.as_ref());
    seen.request_id = req.headers().get(&X_REQUEST_ID).cloned();
    if seen.logging {
        seen.log.headers = Some(req.headers().clone());
    }
    match hcm.underscores {
        Underscores::Allow => {}
        Underscores::Reject => {
            if req.headers().keys().any(|k| k.as_str().contains('_')) {
                return local(StatusCode::BAD_REQUEST, "");
            }
        }
        Underscores::Drop => {
            let names: Vec<_> = req
                .headers()
                .keys()
                .filter(|k| k.as_str().contains('_'))
                .cloned()
                .collect();
            for n in names {
                req.headers_mut().remove(n);
            }
        }
    }
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let path = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let vhost = table.find_vhost(&host);
    let view = RequestView {
        path: &path,
        headers: req.headers(),
        method: req.method().as_str(),
        scheme: if ctx.tls { "https" } else { "http" },
    };
    let route = vhost.and_then(|vh| vh.routes.iter().find(|r| r.matcher.matches(&view)));
    if hcm.traces() {
        seen.log.span = crate::trace::start_request(ctx, route, req.headers_mut());
        seen.request_id = req.headers().get(&X_REQUEST_ID).cloned();
        if seen.logging {
            seen.log.headers = Some(req.headers().clone());
        }
    }
    // The filters before the router see the request whether or not a route matched.
    if !hcm.filters.is_empty() {
        let (parts, mut body) = req.into_parts();
        let freq = super::filters::FilterRequest {
            headers: &parts.headers,
            table,
            vhost,
            route,
            cluster: route.and_then(|r| match &r.action {
                Action::Forward(f) => match &f.target {
                    crate::config::route::Target::Cluster(c) => Some(c.as_str()),
                    _ => None,
                },
                _ => None,
            }),
            format: format_ctx(ctx, &parts.headers, parts.version),
            subject: super::filters::rbac::Subject {
                headers: Some(&parts.headers),
                method: parts.method.as_str(),
                path: &path,
                local: ctx.local,
                remote: ctx.remote,
                peer: ctx.peer.as_ref(),
            },
            conn: ctx,
        };
        let reply = super::filters::decode(&hcm.filters, &freq, effects, &mut body).await;
        if let (Some(s), Some(tc)) = (seen.log.span.as_mut(), hcm.tracing.as_deref()) {
            s.metadata_tags(tc, &effects.metadata);
        }
        req = Request::from_parts(parts, body);
        if let Some(r) = reply {
            return r;
        }
        if !effects.request.is_empty() {
            let muts = std::mem::take(&mut effects.request);
            super::filters::ext_authz::apply_to_request(&mut req, muts);
        }
    }
    let Some(vh) = vhost else {
        ctx.stats.no_route.inc();
        tracing::debug!(flag = Flag::NoRoute.code(), route_config = %table.name, %host, "no virtual host");
        return no_route();
    };
    let Some(route) = route else {
        ctx.stats.no_route.inc();
        tracing::debug!(flag = Flag::NoRoute.code(), virtual_host = %vh.name, %path, "no route");
        return no_route();
    };
    if seen.logging {
        seen.log.route = Some(Arc::from(route.name.as_str()));
    }
    tracing::trace!(virtual_host = %vh.name, route = %route.name, "routed");
    let upgrade = requested_upgrade(req.headers()).filter(|u| u != "h2c");
    match &route.action {
        Action::Direct(d) => {
            ctx.stats.rq_direct_response.inc();
            let mut r = match &d.body {
                Some(b) => {
                    let mut r = Response::new(Body::full(b.clone()));
                    r.headers_mut()
                        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
                    r
                }
                None => Response::new(Body::empty()),
            };
            *r.status_mut() = d.status;
            finalize_response(
                ctx,
                (Some(req.headers()), req.version()),
                table,
                vh,
                route,
                None,
                &mut r,
            );
            tag(r, None, "direct_response")
        }
        Action::Redirect(rd) => {
            ctx.stats.rq_redirect.inc();
            let scheme = req
                .headers()
                .get("x-forwarded-proto")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("http")
                .to_string();
            let location = rd.location(&scheme, &host, &path);
            let mut r = Response::new(Body::empty());
            *r.status_mut() = rd.code;
            if let Ok(v) = HeaderValue::from_str(&location) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            finalize_response(
                ctx,
                (Some(req.headers()), req.version()),
                table,
                vh,
                route,
                None,
                &mut r,
            );
            tag(r, None, "via_route_redirect")
        }
        Action::Forward(fwd) => {
            if let Some(u) = &upgrade {
                let allowed = fwd
                    .upgrades
                    .iter()
                    .find(|(t, _)| t == u)
                    .map(|(_, on)| *on)
                    .unwrap_or_else(|| hcm.upgrades.iter().any(|t| t == u));
                if !allowed {
                    ctx.stats.downstream_rq_ws_on_non_ws_route.inc();
                    return close(tag(
                        local(StatusCode::FORBIDDEN, ""),
                        None,
                        "upgrade_failed",
                    ));
                }
            }
            super::forward::forward(ctx, req, table, vh, route, fwd, upgrade.is_some()).await
        }
    }
}

/// Envoy's 404 when no route matches (`NR`).
fn no_route() -> Response<Body> {
    tag(
        local(StatusCode::NOT_FOUND, ""),
        Some(Flag::NoRoute),
        "route_not_found",
    )
}

/// Marks a local reply as the connection's last.
fn close(mut r: Response<Body>) -> Response<Body> {
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}
