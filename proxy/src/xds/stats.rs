//! Envoy's xDS subscription and manager stats.

use crate::stats::{registry, Counter, Gauge, Scope};

/// One subscription's stats (`cluster_manager.cds.*`, `listener_manager.lds.*`,
/// `http.<prefix>.rds.<route config>.*`, `cluster.<name>.*` for EDS).
pub struct SubStats {
    pub attempt: Counter,
    pub success: Counter,
    pub rejected: Counter,
    pub failure: Counter,
    pub empty: Counter,
    pub init_fetch_timeout: Counter,
    pub config_reload: Counter,
    pub version: Gauge,
}

impl SubStats {
    /// CDS: Envoy keeps `config_reload` but no `update_empty`.
    pub fn for_cds() -> SubStats {
        Self::build(Scope::Named("cluster_manager.cds"), false, true)
    }

    /// LDS: Envoy keeps neither `update_empty` nor `config_reload`.
    pub fn for_lds() -> SubStats {
        Self::build(Scope::Named("listener_manager.lds"), false, false)
    }

    /// RDS (`http.<prefix>.rds.<name>`).
    pub fn for_rds(prefix: &str) -> SubStats {
        Self::build(Scope::Named(prefix), true, true)
    }

    fn build(scope: Scope<'_>, empty_stat: bool, reload_stat: bool) -> SubStats {
        let r = registry();
        let c = |n: &str| r.counter(scope.clone(), n);
        let detached = || std::sync::Arc::new(crate::stats::detached());
        SubStats {
            attempt: c("update_attempt"),
            success: c("update_success"),
            rejected: c("update_rejected"),
            failure: c("update_failure"),
            empty: if empty_stat {
                c("update_empty")
            } else {
                detached()
            },
            init_fetch_timeout: c("init_fetch_timeout"),
            config_reload: if reload_stat {
                c("config_reload")
            } else {
                detached()
            },
            version: r.gauge(scope.clone(), "version"),
        }
    }

    /// EDS: the cluster's own scope, with `update_no_rebuild`.
    pub fn for_cluster(name: &str) -> SubStats {
        registry().counter(Scope::Cluster(name), "update_no_rebuild");
        Self::build(Scope::Cluster(name), true, true)
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
