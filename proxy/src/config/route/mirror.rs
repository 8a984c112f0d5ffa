//! `request_mirror_policies`: fire-and-forget copies of a route's requests to other clusters.

use super::super::filters::Percent;
use super::super::headers::header_name;
use super::super::{err, Result};
use envoy_types::pb::envoy::config::route::v3::route_action::RequestMirrorPolicy;
use http::HeaderName;

#[derive(Debug)]
pub enum MirrorTarget {
    Cluster(String),
    /// `cluster_header`: the cluster named by this request header.
    Header(HeaderName),
}

#[derive(Debug)]
pub struct Mirror {
    pub target: MirrorTarget,
    /// `runtime_fraction` (unset: every request).
    pub fraction: Percent,
    /// The `-shadow` suffix on the host (`disable_shadow_host_suffix_append` turns it off).
    pub suffix: bool,
    /// `host_rewrite_literal`.
    pub host: Option<http::HeaderValue>,
}

impl Mirror {
    pub fn from_proto(p: &RequestMirrorPolicy, path: &str) -> Result<Mirror> {
        let target = match (p.cluster.is_empty(), p.cluster_header.is_empty()) {
            (false, true) => MirrorTarget::Cluster(p.cluster.clone()),
            (true, false) => MirrorTarget::Header(header_name(
                &p.cluster_header,
                &format!("{path}.cluster_header"),
            )?),
            _ => {
                return err(
                    path,
                    "exactly one of cluster and cluster_header is required",
                )
            }
        };
        let fraction = match &p.runtime_fraction {
            None => Percent {
                numerator: 100,
                denominator: 100,
            },
            Some(r) => Percent::from_proto(
                &r.default_value,
                &format!("{path}.runtime_fraction.default_value"),
            )?,
        };
        let host = if p.host_rewrite_literal.is_empty() {
            None
        } else {
            Some(
                http::HeaderValue::from_str(&p.host_rewrite_literal).map_err(|_| {
                    super::super::ConfigError {
                        path: format!("{path}.host_rewrite_literal"),
                        msg: "invalid host".into(),
                    }
                })?,
            )
        };
        Ok(Mirror {
            target,
            fraction,
            suffix: !p.disable_shadow_host_suffix_append,
            host,
        })
    }
}

/// The policies of a list, each at its index.
pub fn mirrors(ps: &[RequestMirrorPolicy], path: &str) -> Result<Vec<Mirror>> {
    ps.iter()
        .enumerate()
        .map(|(i, p)| Mirror::from_proto(p, &format!("{path}.request_mirror_policies[{i}]")))
        .collect()
}

/// Envoy's shadow host: `-shadow` before the port (`svc:8080` → `svc-shadow:8080`).
pub fn shadow_host(host: &str) -> String {
    let (name, port) = match host.rfind(':') {
        Some(i)
            if !host[i..].contains(']') && host[i + 1..].bytes().all(|b| b.is_ascii_digit()) =>
        {
            host.split_at(i)
        }
        _ => (host, ""),
    };
    format!("{name}-shadow{port}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn shadow_hosts() {
        for (h, want) in [
            ("svc.ns:8080", "svc.ns-shadow:8080"),
            ("svc.ns", "svc.ns-shadow"),
            ("[::1]:9000", "[::1]-shadow:9000"),
            ("[::1]", "[::1]-shadow"),
        ] {
            assert_eq!(super::shadow_host(h), want);
        }
    }
}
