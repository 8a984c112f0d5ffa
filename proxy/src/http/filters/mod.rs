//! The connection manager's HTTP filters before the router, run on each request's headers
//! once its route is known (or known to be missing): each may answer the request itself, hold
//! it (a delay), or add headers to the response.

mod cors;
pub mod ext_authz;
pub(crate) mod ext_authz_grpc;
mod ext_authz_http;
mod fault;
mod ratelimit;
pub mod rbac;

use super::reply::{Body, GrpcReply};
use crate::config::filters::{FilterEntry, HttpFilter, PerFilter};
use crate::config::headers::FormatCtx;
use crate::config::route::{Route, RouteTable, VirtualHost};
use http::{HeaderMap, HeaderName, HeaderValue, Response};

/// What the filters ask of the response the request gets.
#[derive(Default)]
pub struct Effects {
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Send the body no faster than this many bytes a second.
    pub throttle: Option<u64>,
    /// Headers added to the response alongside any it has.
    pub added: Vec<(HeaderName, HeaderValue)>,
    /// Changes to the request before it is forwarded (ext_authz).
    pub request: Vec<ext_authz::Mutation>,
    /// Dynamic metadata the filters wrote: (namespace, key, string value).
    pub metadata: Vec<(&'static str, String, String)>,
}

/// What the filters know of the request.
pub struct FilterRequest<'a> {
    pub headers: &'a HeaderMap,
    pub table: &'a RouteTable,
    pub vhost: Option<&'a VirtualHost>,
    pub route: Option<&'a Route>,
    /// The route's cluster, when it names one.
    pub cluster: Option<&'a str>,
    /// For header values computed from the request and connection.
    pub format: FormatCtx<'a>,
    pub subject: rbac::Subject<'a>,
    pub conn: &'a super::ConnCtx,
}

impl FilterRequest<'_> {
    /// The filter's configuration at each level that has one, most specific first: route,
    /// virtual host, route table.
    fn levels<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s PerFilter> + 's {
        [
            self.route.map(|r| &r.per_filter),
            self.vhost.map(|v| &v.per_filter),
            Some(&self.table.per_filter),
        ]
        .into_iter()
        .flatten()
        .filter_map(move |l| l.iter().find(|(n, _)| n == name).map(|(_, c)| c))
    }

    /// The filter's most specific per-route configuration.
    fn per_filter<'s>(&'s self, name: &'s str) -> Option<&'s PerFilter> {
        self.levels(name).next()
    }

    /// The CORS policies of every level, most specific first.
    fn all_per_filter<'s>(
        &'s self,
        name: &'s str,
    ) -> Vec<&'s crate::config::filters::cors::CorsPolicy> {
        self.levels(name)
            .filter_map(|c| match c {
                PerFilter::Cors(p) => Some(&**p),
                _ => None,
            })
            .collect()
    }

    fn grpc(&self) -> GrpcReply {
        GrpcReply::of(self.headers)
    }
}

/// Runs the filters in order; `Some` is a reply that ends the request here. `extra` gets the
/// headers the filters add to whatever response the request gets.
pub async fn decode(
    filters: &[FilterEntry],
    req: &FilterRequest<'_>,
    effects: &mut Effects,
    body: &mut crate::http::down::DownBody,
) -> Option<Response<Body>> {
    for f in filters {
        let per = req.per_filter(&f.name);
        if matches!(per, Some(PerFilter::Disabled)) {
            continue;
        }
        match &f.filter {
            HttpFilter::Fault { cfg, stats } => {
                let cfg = match per {
                    Some(PerFilter::Fault(c)) => c,
                    _ => cfg,
                };
                if let Some(r) = fault::decode(cfg, stats, req, effects).await {
                    return Some(r);
                }
            }
            HttpFilter::Rbac(cfg, stats) => {
                let cfg = match per {
                    Some(PerFilter::Rbac(c)) => c,
                    _ => cfg,
                };
                if let Some(r) = rbac::decode(cfg, stats, req, effects) {
                    return Some(r);
                }
            }
            HttpFilter::GrpcStats(_)
            | HttpFilter::Compressor(_)
            | HttpFilter::IstioStats(_)
            | HttpFilter::PeerMetadata(_)
            | HttpFilter::IstioAlpn(_) => {}
            HttpFilter::ExtAuthz(cfg, stats) => {
                let per = match per {
                    Some(PerFilter::ExtAuthz(p)) => Some(&**p),
                    _ => None,
                };
                if let Some(r) = ext_authz::decode(cfg, stats, per, req, effects, body).await {
                    return Some(r);
                }
            }
            HttpFilter::Cors(stats) => {
                let policies = req.all_per_filter(&f.name);
                if let Some(r) = cors::decode(stats, &policies, req, &mut effects.headers) {
                    return Some(r);
                }
            }
            HttpFilter::LocalRateLimit(cfg) => {
                let cfg = match per {
                    Some(PerFilter::LocalRateLimit(c)) => c,
                    _ => match cfg {
                        Some(c) => c,
                        None => continue,
                    },
                };
                if let Some(r) = ratelimit::decode(cfg, req, &mut effects.headers) {
                    return Some(r);
                }
            }
        }
    }
    None
}
