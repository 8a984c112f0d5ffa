//! ext_authz: the request goes to an authorization service (gRPC or HTTP) on a cluster; an OK
//! lets it on (with the header changes the service asks for), a denial answers it here, and
//! errors and timeouts answer `status_on_error` unless `failure_mode_allow`.

use super::ext_authz_grpc::{call, check_request, grpc_outcome, reply_error};
use super::{Effects, FilterRequest};
use crate::config::filters::ext_authz::{ExtAuthzCfg, ExtAuthzStats, PerRoute};
use crate::http::reply::Body;
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};

/// The namespace RBAC's shadow engine writes (Istio gates ext_authz on it).
pub const RBAC_NAMESPACE: &str = "envoy.filters.http.rbac";

static FAILURE_MODE_ALLOWED: HeaderName =
    HeaderName::from_static("x-envoy-auth-failure-mode-allowed");

pub async fn decode(
    cfg: &ExtAuthzCfg,
    stats: &ExtAuthzStats,
    per: Option<&PerRoute>,
    req: &FilterRequest<'_>,
    effects: &mut Effects,
    body: &mut crate::http::down::DownBody,
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
    let (ext, no_body) = match per {
        Some(PerRoute::Check {
            extensions,
            no_body,
        }) => (extensions.as_slice(), *no_body),
        _ => (&[][..], false),
    };
    let mut sent = None;
    if let Some(b) = cfg.body.as_ref().filter(|_| !no_body) {
        if !hyper::body::Body::is_end_stream(body) && !upgrades(req.headers) {
            let ahead = body.read_ahead(b.max).await.ok()?;
            if ahead.received > b.max as u64 && !b.allow_partial {
                let mut r =
                    crate::http::reply::local(StatusCode::PAYLOAD_TOO_LARGE, "Payload Too Large");
                r.headers_mut()
                    .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
                return Some(crate::http::logged::tag(
                    r,
                    None,
                    "request_payload_too_large",
                ));
            }
            sent = Some((ahead, b.pack_as_bytes));
        }
    }
    let outcome = match &cfg.http {
        Some(h) => super::ext_authz_http::call(cfg, h, req, sent.as_ref().map(|(a, _)| a)).await,
        None => {
            let check = check_request(req, ext, sent, cfg.include_peer_certificate);
            grpc_outcome(cfg, call(cfg, &req.conn.server, check).await)
        }
    };
    match outcome {
        Outcome::Allow { request, set, add } => {
            stats.ok.inc();
            route_stat(cfg, req, "ok");
            effects.request.extend(request);
            effects.headers.extend(set);
            effects.added.extend(add);
            None
        }
        Outcome::Deny(r) => {
            stats.denied.inc();
            route_stat(cfg, req, "denied");
            Some(r)
        }
        Outcome::Error(reply) => {
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
            Some(reply.unwrap_or_else(|| reply_error(cfg.status_on_error, None)))
        }
    }
}

/// What the service decided, whichever way it was asked.
pub enum Outcome {
    /// Go on, with these request changes and response headers (set, added).
    Allow {
        request: Vec<Mutation>,
        set: Vec<(HeaderName, HeaderValue)>,
        add: Vec<(HeaderName, HeaderValue)>,
    },
    Deny(Response<Body>),
    /// The service failed; its own error reply when it sent one.
    Error(Option<Response<Body>>),
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
    /// Added as one more line of the header.
    Add(HeaderName, HeaderValue),
    /// `query_parameters_to_set` / `_to_remove` (the value goes in as given, as in Envoy).
    QuerySet(String, String),
    QueryRemove(String),
    Remove(HeaderName),
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
            Mutation::Add(n, v) => {
                h.append(n, v);
            }
            Mutation::Remove(n) => {
                if n != http::header::HOST {
                    h.remove(n);
                }
            }
            Mutation::QuerySet(..) | Mutation::QueryRemove(..) => {}
        }
    }
}

/// Applies an OK's changes to the request: its query, then its headers.
pub fn apply_to_request<B>(req: &mut http::Request<B>, muts: Vec<Mutation>) {
    let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
    if let Some(new) = rewrite_query(pq, &muts) {
        let mut parts = req.uri().clone().into_parts();
        if let Ok(pq) = new.parse() {
            parts.path_and_query = Some(pq);
            if let Ok(u) = http::Uri::from_parts(parts) {
                *req.uri_mut() = u;
            }
        }
    }
    apply(req.headers_mut(), muts);
}

/// The OK's query changes applied to a path, Envoy's way: the query becomes a map sorted by
/// key (a key's values keep their order), set keys get their one value, removed keys go;
/// `None` when the OK asked for none.
pub fn rewrite_query(path: &str, muts: &[Mutation]) -> Option<String> {
    if !muts
        .iter()
        .any(|m| matches!(m, Mutation::QuerySet(..) | Mutation::QueryRemove(..)))
    {
        return None;
    }
    let (base, query) = path.split_once('?').unwrap_or((path, ""));
    let mut params: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for kv in query.split('&').filter(|s| !s.is_empty()) {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        params.entry(k.to_string()).or_default().push(v.to_string());
    }
    for m in muts {
        match m {
            Mutation::QuerySet(k, v) => {
                params.insert(k.clone(), vec![v.clone()]);
            }
            Mutation::QueryRemove(k) => {
                params.remove(k);
            }
            _ => {}
        }
    }
    let q: Vec<String> = params
        .iter()
        .flat_map(|(k, vs)| vs.iter().map(move |v| format!("{k}={v}")))
        .collect();
    Some(if q.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", q.join("&"))
    })
}

/// An upgrade (WebSocket) or CONNECT: its body is not read ahead.
fn upgrades(h: &HeaderMap) -> bool {
    h.contains_key(http::header::UPGRADE)
}

/// The service's cluster and a host of it (none: no such cluster, or no healthy host).
pub(crate) fn service_host(
    cfg: &ExtAuthzCfg,
    server: &crate::snapshot::Server,
) -> Option<(
    std::sync::Arc<crate::cluster::ClusterRt>,
    std::sync::Arc<crate::cluster::Host>,
)> {
    let snapshot = server.snapshot.load();
    let cluster = snapshot.cluster(&cfg.cluster)?.clone();
    let lb = crate::cluster::LbContext {
        original_dst: None,
        headers: None,
        hash: None,
        local_cluster: None,
    };
    let host = cluster.pick(&lb)?;
    Some((cluster, host))
}
