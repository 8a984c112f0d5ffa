//! Forwarding a request to its cluster: request header mutations, rewrites, host pick, the
//! upstream exchange with the route timeout, Envoy's error replies, and upgrades (websocket).

use super::headers::{
    strip_hop_by_hop, X_ENVOY_EXPECTED_TIMEOUT, X_ENVOY_ORIGINAL_HOST, X_ENVOY_ORIGINAL_PATH,
    X_ENVOY_PER_TRY_TIMEOUT, X_ENVOY_RQ_TIMEOUT, X_ENVOY_SERVICE_TIME,
};
use super::reply::{local, Body, Flag};
use super::router::{finalize_response, format_ctx};
use super::ConnCtx;
use crate::cluster::pool::UpstreamError;
use crate::config::cluster::UpstreamProtocol;
use crate::config::headers::HeaderMutation;
use crate::config::route::{Forward, HostRewrite, Route, RouteTable, Target, VirtualHost};
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use hyper::body::{Body as _, Incoming};
use hyper_util::rt::TokioIo;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

pub async fn forward(
    ctx: &Arc<ConnCtx>,
    mut req: Request<Incoming>,
    table: &RouteTable,
    vh: &VirtualHost,
    route: &Route,
    fwd: &Forward,
    upgrade: bool,
) -> Response<Body> {
    let version = req.version();
    let (cluster_name, weighted) = match &fwd.target {
        Target::Cluster(c) => (c.clone(), None),
        Target::Header { name, not_found } => {
            match req.headers().get(name).and_then(|v| v.to_str().ok()) {
                Some(c) if !c.is_empty() => (c.to_string(), None),
                _ => {
                    ctx.stats.no_cluster.inc();
                    return local(*not_found, "");
                }
            }
        }
        Target::Weighted(ws, total) => {
            let mut n = fastrand::u64(0..*total);
            let mut pick = &ws[ws.len() - 1];
            for w in ws {
                if n < u64::from(w.weight) {
                    pick = w;
                    break;
                }
                n -= u64::from(w.weight);
            }
            (pick.name.clone(), Some(pick))
        }
    };
    let snapshot = ctx.server.snapshot.load_full();
    let Some(cluster) = snapshot.cluster(&cluster_name).cloned() else {
        ctx.stats.no_cluster.inc();
        let code = match &fwd.target {
            Target::Header { not_found, .. } => *not_found,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        };
        tracing::debug!(flag = Flag::NoClusterFound.code(), cluster = %cluster_name, "unknown cluster");
        return local(code, "");
    };
    // The request hash of consistent-hashing clusters, from the request as it arrived.
    let (hash, set_cookie) = if cluster.cfg.lb.hashes() && !fwd.hash.is_empty() {
        let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
        crate::config::route::hash::request_hash(
            &fwd.hash,
            &crate::config::route::hash::Request {
                headers: req.headers(),
                path_and_query: pq,
                remote: ctx.remote,
                local: ctx.local,
            },
        )
    } else {
        (None, None)
    };
    let w_req = weighted.map(|w| &w.request);
    let w_resp: Option<&HeaderMutation> = weighted.map(|w| &w.response);

    // x-envoy-upstream-rq-timeout-ms overrides the route timeout (0: none); it is consumed here.
    let mut timeout = fwd.timeout;
    if let Some(v) = req.headers_mut().remove(&X_ENVOY_RQ_TIMEOUT) {
        if let Some(ms) = v.to_str().ok().and_then(|s| s.trim().parse::<u64>().ok()) {
            timeout = Some(std::time::Duration::from_millis(ms)).filter(|d| !d.is_zero());
        }
    }
    req.headers_mut().remove(&X_ENVOY_PER_TRY_TIMEOUT);
    // Request headers: connection-level, then mutations most specific first.
    {
        let h = req.headers_mut();
        strip_hop_by_hop(h, upgrade);
        // Envoy answers `Expect: 100-continue` itself and does not forward it.
        h.remove(header::EXPECT);
        if let (Some(t), false) = (timeout, ctx.hcm.suppress_envoy_headers) {
            h.insert(
                X_ENVOY_EXPECTED_TIMEOUT.clone(),
                HeaderValue::from(t.as_millis() as u64),
            );
        }
    }
    // %REQ(..)% values read the request as it arrived at this step; copy it only when a
    // mutation needs it.
    let levels = [
        w_req,
        Some(&route.request),
        Some(&vh.request),
        Some(&table.request),
    ];
    let reads = levels.iter().flatten().any(|m| m.reads_request());
    let snapshot_headers = if reads {
        req.headers().clone()
    } else {
        http::HeaderMap::new()
    };
    let mut fctx = format_ctx(ctx, &snapshot_headers, version);
    if !reads {
        fctx.request = None;
    }
    {
        let h = req.headers_mut();
        if let Some(w) = w_req {
            w.apply(h, &fctx);
        }
        route.request.apply(h, &fctx);
        vh.request.apply(h, &fctx);
        table.request.apply(h, &fctx);
    }
    let original = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let path = match fwd.rewrite.apply(&original) {
        Some(new) => {
            if !ctx.hcm.suppress_envoy_headers {
                if let Ok(v) = HeaderValue::from_str(&original) {
                    req.headers_mut().insert(X_ENVOY_ORIGINAL_PATH.clone(), v);
                }
            }
            new
        }
        None => original,
    };

    let lb = crate::cluster::LbContext {
        original_dst: ctx.original_dst,
        headers: Some(req.headers()),
        hash,
        local_cluster: crate::cluster::zone::local()
            .and_then(|(n, _)| snapshot.cluster(n))
            .map(|c| &**c),
    };
    let Some(host) = cluster.pick(&lb) else {
        tracing::debug!(flag = Flag::NoHealthyUpstream.code(), cluster = %cluster_name, "no healthy upstream");
        let mut r = local(StatusCode::SERVICE_UNAVAILABLE, "no healthy upstream");
        finalize_response(ctx, (None, version), table, vh, route, w_resp, &mut r);
        return r;
    };
    let original_host = req.headers().get(header::HOST).cloned();
    match &fwd.host_rewrite {
        HostRewrite::Keep => {}
        HostRewrite::Literal(v) => {
            req.headers_mut().insert(header::HOST, v.clone());
        }
        HostRewrite::Auto => {
            if !host.hostname.is_empty() {
                if let Ok(v) = HeaderValue::from_str(&host.hostname) {
                    req.headers_mut().insert(header::HOST, v);
                }
            }
        }
        HostRewrite::Header(name) => {
            if let Some(v) = req.headers().get(name).cloned() {
                req.headers_mut().insert(header::HOST, v);
            }
        }
    }

    if let Some(orig) = original_host {
        if req.headers().get(header::HOST) != Some(&orig) && !ctx.hcm.suppress_envoy_headers {
            req.headers_mut()
                .insert(X_ENVOY_ORIGINAL_HOST.clone(), orig);
        }
    }
    // A request without a body, of a method that may carry one, says so with
    // `content-length: 0`, as Envoy's HTTP/1 codec does.
    if req.body().is_end_stream()
        && !req.headers().contains_key(header::CONTENT_LENGTH)
        && !req.headers().contains_key(header::TRANSFER_ENCODING)
        && !matches!(
            *req.method(),
            http::Method::GET
                | http::Method::HEAD
                | http::Method::DELETE
                | http::Method::OPTIONS
                | http::Method::TRACE
                | http::Method::CONNECT
        )
        && !upgrade
    {
        req.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    }
    let use_h2 = !upgrade
        && match cluster.cfg.protocol {
            UpstreamProtocol::Http2 => true,
            UpstreamProtocol::Http1 => false,
            UpstreamProtocol::Downstream => version == Version::HTTP_2,
            UpstreamProtocol::Auto => host.pool.auto_is_h2(&host).await.unwrap_or(false),
        };
    let downstream_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    let authority = parts
        .headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    if use_h2 {
        parts.version = Version::HTTP_2;
        parts.uri = Uri::try_from(format!("http://{authority}{path}"))
            .unwrap_or_else(|_| Uri::from_static("/"));
        parts.headers.remove(header::HOST);
    } else {
        parts.version = Version::HTTP_11;
        parts.uri = Uri::try_from(path.as_str()).unwrap_or_else(|_| Uri::from_static("/"));
    }
    let up_req = Request::from_parts(parts, body);

    let cs = &cluster.stats;
    let started = Instant::now();
    let send = async {
        if use_h2 {
            host.pool.send_h2(&host, up_req).await
        } else {
            host.pool.send_h1(&host, up_req).await
        }
    };
    let result = match timeout {
        Some(t) => tokio::time::timeout(t, send).await.ok(),
        None => Some(send.await),
    };
    {
        use crate::cluster::outlier::Outcome;
        let outcome = match &result {
            None => Some(Outcome::Timeout),
            Some(Ok((r, _))) => Some(Outcome::Status(r.status().as_u16())),
            Some(Err(UpstreamError::Overflow)) => None,
            Some(Err(e)) if e.is_downstream_body() => None,
            Some(Err(e)) if e.is_connect() => Some(Outcome::ConnectFailed),
            Some(Err(_)) => Some(Outcome::Reset),
        };
        if let Some(o) = outcome {
            cluster.report(&host, o);
        }
    }
    if !matches!(result, Some(Err(UpstreamError::Overflow))) {
        cs.upstream_rq_total.inc();
        host.stats.rq_total.fetch_add(1, Relaxed);
    }
    let (mut resp, active) = match result {
        None => {
            cs.upstream_rq_timeout.inc();
            host.stats.rq_timeout.fetch_add(1, Relaxed);
            cs.charge(504);
            tracing::debug!(
                flag = Flag::UpstreamRequestTimeout.code(),
                "upstream request timeout"
            );
            let mut r = local(StatusCode::GATEWAY_TIMEOUT, "upstream request timeout");
            finalize_response(ctx, (None, version), table, vh, route, w_resp, &mut r);
            return r;
        }
        Some(Err(e)) if e.is_downstream_body() => {
            tracing::debug!("malformed downstream request body: {e}");
            let mut r = local(StatusCode::BAD_REQUEST, "Bad Request");
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return r;
        }
        Some(Err(UpstreamError::Overflow)) => {
            let mut r = overflow(cs, ctx.hcm.suppress_envoy_headers);
            finalize_response(ctx, (None, version), table, vh, route, w_resp, &mut r);
            return r;
        }
        Some(Err(e)) => {
            host.stats.rq_error.fetch_add(1, Relaxed);
            cs.charge(503);
            if !e.is_connect() {
                cs.upstream_rq_rx_reset.inc();
            }
            let flag = if e.is_connect() {
                Flag::UpstreamConnectFailure
            } else {
                Flag::UpstreamConnectionTermination
            };
            tracing::debug!(flag = flag.code(), "upstream failure: {e}");
            let mut r = local(StatusCode::SERVICE_UNAVAILABLE, &reset_body(&e));
            finalize_response(ctx, (None, version), table, vh, route, w_resp, &mut r);
            return r;
        }
        Some(Ok(r)) => r,
    };
    // `active` counts the request until its response has been passed on.
    let status = resp.status();
    cs.charge(status.as_u16());
    cs.upstream_rq_completed.inc();
    if status.is_server_error() {
        host.stats.rq_error.fetch_add(1, Relaxed);
    } else {
        host.stats.rq_success.fetch_add(1, Relaxed);
    }
    let switching = status == StatusCode::SWITCHING_PROTOCOLS && downstream_upgrade.is_some();
    if switching {
        let up = hyper::upgrade::on(&mut resp);
        if let Some(down) = downstream_upgrade {
            tokio::spawn(async move {
                if let (Ok(d), Ok(u)) = (down.await, up.await) {
                    let mut d = TokioIo::new(d);
                    let mut u = TokioIo::new(u);
                    let _ = tokio::io::copy_bidirectional(&mut d, &mut u).await;
                }
            });
        }
    }
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers, switching);
    if !ctx.hcm.suppress_envoy_headers && !switching {
        parts.headers.insert(
            X_ENVOY_SERVICE_TIME.clone(),
            HeaderValue::from(started.elapsed().as_millis() as u64),
        );
    }
    if let Some(via) = &ctx.hcm.via {
        super::headers::append_via(&mut parts.headers, via);
    }
    parts.version = version;
    let mut r = Response::from_parts(
        parts,
        if switching {
            Body::empty()
        } else {
            Body::Upstream(body, Some(active))
        },
    );
    finalize_response(ctx, (None, version), table, vh, route, w_resp, &mut r);
    if let Some(v) = set_cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

/// Envoy's local reply body for an upstream failure before response headers.
fn reset_body(e: &UpstreamError) -> String {
    let reason = match e {
        UpstreamError::ConnectFailed(_) => "remote connection failure".to_string(),
        UpstreamError::ConnectTimeout => "connection timeout".to_string(),
        UpstreamError::Reset(_) => "connection termination".to_string(),
        UpstreamError::Overflow => "overflow".to_string(),
    };
    format!("upstream connect error or disconnect/reset before headers. reset reason: {reason}")
}

/// Envoy's answer when a circuit breaker is open: 503, flag UO.
fn overflow(cs: &crate::cluster::ClusterStats, suppress_envoy_headers: bool) -> Response<Body> {
    cs.charge(503);
    cs.upstream_rq_completed.inc();
    tracing::debug!(
        flag = Flag::UpstreamOverflow.code(),
        "circuit breaker overflow"
    );
    let mut r = local(
        StatusCode::SERVICE_UNAVAILABLE,
        "upstream connect error or disconnect/reset before headers. reset reason: overflow",
    );
    if !suppress_envoy_headers {
        r.headers_mut().insert(
            super::headers::X_ENVOY_OVERLOADED.clone(),
            HeaderValue::from_static("true"),
        );
    }
    r
}
