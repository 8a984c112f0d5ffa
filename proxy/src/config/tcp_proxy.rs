//! `envoy.filters.network.tcp_proxy`.

use super::{err, opt_duration, Result};
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{
    tcp_proxy::ClusterSpecifier, TcpProxy as Pb,
};
use std::time::Duration;

#[derive(Debug)]
pub struct TcpProxy {
    pub stat_prefix: String,
    /// `(cluster, weight)`; a single cluster has one entry.
    pub clusters: Vec<(String, u32)>,
    pub total_weight: u64,
    /// Envoy's default is one hour; `0s` disables.
    pub idle_timeout: Option<Duration>,
    pub max_connect_attempts: u32,
    pub access_logs: crate::access_log::AccessLogs,
}

impl TcpProxy {
    pub fn from_proto(t: &Pb, path: &str) -> Result<TcpProxy> {
        if t.stat_prefix.is_empty() {
            return err(&format!("{path}.stat_prefix"), "stat_prefix is required");
        }
        let clusters: Vec<(String, u32)> = match &t.cluster_specifier {
            Some(ClusterSpecifier::Cluster(c)) if !c.is_empty() => vec![(c.clone(), 1)],
            Some(ClusterSpecifier::WeightedClusters(w)) => w
                .clusters
                .iter()
                .map(|c| (c.name.clone(), c.weight))
                .collect(),
            _ => return err(path, "cluster or weighted_clusters is required"),
        };
        if let Some(ClusterSpecifier::WeightedClusters(w)) = &t.cluster_specifier {
            if let Some(i) = w.clusters.iter().position(|c| c.weight == 0) {
                return err(
                    &format!("{path}.weighted_clusters.clusters[{i}].weight"),
                    "weight must be at least 1",
                );
            }
        }
        let total_weight: u64 = clusters.iter().map(|(_, w)| u64::from(*w)).sum();
        if total_weight == 0 {
            return err(
                &format!("{path}.weighted_clusters.clusters[0].weight"),
                "sum of weights must be greater than 0",
            );
        }
        let idle_timeout = match opt_duration(&t.idle_timeout, &format!("{path}.idle_timeout"))? {
            None => Some(Duration::from_secs(3600)),
            Some(d) if d.is_zero() => None,
            Some(d) => Some(d),
        };
        let max_connect_attempts = t.max_connect_attempts.as_ref().map_or(1, |v| v.value);
        if max_connect_attempts == 0 {
            return err(
                &format!("{path}.max_connect_attempts"),
                "must be at least 1",
            );
        }
        Ok(TcpProxy {
            stat_prefix: t.stat_prefix.clone(),
            clusters,
            total_weight,
            idle_timeout,
            max_connect_attempts,
            access_logs: crate::access_log::AccessLog::list(
                &t.access_log,
                &format!("{path}.access_log"),
            )?,
        })
    }
}
