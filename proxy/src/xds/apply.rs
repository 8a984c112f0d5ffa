//! Applying one response per resource type. Every resource is checked alone: a good one is
//! applied, a bad one is named in the NACK and keeps its last good version.

use super::resource::{accepted, decode, diff, finish, sotw};
use super::{Accepted, Resources, XdsState};
use crate::cluster::ClusterRt;
use crate::config::cluster::{endpoints, Cluster, Discovery};
use crate::config::hcm::RouteSource;
use crate::config::listener::{Listener, NetworkFilter};
use crate::config::route::RouteTable;
use envoy_types::pb::envoy::config::cluster::v3 as cluster_pb;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3 as listener_pb;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::google::protobuf::Any;
use ferry_xds::ads;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// The RDS route configurations a listener's connection managers name.
fn rds_names(l: &Listener) -> impl Iterator<Item = &str> {
    l.chains
        .iter()
        .chain(l.default_chain.iter())
        .filter_map(|c| match &c.filter {
            NetworkFilter::Http(h) => match &h.routes {
                RouteSource::Rds(name) => Some(name.as_str()),
                RouteSource::Static(_) => None,
            },
            NetworkFilter::TcpProxy(_) => None,
        })
}

impl XdsState {
    /// Runs the listeners of `wanted` whose routes are all known. One still waiting for its
    /// routes (warming, as in Envoy) keeps serving the version it had, or is not started yet.
    /// Returns the listeners that could not be bound.
    pub(super) fn run_listeners(
        &self,
        res: &mut Resources,
        server: &Arc<crate::snapshot::Server>,
        wanted: &BTreeMap<String, Accepted<Arc<Listener>>>,
    ) -> Vec<(String, String)> {
        let mut desired = Vec::new();
        let mut warming = 0u64;
        for (name, a) in wanted {
            if rds_names(&a.value).all(|r| res.routes.contains_key(r))
                && crate::tls::sds::listener_ready(&a.value)
            {
                desired.push(a.value.clone());
            } else {
                warming += 1;
                if let Some(running) = res.serving.get(name) {
                    desired.push(running.clone());
                }
            }
        }
        self.manager.listeners_warming.set(warming);
        let errors = server.listeners.apply(server, &desired, true);
        res.serving = desired
            .into_iter()
            .filter(|l| !errors.iter().any(|(n, _)| *n == l.name))
            .map(|l| (l.name.clone(), l))
            .collect();
        errors
    }

    fn start_draining(
        &self,
        res: &mut Resources,
        server: &Arc<crate::snapshot::Server>,
        name: String,
        old: Accepted<Arc<Listener>>,
    ) {
        self.manager.listeners_draining.inc();
        res.draining.insert(name.clone(), old);
        let (me, drain) = (
            self.me.get().cloned(),
            std::time::Duration::from_secs(server.cli.drain_time_s),
        );
        tokio::spawn(async move {
            tokio::time::sleep(drain).await;
            if let Some(state) = me.and_then(|w| w.upgrade()) {
                let mut res = state.res.lock().unwrap_or_else(|p| p.into_inner());
                if res.draining.remove(&name).is_some() {
                    state.manager.listeners_draining.dec();
                }
            }
        });
    }

    pub(super) fn apply_clusters(
        &self,
        res: &mut Resources,
        version: &str,
        resources: Vec<Any>,
    ) -> Result<(), String> {
        let manager = &self.manager;
        let (assignments, eds_stats) = (&res.assignments, &mut res.eds_stats);
        let (next, errors) = sotw::<cluster_pb::Cluster, _>(
            &res.clusters,
            &resources,
            ads::CLUSTER,
            "Cluster",
            |c| &c.name,
            |n| self.static_clusters.contains_key(n),
            version,
            |typed| {
                let cfg = Cluster::from_proto(typed, "").inspect_err(|_| {
                    // Envoy counts a cluster it failed to create as added.
                    manager.cluster_added.inc();
                })?;
                let rt = ClusterRt::new(cfg);
                if rt.cfg.discovery == Discovery::Eds {
                    let name = rt.cfg.name.clone();
                    eds_stats
                        .entry(name.clone())
                        .or_insert_with(|| super::stats::SubStats::for_cluster(&name))
                        .attempt
                        .inc();
                    if let Some(a) = assignments.get(&rt.cfg.eds_service_name) {
                        rt.set_endpoints(&a.value.endpoints, a.value.overprovisioning);
                    }
                }
                rt.start();
                Ok(rt)
            },
        );
        let (added, modified, removed) = diff(&res.clusters, &next);
        for (gone, rt) in res.clusters.iter().filter(|(k, _)| !next.contains_key(*k)) {
            crate::stats::registry()
                .remove_scope(crate::stats::Scope::Cluster(&rt.value.cfg.stat_name));
            res.eds_stats.remove(gone);
        }
        // Assignments no remaining EDS cluster uses are forgotten with their clusters.
        let used: BTreeSet<&str> = next
            .values()
            .filter(|c| c.value.cfg.discovery == Discovery::Eds)
            .map(|c| c.value.cfg.eds_service_name.as_str())
            .collect();
        res.assignments
            .retain(|name, _| used.contains(name.as_str()));
        let m = &self.manager;
        m.cluster_added.add(added as u64);
        m.cluster_modified.add(modified as u64);
        m.cluster_removed.add(removed as u64);
        res.clusters = next;
        res.cds_version = version.to_string();
        res.received.insert(ads::CLUSTER);
        self.publish(res);
        let eds: BTreeSet<String> = res
            .clusters
            .values()
            .filter(|c| c.value.cfg.discovery == Discovery::Eds)
            .map(|c| c.value.cfg.eds_service_name.clone())
            .collect();
        self.subscribe(ads::ENDPOINT, eds);
        self.want_secrets(res);
        // Envoy counts a config reload when clusters are added or changed, not for removals alone.
        let changed = added + modified > 0;
        finish(
            &self.stats.cds,
            version,
            changed,
            resources.is_empty(),
            errors,
        )
    }

