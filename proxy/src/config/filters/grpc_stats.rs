//! `envoy.filters.http.grpc_stats`: counts gRPC calls per upstream cluster, optionally per
//! service and method.

use super::super::{err, Result};
use envoy_types::pb::envoy::extensions::filters::http::grpc_stats::v3::filter_config::PerMethodStatSpecifier;
use envoy_types::pb::envoy::extensions::filters::http::grpc_stats::v3::FilterConfig;

#[derive(Debug, Default)]
pub struct GrpcStatsCfg {
    /// `stats_for_all_methods`.
    pub all_methods: bool,
    /// `individual_method_stats_allowlist`: `(service, method)`.
    pub allowlist: Vec<(String, String)>,
    pub replace_dots: bool,
}

impl GrpcStatsCfg {
    pub fn from_proto(f: &FilterConfig, path: &str) -> Result<GrpcStatsCfg> {
        if f.enable_upstream_stats {
            return err(
                &format!("{path}.enable_upstream_stats"),
                "gRPC upstream time histograms are not supported by Ferry yet",
            );
        }
        let mut cfg = GrpcStatsCfg {
            replace_dots: f.replace_dots_in_grpc_service_name,
            ..Default::default()
        };
        match &f.per_method_stat_specifier {
            None => {}
            Some(PerMethodStatSpecifier::StatsForAllMethods(b)) => cfg.all_methods = b.value,
            Some(PerMethodStatSpecifier::IndividualMethodStatsAllowlist(l)) => {
                for s in &l.services {
                    for m in &s.method_names {
                        cfg.allowlist.push((s.name.clone(), m.clone()));
                    }
                }
            }
        }
        Ok(cfg)
    }

    /// The stat prefix within `cluster.<name>.` for a call to `path` (`/pkg.Svc/Method`);
    /// none when the path names no method (the request is not counted).
    pub fn prefix(&self, path: &str) -> Option<String> {
        let named = path
            .strip_prefix('/')
            .and_then(|p| p.split('?').next())
            .and_then(|p| p.split_once('/'))
            .filter(|(s, m)| !s.is_empty() && !m.is_empty() && !m.contains('/'));
        let (s, m) = named?;
        if self.all_methods || self.allowlist.iter().any(|(a, b)| a == s && b == m) {
            let s = if self.replace_dots {
                s.replace('.', "_")
            } else {
                s.to_string()
            };
            Some(format!("grpc.{s}.{m}."))
        } else {
            Some("grpc.".to_string())
        }
    }
}
