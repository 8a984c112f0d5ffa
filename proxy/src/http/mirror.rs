//! Request mirroring: each sampled `request_mirror_policies` entry gets a copy of the request
//! as it goes upstream (its host with `-shadow`, marked internal), sent without waiting and
//! its answer dropped. A body streams to the copies as the main request reads it.

use super::body::ReqBody;
use super::upstream::Outgoing;
use crate::cluster::{ClusterRt, LbContext};
use crate::config::route::mirror::{shadow_host, MirrorTarget};
use crate::config::route::{Forward, HostRewrite};
use http::header::{self, HeaderValue};
use http::Request;
use std::sync::Arc;
use std::time::Duration;

/// The clusters this request is mirrored to (each policy's draw), with the host each copy
/// carries.
pub(super) fn shadow_clusters(
    fwd: &Forward,
    headers: &http::HeaderMap,
    snapshot: &crate::snapshot::Snapshot,
    upgrade: bool,
) -> Vec<(Arc<crate::cluster::ClusterRt>, Option<HeaderValue>)> {
    if fwd.vhost.mirrors.is_empty() || upgrade {
        return Vec::new();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    fwd.vhost
        .mirrors
        .iter()
        .filter(|m| m.fraction.draw())
        .filter_map(|m| {
            let name = match &m.target {
                MirrorTarget::Cluster(c) => c.as_str(),
                MirrorTarget::Header(h) => headers
                    .get(h)
                    .and_then(|v| v.to_str().ok())
                    .filter(|v| !v.is_empty())?,
            };
            let cluster = snapshot.cluster(name)?.clone();
            let shadow_host = match (&m.host, m.suffix) {
                (Some(h), _) => Some(h.clone()),
                (None, true) => HeaderValue::from_str(&shadow_host(host)).ok(),
                (None, false) => None,
            };
            Some((cluster, shadow_host))
        })
        .collect()
}

/// Starts one mirrored copy: the request as it goes upstream, its host changed, marked
/// internal, this node appended to `x-forwarded-for`.
pub(super) fn spawn_shadow(
    cluster: Arc<crate::cluster::ClusterRt>,
    parts: &http::request::Parts,
    host: Option<HeaderValue>,
    path: &str,
    body: ReqBody,
    timeout: Option<std::time::Duration>,
) {
    let mut req = Request::new(());
    *req.method_mut() = parts.method.clone();
    *req.version_mut() = parts.version;
    *req.headers_mut() = parts.headers.clone();
    let h = req.headers_mut();
    if let Some(v) = host {
        h.insert(header::HOST, v);
    }
    let node = crate::util::local_address()
        .map(|ip| ip.to_string())
        .unwrap_or_default();
    let xff = match h.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(prev) if !prev.is_empty() => format!("{prev},{node}"),
        _ => node,
    };
    if let Ok(v) = HeaderValue::from_str(&xff) {
        h.insert("x-forwarded-for", v);
    }
    h.insert("x-envoy-internal", HeaderValue::from_static("true"));
    let (parts, ()) = req.into_parts();
    send(cluster, parts, path, body, timeout);
}

/// Sends a mirrored copy of a request and drops the answer; only the shadow cluster's stats
/// tell it happened.
fn send(
    cluster: Arc<ClusterRt>,
    parts: http::request::Parts,
    path: &str,
    body: ReqBody,
    timeout: Option<Duration>,
) {
    let out = Outgoing {
        parts,
        path: path.to_string(),
        body: Some(body),
        replay: None,
        upgrade: false,
        host_rewrite: HostRewrite::Keep,
        timeout,
        max_duration: None,
        idle: None,
        request_deadline: None,
        expected_header: true,
        per_try: None,
        per_try_idle: None,
        attempt_count_header: false,
        suppress_envoy_headers: false,
        alpn: None,
    };
    tokio::spawn(async move {
        let lb = LbContext::default();
        match super::upstream::exchange(&cluster, &lb, out, None, &mut Default::default()).await {
            Ok(a) => {
                use http_body_util::BodyExt;
                let cs = &cluster.stats;
                cs.charge(a.resp.status().as_u16());
                cs.upstream_rq_completed.inc();
                let _ = a.resp.into_body().collect().await;
                drop(a.active);
            }
            Err((why, _)) => {
                let _ = super::local::reply(
                    &cluster,
                    why,
                    true,
                    super::reply::GrpcReply::of(&http::HeaderMap::new()),
                );
            }
        }
    });
}