    pub(super) fn apply_assignments(
        &self,
        res: &mut Resources,
        version: &str,
        resources: Vec<Any>,
    ) -> Result<(), String> {
        let mut errors = Vec::new();
        // Which EDS clusters take each assignment (usually one), built once per response.
        let mut by_service: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for c in res.clusters.values() {
            if c.value.cfg.discovery == Discovery::Eds {
                by_service
                    .entry(c.value.cfg.eds_service_name.clone())
                    .or_default()
                    .push(c.value.cfg.name.clone());
            }
        }
        for any in &resources {
            let d = match decode::<ClusterLoadAssignment>(
                any,
                ads::ENDPOINT,
                "ClusterLoadAssignment",
                |c| &c.cluster_name,
                |n| res.assignments.get(n).map(|o| o.raw.as_slice()),
            ) {
                Ok(d) => d,
                Err((_, e)) => {
                    errors.push(e);
                    continue;
                }
            };
            let users: Vec<String> = by_service.get(&d.name).cloned().unwrap_or_default();
            let charge = |res: &mut Resources, ok: bool, changed: bool, empty: bool| {
                for name in &users {
                    let st = res
                        .eds_stats
                        .entry(name.clone())
                        .or_insert_with(|| super::stats::SubStats::for_cluster(name));
                    st.response(ok, version, changed, empty);
                    if ok && !changed {
                        st.no_rebuild.inc();
                    }
                }
            };
            if res.assignments.get(&d.name).is_some_and(|o| o.raw == d.raw) {
                charge(res, true, false, false);
                continue;
            }
            match endpoints(&d.typed, Discovery::Eds, "") {
                Ok(eps) => {
                    for name in &users {
                        if let Some(c) = res.clusters.get(name) {
                            c.value.set_endpoints(&eps.endpoints, eps.overprovisioning);
                        }
                    }
                    // A host-set update of a cluster that already had its endpoints.
                    if res.assignments.contains_key(&d.name) {
                        self.manager.cluster_updated.add(users.len() as u64);
                    }
                    let empty = eps.endpoints.is_empty();
                    res.assignments
                        .insert(d.name, accepted(eps, d.raw, version));
                    charge(res, true, true, empty);
                }
                Err(e) => {
                    errors.push(format!("ClusterLoadAssignment '{}': {e}", d.name));
                    charge(res, false, false, false);
                }
            }
        }
        res.received.insert(ads::ENDPOINT);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }

