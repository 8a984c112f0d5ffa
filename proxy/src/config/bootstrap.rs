//! The whole validated bootstrap: node, admin, static listeners and clusters.

use super::cluster::Cluster;
use super::listener::{socket_address, Listener, NetworkFilter};
use super::support::{self, Ignored};
use super::{err, load, Result};
use envoy_types::pb::envoy::config::bootstrap::v3 as pb;
use prost_reflect::DynamicMessage;
use std::collections::HashSet;
use std::net::SocketAddr;

#[derive(Debug, Clone, Default)]
pub struct Node {
    pub id: String,
    pub cluster: String,
    pub zone: String,
}

#[derive(Debug)]
pub struct Bootstrap {
    pub node: Node,
    pub admin: Option<SocketAddr>,
    pub listeners: Vec<Listener>,
    pub clusters: Vec<Cluster>,
    /// Tuning-only fields that were set and are not acted on.
    pub ignored: Vec<Ignored>,
    /// The bootstrap as given, for `/config_dump`.
    pub raw: DynamicMessage,
}

impl Bootstrap {
    /// Checks every set field against what Ferry supports, then converts.
    pub fn from_dynamic(raw: DynamicMessage) -> Result<Bootstrap> {
        let ignored = support::check(&raw, "")?;
        let b: pb::Bootstrap = load::to_typed(&raw)?;
        let node = b.node.as_ref().map(|n| Node {
            id: n.id.clone(),
            cluster: n.cluster.clone(),
            zone: n
                .locality
                .as_ref()
                .map(|l| l.zone.clone())
                .unwrap_or_default(),
        });
        let admin = match &b.admin {
            Some(a) if a.address.is_some() => Some(socket_address(&a.address, "admin.address")?),
            _ => None,
        };
        let sr = b.static_resources.unwrap_or_default();
        let mut clusters = Vec::with_capacity(sr.clusters.len());
        let mut cluster_names = HashSet::new();
        for (i, c) in sr.clusters.iter().enumerate() {
            let path = format!("static_resources.clusters[{i}]");
            if !cluster_names.insert(c.name.clone()) {
                return err(
                    &format!("{path}.name"),
                    format!("cluster manager: duplicate cluster '{}' found", c.name),
                );
            }
            clusters.push(Cluster::from_proto(c, &path)?);
        }
        let mut listeners = Vec::with_capacity(sr.listeners.len());
        let mut names = HashSet::new();
        let mut addrs = HashSet::new();
        for (i, l) in sr.listeners.iter().enumerate() {
            let path = format!("static_resources.listeners[{i}]");
            let listener = Listener::from_proto(l, &path)?;
            if !names.insert(listener.name.clone()) {
                // Envoy keeps the first listener of a name and ignores later ones.
                tracing::warn!(
                    "{path}: a listener named '{}' already exists; ignored",
                    listener.name
                );
                continue;
            }
            if listener.address.port() != 0 && !addrs.insert(listener.address) {
                return err(
                    &format!("{path}.address"),
                    format!(
                        "error adding listener '{}': another listener is already bound to {}",
                        listener.name, listener.address
                    ),
                );
            }
            check_route_clusters(&listener, &cluster_names, &path)?;
            listeners.push(listener);
        }
        Ok(Bootstrap {
            node: node.unwrap_or_default(),
            admin,
            listeners,
            clusters,
            ignored,
            raw,
        })
    }
}

/// A static `route_config` validates its clusters by default (`validate_clusters`).
fn check_route_clusters(l: &Listener, clusters: &HashSet<String>, path: &str) -> Result<()> {
    for (ci, chain) in l.chains.iter().chain(l.default_chain.iter()).enumerate() {
        let NetworkFilter::Http(hcm) = &chain.filter else {
            continue;
        };
        if hcm.routes.validate_clusters == Some(false) {
            continue;
        }
        for (name, at) in hcm.routes.clusters() {
            if !clusters.contains(name) {
                return err(
                    &format!(
                        "{path}.filter_chains[{ci}].filters[0].typed_config.route_config.{at}"
                    ),
                    format!("route: unknown cluster '{name}'"),
                );
            }
        }
    }
    Ok(())
}
