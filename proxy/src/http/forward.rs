//! Forwarding a request to its cluster: request header mutations, rewrites, host pick, the
//! upstream exchange with the route timeout, Envoy's error replies, and upgrades (websocket).

use super::body::{ReplayBody, ReqBody};
use super::fctx::{finalize_response, format_ctx};
use super::headers::{
    strip_hop_by_hop, X_ENVOY_ORIGINAL_HOST, X_ENVOY_ORIGINAL_PATH, X_ENVOY_PER_TRY_TIMEOUT,
    X_ENVOY_RQ_TIMEOUT, X_ENVOY_SERVICE_TIME,
};
use super::logged::tag;
use super::reply::{local, Body, Flag};
use super::retry::{RetryState, X_ENVOY_ATTEMPT_COUNT};
use super::upstream::{Answer, Local, Outgoing};
use super::ConnCtx;
use crate::config::headers::HeaderMutation;
use crate::config::route::{Forward, HostRewrite, Route, RouteTable, Target, VirtualHost};
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper::body::Body as _;
use hyper_util::rt::TokioIo;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

pub async fn forward(
    ctx: &Arc<ConnCtx>,
    mut req: Request<super::down::DownBody>,
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
                    return tag(
                        local(*not_found, ""),
                        Some(Flag::NoClusterFound),
                        "cluster_not_found",
                    );
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
        return tag(
            local(code, ""),
            Some(Flag::NoClusterFound),
            "cluster_not_found",
        );
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

    // A route with max_stream_duration uses Envoy's "new" timeouts: no route timeout.
    let new_timeouts = fwd.stream.max_stream.is_some();
    // x-envoy-upstream-rq-timeout-ms overrides the route timeout (0: none); it is consumed here.
    let mut timeout = if new_timeouts { None } else { fwd.timeout };
    if !new_timeouts {
        if let Some(t) = super::timeouts::legacy_grpc(fwd, req.headers_mut()) {
            timeout = t;
        }
    }
    if let Some(v) = req.headers_mut().remove(&X_ENVOY_RQ_TIMEOUT) {
        if let Some(ms) = v.to_str().ok().and_then(|s| s.trim().parse::<u64>().ok()) {
            timeout = Some(std::time::Duration::from_millis(ms)).filter(|d| !d.is_zero());
        }
    }
    let (max_duration, idle) = super::timeouts::stream_limits(&ctx.hcm, fwd, req.headers_mut());
    let per_try_idle = fwd.retry.as_ref().and_then(|r| r.per_try_idle_timeout);
    // x-envoy-upstream-rq-per-try-timeout-ms sets the per-try timeout.
    let mut per_try = fwd.retry.as_ref().and_then(|r| r.per_try_timeout);
    if let Some(v) = req.headers_mut().remove(&X_ENVOY_PER_TRY_TIMEOUT) {
        if let Some(ms) = v.to_str().ok().and_then(|s| s.trim().parse::<u64>().ok()) {
            per_try = Some(std::time::Duration::from_millis(ms)).filter(|d| !d.is_zero());
        }
    }
    // Request headers: connection-level, then mutations most specific first.
    {
        let h = req.headers_mut();
        strip_hop_by_hop(h, upgrade);
        // Envoy answers `Expect: 100-continue` itself and does not forward it.
        h.remove(header::EXPECT);
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
    let mut grpc_call = grpc_stats_call(ctx, req.headers(), &cluster.cfg.stat_name, &original);
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
        headers: None,
        hash,
        local_cluster: crate::cluster::zone::local()
            .and_then(|(n, _)| snapshot.cluster(n))
            .map(|c| &**c),
    };
    // Host rewrites that do not depend on the picked host.
    let original_host = req.headers().get(header::HOST).cloned();
    match &fwd.host_rewrite {
        HostRewrite::Keep | HostRewrite::Auto => {}
        HostRewrite::Literal(v) => {
            req.headers_mut().insert(header::HOST, v.clone());
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
                | http::Method::TRACE
                | http::Method::CONNECT
        )
        && !upgrade
    {
        req.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    }
    let retry = if upgrade {
        None
    } else {
        RetryState::new(fwd.retry.as_deref(), req.headers_mut())
    };
    let downstream_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let shadows = super::mirror::shadow_clusters(fwd, req.headers(), &snapshot, upgrade);
    let grpc = super::reply::GrpcReply::of(req.headers());
    let (parts, body) = req.into_parts();
    // The body is kept (up to the buffer limit) when a retry or a mirror may need it, and
    // watched when the request must be complete by `request_timeout`.
    let end = body.is_end_stream();
    let keep =
        !end && (retry.is_some() || !shadows.is_empty() || ctx.hcm.request_timeout.is_some());
    let (body, handle) = if keep {
        let limit = if retry.is_some() || !shadows.is_empty() {
            fwd.vhost
                .buffer_limit
                .map_or(ctx.buffer_limit as usize, |l| {
                    l.min(usize::MAX as u64) as usize
                })
        } else {
            0
        };
        let b = ReplayBody::new(body, limit);
        for (c, host) in shadows {
            let copy = ReqBody::Follow(b.follow());
            super::mirror::spawn_shadow(c, &parts, host, &path, copy, timeout);
        }
        let handle = b.replay();
        (ReqBody::Replay(b), Some(handle))
    } else {
        for (c, host) in shadows {
            super::mirror::spawn_shadow(c, &parts, host, &path, ReqBody::empty(), timeout);
        }
        match retry {
            // Without a body every attempt sends none.
            Some(_) => (ReqBody::empty(), Some(ReplayBody::new(body, 0).replay())),
            None => (ReqBody::Stream(body), None),
        }
    };
    let request_deadline = ctx
        .hcm
        .request_timeout
        .filter(|_| !end)
        .zip(handle.clone())
        .map(|(t, h)| (tokio::time::Instant::now() + t, h));
    let replay = if retry.is_some() { handle } else { None };
    let body = match &grpc_call {
        Some(c) => ReqBody::Counted(Box::new(body), c.request.clone()),
        None => body,
    };
    let logging = ctx.hcm.observes_streams();
    let meter = logging.then(|| Arc::new(super::logged::Meter::default()));
    let body = match &meter {
        Some(m) => ReqBody::Metered(Box::new(body), m.clone()),
        None => body,
    };
    let out = Outgoing {
        parts,
        path,
        body: Some(body),
        replay,
        upgrade,
        host_rewrite: fwd.host_rewrite.clone(),
        timeout,
        max_duration,
        idle,
        request_deadline,
        expected_header: !new_timeouts,
        per_try,
        per_try_idle,
        attempt_count_header: fwd.vhost.attempt_count.0,
        suppress_envoy_headers: ctx.hcm.suppress_envoy_headers,
        alpn: ctx.hcm.alpn_override.clone(),
    };
    let started = Instant::now();
    let mut trail = super::upstream::Trail::default();
    let answer = super::upstream::exchange(&cluster, &lb, out, retry, &mut trail).await;
    let report = |attempts: u32, failure: Option<String>| super::logged::UpstreamReport {
        upstream: crate::stream_info::Upstream {
            cluster: Some((
                Arc::from(cluster.cfg.name.as_str()),
                Arc::from(cluster.cfg.stat_name.as_str()),
            )),
            host: trail.host,
            local: trail.local,
            failure,
            protocol: None,
            first_byte: None,
            peer_san: trail.peer_san.clone(),
            local_san: trail.local_san.clone(),
            service: cluster.cfg.istio_service.clone(),
        },
        attempts,
        retries_exhausted: trail.retries_exhausted,
        meter: meter.clone(),
    };
    let Answer {
        mut resp,
        active,
        host,
        attempts,
    } = match answer {
        Ok(a) => a,
        Err((why, attempts)) => {
            let downstream_body = matches!(why, Local::DownstreamBody);
            let logged = logging.then(|| {
                let (flag, details, failure) = super::local::log_tag(&why);
                let mut rep = report(attempts, failure);
                if matches!(why, Local::NoHealthyUpstream) {
                    rep.upstream.host = None;
                }
                (flag, details, rep)
            });
            match why {
                Local::Idle => ctx.stats.downstream_rq_idle_timeout.inc(),
                Local::RequestTimeout => ctx.stats.downstream_rq_timeout.inc(),
                Local::MaxDuration => ctx.stats.downstream_rq_max_duration_reached.inc(),
                _ => {}
            }
            let mut r = super::local::reply(&cluster, why, ctx.hcm.suppress_envoy_headers, grpc);
            if !downstream_body {
                finalize_response(ctx, (None, version), table, vh, route, w_resp, &mut r);
                attempt_count(&mut r, fwd, attempts);
            }
            if let Some(mut c) = grpc_call {
                c.charge(Some(r.headers()));
            }
            if let Some((flag, details, rep)) = logged {
                r.extensions_mut().insert(rep);
                r = tag(r, flag, details);
            }
            return r;
        }
    };
    let cs = &cluster.stats;
    cs.rq_time(started);
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
    let logged = logging.then(|| {
        let mut rep = report(attempts, None);
        rep.upstream.protocol = Some(if parts.version == http::Version::HTTP_2 {
            "HTTP/2"
        } else {
            "HTTP/1.1"
        });
        rep.upstream.first_byte = Some(Instant::now());
        rep
    });
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
        match (switching, per_try_idle) {
            (true, _) => Body::empty(),
            (false, None) => Body::Upstream(body, Some(active)),
            (false, Some(idle)) => Body::Watched(Box::new(super::throttle::Watched::new(
                Body::Upstream(body, Some(active)),
                idle,
                cluster.stats.clone(),
            ))),
        },
    );
    finalize_response(ctx, (None, version), table, vh, route, w_resp, &mut r);
    attempt_count(&mut r, fwd, attempts);
    if let Some(mut call) = grpc_call.take() {
        if r.body().is_end_stream() {
            call.charge(Some(r.headers()));
        } else {
            call.header_status = Some(r.headers().clone());
            let (parts, body) = r.into_parts();
            r = Response::from_parts(
                parts,
                Body::Grpc(Box::new(super::grpc_stats::Observed { inner: body, call })),
            );
        }
    }
    if let Some(v) = set_cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    if let Some(rep) = logged {
        r.extensions_mut().insert(rep);
    }
    r
}

/// `include_attempt_count_in_response`: the number of attempts made.
fn attempt_count(r: &mut Response<Body>, fwd: &Forward, attempts: u32) {
    if fwd.vhost.attempt_count.1 {
        r.headers_mut()
            .insert(X_ENVOY_ATTEMPT_COUNT.clone(), HeaderValue::from(attempts));
    }
}

/// A gRPC request's call stats, when the connection manager has `grpc_stats`.
fn grpc_stats_call(
    ctx: &ConnCtx,
    headers: &http::HeaderMap,
    cluster: &str,
    path: &str,
) -> Option<super::grpc_stats::Call> {
    let cfg = ctx.hcm.filters.iter().find_map(|f| match &f.filter {
        crate::config::filters::HttpFilter::GrpcStats(c) => Some(c),
        _ => None,
    })?;
    let grpc = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"));
    let prefix = cfg.prefix(path).filter(|_| grpc)?;
    Some(super::grpc_stats::Call::new(cluster.to_string(), prefix))
}
