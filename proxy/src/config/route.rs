//! Route configuration: the compiled table (virtual hosts, routes, actions) built once from a
//! `RouteConfiguration`, and the pure functions that match a request against it.

use super::filters::{per_filter_configs, PerFilterConfigs};
use super::headers::{header_name, HeaderMutation};
use super::{err, Result};
use envoy_types::pb::envoy::config::core::v3::data_source::Specifier as DataSpec;
use envoy_types::pb::envoy::config::route::v3 as pb;
use http::header::HeaderName;
use std::collections::HashMap;

mod action;
pub mod hash;
mod matching;
pub mod mirror;
mod redirect;
pub mod retry;
pub mod timeouts;
pub use action::*;
pub use matching::*;
pub use redirect::*;

#[derive(Debug)]
pub struct RouteTable {
    pub name: String,
    pub vhosts: Vec<VirtualHost>,
    exact: HashMap<String, usize>,
    suffix: Vec<(String, usize)>,
    prefix: Vec<(String, usize)>,
    any: Option<usize>,
    ignore_port: bool,
    pub request: HeaderMutation,
    pub response: HeaderMutation,
    pub internal_only: Vec<HeaderName>,
    pub validate_clusters: Option<bool>,
    pub per_filter: PerFilterConfigs,
}

#[derive(Debug)]
pub struct VirtualHost {
    pub name: String,
    pub routes: Vec<Route>,
    pub per_filter: PerFilterConfigs,
    pub request: HeaderMutation,
    pub response: HeaderMutation,
}

#[derive(Debug)]
pub struct Route {
    pub name: String,
    /// `decorator.operation`: the name of its requests' spans.
    pub operation: Option<String>,
    pub matcher: RouteMatch,
    pub action: Action,
    pub request: HeaderMutation,
    pub response: HeaderMutation,
    pub per_filter: PerFilterConfigs,
}

impl RouteTable {
    pub fn from_proto(rc: &pb::RouteConfiguration, path: &str) -> Result<RouteTable> {
        let mut t = RouteTable {
            name: rc.name.clone(),
            vhosts: Vec::with_capacity(rc.virtual_hosts.len()),
            exact: HashMap::new(),
            suffix: Vec::new(),
            prefix: Vec::new(),
            any: None,
            ignore_port: rc.ignore_port_in_host_matching,
            request: HeaderMutation::from_proto(
                &rc.request_headers_to_add,
                &rc.request_headers_to_remove,
                path,
                "request_headers_to_add",
                "request_headers_to_remove",
            )?,
            response: HeaderMutation::from_proto(
                &rc.response_headers_to_add,
                &rc.response_headers_to_remove,
                path,
                "response_headers_to_add",
                "response_headers_to_remove",
            )?,
            internal_only: rc
                .internal_only_headers
                .iter()
                .enumerate()
                .map(|(i, h)| header_name(h, &format!("{path}.internal_only_headers[{i}]")))
                .collect::<Result<_>>()?,
            validate_clusters: rc.validate_clusters.as_ref().map(|b| b.value),
            per_filter: per_filter_configs(&rc.typed_per_filter_config, path)?,
        };
        let mut names = std::collections::HashSet::new();
        for (vi, vh) in rc.virtual_hosts.iter().enumerate() {
            let vpath = format!("{path}.virtual_hosts[{vi}]");
            if !names.insert(vh.name.as_str()) {
                return err(
                    &format!("{vpath}.name"),
                    format!("duplicate virtual host name '{}'", vh.name),
                );
            }
            if vh.domains.is_empty() {
                return err(
                    &format!("{vpath}.domains"),
                    "at least one domain is required",
                );
            }
            for (di, d) in vh.domains.iter().enumerate() {
                let dpath = format!("{vpath}.domains[{di}]");
                let d = d.to_ascii_lowercase();
                let dup = if d == "*" {
                    t.any.replace(vi).is_some()
                } else if let Some(s) = d.strip_prefix('*') {
                    let s = s.to_string();
                    let dup = t.suffix.iter().any(|(x, _)| *x == s);
                    t.suffix.push((s, vi));
                    dup
                } else if let Some(p) = d.strip_suffix('*') {
                    let p = p.to_string();
                    let dup = t.prefix.iter().any(|(x, _)| *x == p);
                    t.prefix.push((p, vi));
                    dup
                } else {
                    if d.contains('*') {
                        return err(
                            &dpath,
                            format!(
                                "invalid domain '{d}': a wildcard must be at the start or the end"
                            ),
                        );
                    }
                    t.exact.insert(d.clone(), vi).is_some()
                };
                if dup {
                    return err(&dpath, format!("only unique values for domains are permitted; duplicate entry of domain {d}"));
                }
            }
            t.vhosts.push(VirtualHost::from_proto(vh, &vpath)?);
        }
        // Longest wildcards match first.
        t.suffix.sort_by_key(|(s, _)| std::cmp::Reverse(s.len()));
        t.prefix.sort_by_key(|(s, _)| std::cmp::Reverse(s.len()));
        Ok(t)
    }

