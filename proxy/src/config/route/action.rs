//! Route actions: forward to a cluster (with rewrites), redirect, or answer directly.

use super::super::headers::{header_name, HeaderMutation};
use super::super::{duration, err, Result};
use super::matching::RouteMatch;
use super::redirect::Redirect;
use super::retry::RetryPolicy;
use envoy_types::pb::envoy::config::route::v3 as pb;
use envoy_types::pb::envoy::config::route::v3::route_action::{
    ClusterSpecifier, HostRewriteSpecifier,
};
use http::header::{HeaderName, HeaderValue};
use http::StatusCode;
use regex::Regex;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug)]
pub enum Action {
    Forward(Box<Forward>),
    Redirect(Redirect),
    Direct(Direct),
}

#[derive(Debug)]
pub enum Target {
    Cluster(String),
    Header {
        name: HeaderName,
        not_found: StatusCode,
    },
    Weighted(Vec<WeightedTarget>, u64),
}

#[derive(Debug)]
pub struct WeightedTarget {
    pub name: String,
    pub weight: u32,
    pub request: HeaderMutation,
    pub response: HeaderMutation,
}

#[derive(Debug, Clone)]
pub enum HostRewrite {
    Keep,
    Literal(HeaderValue),
    Auto,
    Header(HeaderName),
}

#[derive(Debug)]
pub struct Rewrite {
    /// `(matched prefix, replacement)`
    pub prefix: Option<(String, String)>,
    pub regex: Option<(Regex, String)>,
}

#[derive(Debug)]
pub struct Forward {
    pub target: Target,
    pub rewrite: Rewrite,
    pub host_rewrite: HostRewrite,
    /// `None`: no timeout (route `timeout: 0s`).
    pub timeout: Option<Duration>,
    /// `idle_timeout`, `max_stream_duration`, `max_grpc_timeout`.
    pub stream: super::timeouts::StreamTimeouts,
    /// Per-route upgrade overrides: `(upgrade type lowercased, enabled)`.
    pub upgrades: Vec<(String, bool)>,
    /// `hash_policy`: the request hash RING_HASH and MAGLEV clusters pick by.
    pub hash: Vec<super::hash::HashPolicy>,
    /// The route's `retry_policy`, else its virtual host's.
    pub retry: Option<Arc<RetryPolicy>>,
    /// What the route takes from its virtual host.
    pub vhost: Inherited,
}

/// Virtual-host settings every route of it uses.
#[derive(Debug, Clone)]
pub struct Inherited {
    pub retry: Option<Arc<RetryPolicy>>,
    /// `include_request_attempt_count`, `include_attempt_count_in_response`.
    pub attempt_count: (bool, bool),
    /// `per_request_buffer_limit_bytes` (the route's wins).
    pub buffer_limit: Option<u64>,
    /// `request_mirror_policies` (a route's own list, when not empty, replaces these).
    pub mirrors: Arc<[super::mirror::Mirror]>,
}

pub const DEFAULT_ROUTE_TIMEOUT: Duration = Duration::from_secs(15);