    pub(super) fn apply_listeners(
        &self,
        res: &mut Resources,
        version: &str,
        resources: Vec<Any>,
    ) -> Result<(), String> {
        let Some(server) = self.server() else {
            return Ok(());
        };
        let static_names: BTreeSet<&str> = server
            .bootstrap
            .listeners
            .iter()
            .map(|l| l.name.as_str())
            .collect();
        let (mut next, mut errors) = sotw::<listener_pb::Listener, _>(
            &res.listeners,
            &resources,
            ads::LISTENER,
            "Listener",
            |l| &l.name,
            |n| static_names.contains(n),
            version,
            |typed| Listener::from_proto(typed, "").map(Arc::new),
        );
        for (name, e) in self.run_listeners(res, &server, &next) {
            errors.push(format!("Listener '{name}': {e}"));
            next.remove(&name);
        }
        let (added, modified, removed) = diff(&res.listeners, &next);
        let m = &self.manager;
        m.listener_modified.add(modified as u64);
        m.listener_removed.add(removed as u64);
        // Envoy counts a listener created once per worker.
        m.listener_create_success
            .add(((added + modified) * server.concurrency) as u64);
        // Removed listeners drain for the drain time, as Envoy's do.
        let gone: Vec<String> = res
            .listeners
            .keys()
            .filter(|k| !next.contains_key(*k))
            .cloned()
            .collect();
        for name in gone {
            if let Some(old) = res.listeners.remove(&name) {
                self.start_draining(res, &server, name, old);
            }
        }
        for name in next.keys() {
            if res.draining.remove(name).is_some() {
                self.manager.listeners_draining.dec();
            }
        }
        res.listeners = next;
        res.lds_version = version.to_string();
        res.received.insert(ads::LISTENER);
        let pairs: BTreeSet<(String, String)> = server
            .bootstrap
            .listeners
            .iter()
            .chain(res.listeners.values().map(|a| &a.value))
            .flat_map(|l| l.chains.iter().chain(l.default_chain.iter()))
            .filter_map(|c| match &c.filter {
                NetworkFilter::Http(h) => match &h.routes {
                    RouteSource::Rds(name) => Some((name.clone(), h.stat_prefix.clone())),
                    RouteSource::Static(_) => None,
                },
                NetworkFilter::TcpProxy(_) => None,
            })
            .collect();
        for (name, prefix) in &pairs {
            let entry = res.rds_stats.entry(name.clone()).or_default();
            if !entry.iter().any(|(p, _)| p == prefix) {
                let st = super::stats::SubStats::for_rds(&format!("http.{prefix}.rds.{name}"));
                st.attempt.inc();
                entry.push((prefix.clone(), st));
            }
        }
        self.subscribe(ads::ROUTE, pairs.into_iter().map(|(n, _)| n).collect());
        self.want_secrets(res);
        let changed = added + modified + removed > 0;
        finish(
            &self.stats.lds,
            version,
            changed,
            resources.is_empty(),
            errors,
        )
    }

    /// Secrets came from an SDS server: listeners waiting for them start.
    pub(super) fn secrets_arrived(&self) {
        let mut res = self.res.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(server) = self.server() {
            let wanted = res.listeners.clone();
            for (name, e) in self.run_listeners(&mut res, &server, &wanted) {
                tracing::warn!(listener = %name, "cannot start listener: {e}");
            }
        }
    }

    /// SDS secrets over ADS: stored by name; listeners waiting for them start.
    pub(super) fn apply_secrets(
        &self,
        res: &mut Resources,
        version: &str,
        resources: Vec<Any>,
    ) -> Result<(), String> {
        let result = crate::tls::sds::apply(version, &resources);
        res.received.insert(ads::SECRET);
        if let Some(server) = self.server() {
            let wanted = res.listeners.clone();
            for (name, e) in self.run_listeners(res, &server, &wanted) {
                tracing::warn!(listener = %name, "cannot start listener: {e}");
            }
        }
        result
    }

    pub(super) fn apply_routes(
        &self,
        res: &mut Resources,
        version: &str,
        resources: Vec<Any>,
    ) -> Result<(), String> {
        let mut errors = Vec::new();
        for any in &resources {
            let d = match decode::<RouteConfiguration>(
                any,
                ads::ROUTE,
                "RouteConfiguration",
                |r| &r.name,
                |n| res.routes.get(n).map(|o| o.raw.as_slice()),
            ) {
                Ok(d) => d,
                Err((_, e)) => {
                    errors.push(e);
                    continue;
                }
            };
            let charge = |res: &Resources, ok: bool, changed: bool| {
                for (_, st) in res.rds_stats.get(&d.name).into_iter().flatten() {
                    st.response(ok, version, changed, false);
                }
            };
            if res.routes.get(&d.name).is_some_and(|o| o.raw == d.raw) {
                charge(res, true, false);
                continue;
            }
            match RouteTable::from_proto(&d.typed, "") {
                Ok(t) => {
                    charge(res, true, true);
                    res.routes
                        .insert(d.name, accepted(Arc::new(t), d.raw, version));
                }
                Err(e) => {
                    charge(res, false, false);
                    errors.push(format!("RouteConfiguration '{}': {e}", d.name));
                }
            }
        }
        res.received.insert(ads::ROUTE);
        self.publish(res);
        // Listeners that were waiting for these routes can serve now.
        if let Some(server) = self.server() {
            let wanted = res.listeners.clone();
            for (name, e) in self.run_listeners(res, &server, &wanted) {
                tracing::warn!(listener = %name, "cannot start listener: {e}");
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }
}