    /// Envoy's domain search: exact, then suffix wildcards, then prefix wildcards (longest
    /// first; the wildcard must stand for at least one character), then `*`.
    pub fn find_vhost(&self, host: &str) -> Option<&VirtualHost> {
        let lowered;
        let mut host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            lowered = host.to_ascii_lowercase();
            lowered.as_str()
        } else {
            host
        };
        if self.ignore_port {
            host = strip_port(host);
        }
        let idx = self
            .exact
            .get(host)
            .copied()
            .or_else(|| {
                self.suffix
                    .iter()
                    .find(|(s, _)| host.len() > s.len() && host.ends_with(s.as_str()))
                    .map(|(_, i)| *i)
            })
            .or_else(|| {
                self.prefix
                    .iter()
                    .find(|(p, _)| host.len() > p.len() && host.starts_with(p.as_str()))
                    .map(|(_, i)| *i)
            })
            .or(self.any)?;
        self.vhosts.get(idx)
    }

    /// Every cluster a route names statically (for `validate_clusters`).
    pub fn clusters(&self) -> impl Iterator<Item = (&str, String)> + '_ {
        self.vhosts.iter().enumerate().flat_map(|(vi, vh)| {
            vh.routes.iter().enumerate().flat_map(move |(ri, r)| {
                let names: Vec<(&str, String)> = match &r.action {
                    Action::Forward(f) => match &f.target {
                        Target::Cluster(c) => vec![(c.as_str(), format!("virtual_hosts[{vi}].routes[{ri}].route.cluster"))],
                        Target::Weighted(ws, _) => ws
                            .iter()
                            .enumerate()
                            .map(|(wi, w)| (w.name.as_str(), format!("virtual_hosts[{vi}].routes[{ri}].route.weighted_clusters.clusters[{wi}].name")))
                            .collect(),
                        Target::Header { .. } => vec![],
                    },
                    _ => vec![],
                };
                names
            })
        })
    }
}

/// `host:port` → `host`, leaving IPv6 literals (`[::1]`) intact.
pub fn strip_port(host: &str) -> &str {
    if let Some(end) = host.rfind(']') {
        return &host[..=end];
    }
    match host.rfind(':') {
        Some(i) if host[i + 1..].bytes().all(|b| b.is_ascii_digit()) => &host[..i],
        _ => host,
    }
}

impl VirtualHost {
    fn from_proto(vh: &pb::VirtualHost, path: &str) -> Result<VirtualHost> {
        let inherited = Inherited {
            retry: match &vh.retry_policy {
                Some(r) => Some(std::sync::Arc::new(retry::RetryPolicy::from_proto(
                    r,
                    &format!("{path}.retry_policy"),
                )?)),
                None => None,
            },
            attempt_count: (
                vh.include_request_attempt_count,
                vh.include_attempt_count_in_response,
            ),
            buffer_limit: buffer_limit(
                #[allow(deprecated)]
                &vh.per_request_buffer_limit_bytes,
                &vh.request_body_buffer_limit,
            ),
            mirrors: std::sync::Arc::from(mirror::mirrors(&vh.request_mirror_policies, path)?),
        };
        let routes = vh
            .routes
            .iter()
            .enumerate()
            .map(|(i, r)| Route::from_proto(r, &inherited, &format!("{path}.routes[{i}]")))
            .collect::<Result<_>>()?;
        Ok(VirtualHost {
            name: vh.name.clone(),
            routes,
            per_filter: per_filter_configs(&vh.typed_per_filter_config, path)?,
            request: HeaderMutation::from_proto(
                &vh.request_headers_to_add,
                &vh.request_headers_to_remove,
                path,
                "request_headers_to_add",
                "request_headers_to_remove",
            )?,
            response: HeaderMutation::from_proto(
                &vh.response_headers_to_add,
                &vh.response_headers_to_remove,
                path,
                "response_headers_to_add",
                "response_headers_to_remove",
            )?,
        })
    }
}

