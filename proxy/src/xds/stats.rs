//! Envoy's xDS subscription and manager stats.

use crate::stats::{registry, Block, Cell, Counter, Gauge, Kind, Scope};
use std::sync::Arc;

/// One subscription's stats (`cluster_manager.cds.*`, `listener_manager.lds.*`,
/// `http.<prefix>.rds.<route config>.*`, `cluster.<name>.*` for EDS): one block of the scope.
#[derive(Default)]
pub struct SubStats {
    pub attempt: Cell,
    pub success: Cell,
    pub rejected: Cell,
    pub failure: Cell,
    pub empty: Cell,
    pub init_fetch_timeout: Cell,
    pub config_reload: Cell,
    pub version: Cell,
    pub no_rebuild: Cell,
    /// Which of `update_empty`, `config_reload` and `update_no_rebuild` Envoy keeps here.
    has: (bool, bool, bool),
}

impl Block for SubStats {
    fn visit(&self, f: &mut dyn FnMut(&str, Kind, u64)) {
        use Kind::Counter as C;
        f("update_attempt", C, self.attempt.get());
        f("update_success", C, self.success.get());
        f("update_rejected", C, self.rejected.get());
        f("update_failure", C, self.failure.get());
        f("init_fetch_timeout", C, self.init_fetch_timeout.get());
        f("version", Kind::Gauge, self.version.get());
        if self.has.0 {
            f("update_empty", C, self.empty.get());
        }
        if self.has.1 {
            f("config_reload", C, self.config_reload.get());
        }
        if self.has.2 {
            f("update_no_rebuild", C, self.no_rebuild.get());
        }
    }
}

impl SubStats {
    /// CDS: Envoy keeps `config_reload` but no `update_empty`.
    pub fn for_cds() -> Arc<SubStats> {
        Self::build(Scope::Named("cluster_manager.cds"), (false, true, false))
    }

    /// LDS: Envoy keeps neither `update_empty` nor `config_reload`.
    pub fn for_lds() -> Arc<SubStats> {
        Self::build(Scope::Named("listener_manager.lds"), (false, false, false))
    }

    /// RDS (`http.<prefix>.rds.<name>`).
    pub fn for_rds(prefix: &str) -> Arc<SubStats> {
        Self::build(Scope::Named(prefix), (true, true, false))
    }

    /// EDS: the cluster's own scope, with `update_no_rebuild`.
    pub fn for_cluster(name: &str) -> Arc<SubStats> {
        Self::build(Scope::Cluster(name), (true, true, true))
    }

    fn build(scope: Scope<'_>, has: (bool, bool, bool)) -> Arc<SubStats> {
        registry().block(scope, || SubStats {
            has,
            ..Default::default()
        })
    }

    /// A response: accepted or NACKed; `changed` when it altered the configuration.
    pub fn response(&self, accepted: bool, version: &str, changed: bool, empty: bool) {
        self.attempt.inc();
        if empty {
            self.empty.inc();
        }
        if accepted {
            self.success.inc();
            self.version.set(version_hash(version));
            if changed {
                self.config_reload.inc();
            }
        } else {
            self.rejected.inc();
        }
    }
}

/// Envoy reports a version as the xxHash64 of its `version_info`.
pub fn version_hash(v: &str) -> u64 {
    xxhash_rust::xxh64::xxh64(v.as_bytes(), 0)
}

/// `cluster_manager.*` and `listener_manager.*` counters that xDS moves.
pub struct ManagerStats {
    pub cluster_added: Counter,
    pub cluster_modified: Counter,
    pub cluster_removed: Counter,
    pub cluster_updated: Counter,
    pub listener_modified: Counter,
    pub listener_removed: Counter,
    pub listener_create_success: Counter,
    pub listeners_draining: Gauge,
    pub listeners_warming: Gauge,
}

impl ManagerStats {
    pub fn new() -> ManagerStats {
        let r = registry();
        // Present (at zero) as in Envoy, though Ferry never warms or drains listeners in place.
        for (scope, name) in [
            (Scope::ListenerManager, "listener_create_failure"),
            (Scope::Named("control_plane"), "rate_limit_enforced"),
        ] {
            r.counter(scope, name);
        }
        for (scope, name) in [
            (Scope::ClusterManager, "warming_clusters"),
            (Scope::Named("control_plane"), "pending_requests"),
        ] {
            r.gauge(scope, name);
        }
        r.text(Scope::Named("control_plane"), "identifier");
        ManagerStats {
            cluster_added: r.counter(Scope::ClusterManager, "cluster_added"),
            cluster_modified: r.counter(Scope::ClusterManager, "cluster_modified"),
            cluster_removed: r.counter(Scope::ClusterManager, "cluster_removed"),
            cluster_updated: r.counter(Scope::ClusterManager, "cluster_updated"),
            listener_modified: r.counter(Scope::ListenerManager, "listener_modified"),
            listener_removed: r.counter(Scope::ListenerManager, "listener_removed"),
            listener_create_success: r.counter(Scope::ListenerManager, "listener_create_success"),
            listeners_draining: r.gauge(Scope::ListenerManager, "total_listeners_draining"),
            listeners_warming: r.gauge(Scope::ListenerManager, "total_listeners_warming"),
        }
    }
}