impl Forward {
    pub(super) fn from_proto(
        a: &pb::RouteAction,
        m: &RouteMatch,
        vhost: &Inherited,
        path: &str,
    ) -> Result<Forward> {
        let target = match &a.cluster_specifier {
            Some(ClusterSpecifier::Cluster(c)) => {
                if c.is_empty() {
                    return err(&format!("{path}.cluster"), "cluster name must not be empty");
                }
                Target::Cluster(c.clone())
            }
            Some(ClusterSpecifier::ClusterHeader(h)) => Target::Header {
                name: header_name(h, &format!("{path}.cluster_header"))?,
                not_found: match a.cluster_not_found_response_code {
                    1 => StatusCode::NOT_FOUND,
                    2 => StatusCode::INTERNAL_SERVER_ERROR,
                    _ => StatusCode::SERVICE_UNAVAILABLE,
                },
            },
            Some(ClusterSpecifier::WeightedClusters(w)) => {
                let wp = format!("{path}.weighted_clusters");
                let mut targets = Vec::new();
                let mut total = 0u64;
                for (i, c) in w.clusters.iter().enumerate() {
                    let cp = format!("{wp}.clusters[{i}]");
                    if c.name.is_empty() {
                        return err(&format!("{cp}.name"), "cluster name must not be empty");
                    }
                    let weight = c.weight.as_ref().map_or(0, |w| w.value);
                    total += u64::from(weight);
                    targets.push(WeightedTarget {
                        name: c.name.clone(),
                        weight,
                        request: HeaderMutation::from_proto(
                            &c.request_headers_to_add,
                            &c.request_headers_to_remove,
                            &cp,
                            "request_headers_to_add",
                            "request_headers_to_remove",
                        )?,
                        response: HeaderMutation::from_proto(
                            &c.response_headers_to_add,
                            &c.response_headers_to_remove,
                            &cp,
                            "response_headers_to_add",
                            "response_headers_to_remove",
                        )?,
                    });
                }
                if targets.is_empty() {
                    return err(
                        &format!("{wp}.clusters"),
                        "at least one cluster is required",
                    );
                }
                #[allow(deprecated)]
                if let Some(t) = &w.total_weight {
                    if u64::from(t.value) != total {
                        return err(
                            &format!("{wp}.total_weight"),
                            format!(
                                "sum of weights {total} does not match total_weight {}",
                                t.value
                            ),
                        );
                    }
                }
                if total == 0 {
                    return err(&wp, "sum of weights must be greater than 0");
                }
                Target::Weighted(targets, total)
            }
            Some(_) => return err(path, "this cluster specifier is not supported by Ferry"),
            None => {
                return err(
                    path,
                    "one of cluster, cluster_header or weighted_clusters is required",
                )
            }
        };
        let prefix = if a.prefix_rewrite.is_empty() {
            None
        } else {
            let Some(p) = m.literal_prefix() else {
                return err(
                    &format!("{path}.prefix_rewrite"),
                    "prefix_rewrite needs a prefix or path_separated_prefix match",
                );
            };
            Some((p.to_string(), a.prefix_rewrite.clone()))
        };
        let regex = match &a.regex_rewrite {
            None => None,
            Some(r) => {
                let rp = format!("{path}.regex_rewrite");
                let Some(pattern) = &r.pattern else {
                    return err(&format!("{rp}.pattern"), "pattern is required");
                };
                // RE2 substitution, not anchored: every match in the path is replaced.
                let re = Regex::new(&pattern.regex).map_err(|e| super::super::ConfigError {
                    path: format!("{rp}.pattern"),
                    msg: format!("invalid regex: {e}"),
                })?;
                Some((re, re2_substitution(&r.substitution)))
            }
        };
        if prefix.is_some() && regex.is_some() {
            return err(
                path,
                "only one of prefix_rewrite and regex_rewrite may be set",
            );
        }
        let host_rewrite = match &a.host_rewrite_specifier {
            None => HostRewrite::Keep,
            Some(HostRewriteSpecifier::HostRewriteLiteral(h)) => {
                HostRewrite::Literal(HeaderValue::from_str(h).map_err(|_| {
                    super::super::ConfigError {
                        path: format!("{path}.host_rewrite_literal"),
                        msg: "invalid host".into(),
                    }
                })?)
            }
            Some(HostRewriteSpecifier::AutoHostRewrite(b)) if b.value => HostRewrite::Auto,
            Some(HostRewriteSpecifier::AutoHostRewrite(_)) => HostRewrite::Keep,
            Some(HostRewriteSpecifier::HostRewriteHeader(h)) => {
                HostRewrite::Header(header_name(h, &format!("{path}.host_rewrite_header"))?)
            }
            Some(_) => return err(path, "this host rewrite is not supported by Ferry"),
        };
        let timeout = match &a.timeout {
            None => Some(DEFAULT_ROUTE_TIMEOUT),
            Some(d) => Some(duration(d, &format!("{path}.timeout"))?).filter(|d| !d.is_zero()),
        };
        let upgrades = a
            .upgrade_configs
            .iter()
            .map(|u| {
                (
                    u.upgrade_type.to_ascii_lowercase(),
                    u.enabled.as_ref().is_none_or(|b| b.value),
                )
            })
            .collect();
        Ok(Forward {
            target,
            rewrite: Rewrite { prefix, regex },
            host_rewrite,
            timeout,
            upgrades,
            hash: super::hash::hash_policies(&a.hash_policy, &format!("{path}.hash_policy"))?,
            stream: super::timeouts::StreamTimeouts::from_proto(a, path)?,
            retry: match &a.retry_policy {
                Some(r) => Some(Arc::new(RetryPolicy::from_proto(
                    r,
                    &format!("{path}.retry_policy"),
                )?)),
                None => vhost.retry.clone(),
            },
            vhost: Inherited {
                mirrors: if a.request_mirror_policies.is_empty() {
                    vhost.mirrors.clone()
                } else {
                    Arc::from(super::mirror::mirrors(&a.request_mirror_policies, path)?)
                },
                ..vhost.clone()
            },
        })
    }
}