impl Route {
    fn from_proto(r: &pb::Route, vhost: &Inherited, path: &str) -> Result<Route> {
        let Some(m) = &r.r#match else {
            return err(&format!("{path}.match"), "match is required");
        };
        let matcher = RouteMatch::from_proto(m, &format!("{path}.match"))?;
        let action = match &r.action {
            Some(pb::route::Action::Route(a)) => {
                let mut vhost = vhost.clone();
                if let Some(b) = buffer_limit(
                    #[allow(deprecated)]
                    &r.per_request_buffer_limit_bytes,
                    &r.request_body_buffer_limit,
                ) {
                    vhost.buffer_limit = Some(b);
                }
                Action::Forward(Box::new(Forward::from_proto(
                    a,
                    &matcher,
                    &vhost,
                    &format!("{path}.route"),
                )?))
            }
            Some(pb::route::Action::Redirect(a)) => Action::Redirect(Redirect::from_proto(
                a,
                &matcher,
                &format!("{path}.redirect"),
            )?),
            Some(pb::route::Action::DirectResponse(a)) => {
                Action::Direct(Direct::from_proto(a, &format!("{path}.direct_response"))?)
            }
            Some(_) => return err(path, "this route action is not supported by Ferry"),
            None => {
                return err(
                    path,
                    "one of route, redirect or direct_response is required",
                )
            }
        };
        Ok(Route {
            operation: r
                .decorator
                .as_ref()
                .map(|d| d.operation.clone())
                .filter(|o| !o.is_empty()),
            per_filter: per_filter_configs(&r.typed_per_filter_config, path)?,
            name: r.name.clone(),
            matcher,
            action,
            request: HeaderMutation::from_proto(
                &r.request_headers_to_add,
                &r.request_headers_to_remove,
                path,
                "request_headers_to_add",
                "request_headers_to_remove",
            )?,
            response: HeaderMutation::from_proto(
                &r.response_headers_to_add,
                &r.response_headers_to_remove,
                path,
                "response_headers_to_add",
                "response_headers_to_remove",
            )?,
        })
    }
}

/// `request_body_buffer_limit`, else the deprecated `per_request_buffer_limit_bytes`.
fn buffer_limit(
    old: &Option<envoy_types::pb::google::protobuf::UInt32Value>,
    new: &Option<envoy_types::pb::google::protobuf::UInt64Value>,
) -> Option<u64> {
    new.as_ref()
        .map(|v| v.value)
        .or(old.as_ref().map(|v| u64::from(v.value)))
}

fn data_source(
    d: &Option<envoy_types::pb::envoy::config::core::v3::DataSource>,
    path: &str,
) -> Result<Option<bytes::Bytes>> {
    let Some(d) = d else { return Ok(None) };
    Ok(match &d.specifier {
        Some(DataSpec::InlineString(s)) => Some(bytes::Bytes::from(s.clone())),
        Some(DataSpec::InlineBytes(b)) => Some(bytes::Bytes::from(b.clone())),
        Some(DataSpec::Filename(f)) => Some(bytes::Bytes::from(std::fs::read(f).map_err(|e| {
            super::ConfigError {
                path: format!("{path}.filename"),
                msg: format!("cannot read {f}: {e}"),
            }
        })?)),
        Some(_) => return err(path, "this data source is not supported by Ferry"),
        None => None,
    })
}
