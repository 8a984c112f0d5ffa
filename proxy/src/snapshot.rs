//! The immutable runtime snapshot (clusters by name) and the process-wide server state around
//! it. A new snapshot is built off to the side and published with one atomic swap; requests load
//! it once and keep the one they started with.

use crate::cluster::ClusterRt;
use crate::config::bootstrap::Bootstrap;
use crate::stats::{registry, Counter, Gauge, Scope};
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::watch;

#[derive(Debug, Default)]
pub struct Snapshot {
    pub clusters: HashMap<String, Arc<ClusterRt>>,
    /// Route configurations from RDS, by name.
    pub routes: HashMap<String, Arc<crate::config::route::RouteTable>>,
}

impl Snapshot {
    pub fn cluster(&self, name: &str) -> Option<&Arc<ClusterRt>> {
        self.clusters.get(name)
    }
}

/// Envoy's `server.state` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerState {
    Live = 0,
    Draining = 1,
    PreInitializing = 2,
    Initializing = 3,
}

impl ServerState {
    pub fn name(self) -> &'static str {
        match self {
            ServerState::Live => "LIVE",
            ServerState::Draining => "DRAINING",
            ServerState::PreInitializing => "PRE_INITIALIZING",
            ServerState::Initializing => "INITIALIZING",
        }
    }
}

pub struct ServerStats {
    pub live: Gauge,
    pub state: Gauge,
    pub uptime: Gauge,
    pub concurrency: Gauge,
    pub total_connections: Gauge,
    pub memory_allocated: Gauge,
    pub listener_added: Counter,
    pub cluster_added: Counter,
    pub active_clusters: Gauge,
    pub total_listeners_active: Gauge,
    /// `listener_manager.workers_started`: 1 once the server is live (pilot-agent's check).
    pub workers_started: Gauge,
}

/// Process-wide state shared by listeners, the admin API and shutdown.
pub struct Server {
    pub snapshot: ArcSwap<Snapshot>,
    pub bootstrap: Arc<Bootstrap>,
    pub started: Instant,
    pub state: ArcSwap<ServerState>,
    pub health_failed: AtomicBool,
    /// Listener shutdown: `(graceful, inbound_only)` once a drain or stop is asked for.
    pub stop_listeners: watch::Sender<Option<(bool, bool)>>,
    /// Connections are asked to close gracefully once this flips to true.
    pub drain: watch::Sender<bool>,
    /// Process exit requested (admin `/quitquitquit`, signals).
    pub quit: watch::Sender<bool>,
    pub stats: ServerStats,
    pub concurrency: usize,
    pub cli: crate::cli::Cli,
    pub listeners: crate::listener::manager::Manager,
    /// Dynamic configuration state, when the bootstrap has `dynamic_resources`.
    pub xds: std::sync::OnceLock<Arc<crate::xds::XdsState>>,
}

impl Server {
    pub fn new(
        bootstrap: Arc<Bootstrap>,
        snapshot: Snapshot,
        concurrency: usize,
        cli: crate::cli::Cli,
    ) -> Arc<Server> {
        let r = registry();
        let g = |s: &str| r.gauge(Scope::Server, s);
        let stats = ServerStats {
            live: g("live"),
            state: g("state"),
            uptime: g("uptime"),
            concurrency: g("concurrency"),
            total_connections: g("total_connections"),
            memory_allocated: g("memory_allocated"),
            listener_added: r.counter(Scope::ListenerManager, "listener_added"),
            cluster_added: r.counter(Scope::ClusterManager, "cluster_added"),
            active_clusters: r.gauge(Scope::ClusterManager, "active_clusters"),
            total_listeners_active: r.gauge(Scope::ListenerManager, "total_listeners_active"),
            workers_started: r.gauge(Scope::ListenerManager, "workers_started"),
        };
        stats.concurrency.set(concurrency as u64);
        stats.cluster_added.add(snapshot.clusters.len() as u64);
        stats.active_clusters.set(snapshot.clusters.len() as u64);
        stats.state.set(ServerState::Initializing as u64);
        Arc::new(Server {
            snapshot: ArcSwap::from_pointee(snapshot),
            bootstrap,
            started: Instant::now(),
            state: ArcSwap::from_pointee(ServerState::Initializing),
            health_failed: AtomicBool::new(false),
            stop_listeners: watch::channel(None).0,
            drain: watch::channel(false).0,
            quit: watch::channel(false).0,
            stats,
            concurrency,
            cli,
            listeners: Default::default(),
            xds: Default::default(),
        })
    }

    pub fn set_state(&self, s: ServerState) {
        self.state.store(Arc::new(s));
        self.stats.state.set(s as u64);
        self.stats.live.set(u64::from(s == ServerState::Live));
        if s == ServerState::Live {
            self.stats.workers_started.set(1);
            crate::stats::registry()
                .histogram(crate::stats::Scope::Server, "initialization_time_ms")
                .record(
                    || "server.initialization_time_ms".into(),
                    self.started.elapsed().as_millis() as u64,
                );
        }
    }

    pub fn state(&self) -> ServerState {
        **self.state.load()
    }

    /// The state as the admin API reports it: `/healthcheck/fail` reads as DRAINING, as in Envoy.
    pub fn effective_state(&self) -> ServerState {
        if self.health_failed.load(Ordering::Relaxed) {
            ServerState::Draining
        } else {
            self.state()
        }
    }

    pub fn request_quit(&self) {
        let _ = self.quit.send(true);
    }
}