/// RE2's `\1` substitution syntax in the `regex` crate's `${1}` form.
pub(super) fn re2_substitution(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.peek() {
                Some(d) if d.is_ascii_digit() => {
                    out.push_str(&format!("${{{d}}}"));
                    chars.next();
                }
                Some('\\') => {
                    out.push('\\');
                    chars.next();
                }
                _ => out.push('\\'),
            },
            '$' => out.push_str("$$"),
            c => out.push(c),
        }
    }
    out
}

impl Rewrite {
    /// The path the upstream sees, or `None` when it is unchanged.
    pub fn apply(&self, path_and_query: &str) -> Option<String> {
        if let Some((prefix, with)) = &self.prefix {
            let rest = path_and_query.get(prefix.len()..)?;
            return Some(format!("{with}{rest}"));
        }
        if let Some((re, with)) = &self.regex {
            let (path, query) = match path_and_query.find('?') {
                Some(i) => path_and_query.split_at(i),
                None => (path_and_query, ""),
            };
            let new = re.replace_all(path, with.as_str());
            return Some(format!("{new}{query}"));
        }
        None
    }
}

#[derive(Debug)]
pub struct Direct {
    pub status: StatusCode,
    pub body: Option<bytes::Bytes>,
}

impl Direct {
    pub(super) fn from_proto(a: &pb::DirectResponseAction, path: &str) -> Result<Direct> {
        let status = u16::try_from(a.status)
            .ok()
            .filter(|s| (200..600).contains(s))
            .and_then(|s| StatusCode::from_u16(s).ok());
        let Some(status) = status else {
            return err(
                &format!("{path}.status"),
                format!("status {} is not in [200, 600)", a.status),
            );
        };
        Ok(Direct {
            status,
            body: super::data_source(&a.body, &format!("{path}.body"))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitution() {
        assert_eq!(re2_substitution(r"/v2/\1/x$"), "/v2/${1}/x$$");
    }

    #[test]
    fn rewrites() {
        let rw = Rewrite {
            prefix: Some(("/api".into(), "/v1".into())),
            regex: None,
        };
        assert_eq!(rw.apply("/api/users?q=1").as_deref(), Some("/v1/users?q=1"));
        let rw = Rewrite {
            prefix: None,
            regex: Some((
                Regex::new("^/service/([^/]+)(/.*)$").expect("re"),
                re2_substitution(r"\2/instance/\1"),
            )),
        };
        assert_eq!(
            rw.apply("/service/foo/v1/api?x").as_deref(),
            Some("/v1/api/instance/foo?x")
        );
    }
}
