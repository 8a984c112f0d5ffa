//! Dynamic configuration from ADS: each response is validated resource by resource (the same
//! support check and conversion as the bootstrap), the good resources are applied and the bad
//! ones NACKed by name — a bad resource never takes good ones down, it keeps its last good
//! version — and the result is published as a new snapshot with one swap.

mod apply;
pub mod dump;
pub mod resource;
mod stats;

use crate::cluster::ClusterRt;
use crate::config::listener::Listener;
use crate::config::route::RouteTable;
use crate::snapshot::{Server, Snapshot};
use crate::stats::{registry, Gauge, Scope};
use envoy_types::pb::google::protobuf::Any;
use ferry_xds::ads::{self, AdsHandle, Handler};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::SystemTime;
use tokio::sync::watch;

/// One accepted dynamic resource, as `/config_dump` shows it.
#[derive(Clone)]
pub struct Accepted<T> {
    pub value: T,
    /// The resource's encoding: an unchanged resource keeps its runtime state.
    pub raw: Vec<u8>,
    pub version: String,
    pub updated: SystemTime,
}

#[derive(Default)]
struct Resources {
    clusters: BTreeMap<String, Accepted<Arc<ClusterRt>>>,
    assignments: BTreeMap<String, Accepted<crate::config::cluster::Assignment>>,
    routes: BTreeMap<String, Accepted<Arc<RouteTable>>>,
    listeners: BTreeMap<String, Accepted<Arc<Listener>>>,
    /// Types whose first response has been applied.
    received: BTreeSet<&'static str>,
    cds_version: String,
    lds_version: String,
    /// The version of each dynamic listener that is running now.
    serving: BTreeMap<String, Arc<Listener>>,
    /// Removed listeners whose connections are draining (`draining_state` in /config_dump).
    draining: BTreeMap<String, Accepted<Arc<Listener>>>,
    /// EDS subscription stats by cluster name.
    eds_stats: BTreeMap<String, std::sync::Arc<stats::SubStats>>,
    /// RDS subscription stats by route configuration name, one per HCM stat prefix.
    rds_stats: BTreeMap<String, Vec<(String, std::sync::Arc<stats::SubStats>)>>,
}

struct XdsStats {
    connected: Gauge,
    cds: std::sync::Arc<stats::SubStats>,
    lds: std::sync::Arc<stats::SubStats>,
}

pub struct XdsState {
    server: Weak<Server>,
    handle: OnceLock<AdsHandle>,
    static_clusters: HashMap<String, Arc<ClusterRt>>,
    res: Mutex<Resources>,
    stats: XdsStats,
    manager: stats::ManagerStats,
    me: OnceLock<Weak<XdsState>>,
    /// Flips to true once the initial LDS/CDS responses are applied.
    pub initialized: watch::Sender<bool>,
    wants_lds: bool,
    wants_cds: bool,
    lds_requested: std::sync::atomic::AtomicBool,
    /// Named types subscribed at least once.
    asked: Mutex<BTreeSet<String>>,
}

impl XdsState {
    pub fn start(server: &Arc<Server>) -> Option<Arc<XdsState>> {
        let b = &server.bootstrap;
        let (dynamic, target) = (b.dynamic.as_ref()?, b.xds_target.clone()?);
        let r = registry();
        let state = Arc::new(XdsState {
            server: Arc::downgrade(server),
            handle: OnceLock::new(),
            static_clusters: server.snapshot.load().clusters.clone(),
            res: Mutex::new(Resources::default()),
            stats: XdsStats {
                connected: r.gauge(Scope::Named("control_plane"), "connected_state"),
                cds: stats::SubStats::for_cds(),
                lds: stats::SubStats::for_lds(),
            },
            manager: stats::ManagerStats::new(),
            me: OnceLock::new(),
            initialized: watch::channel(!dynamic.lds && !dynamic.cds).0,
            wants_lds: dynamic.lds,
            wants_cds: dynamic.cds,
            lds_requested: std::sync::atomic::AtomicBool::new(false),
            asked: Mutex::new(BTreeSet::new()),
        });
        // Secrets from separate SDS servers (Istio's agent): listeners waiting for them start.
        let weak = Arc::downgrade(&state);
        crate::tls::sds::on_secrets(Box::new(move || {
            if let Some(s) = weak.upgrade() {
                s.secrets_arrived();
            }
        }));
        // Envoy asks for clusters first and for listeners once the clusters are initialised.
        let mut wildcard = Vec::new();
        if dynamic.cds {
            wildcard.push(ads::CLUSTER);
        } else if dynamic.lds {
            wildcard.push(ads::LISTENER);
            state
                .lds_requested
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let cfg = ads::AdsConfig {
            target,
            node: node(server),
            node_on_first_only: dynamic.node_on_first_only,
            delta: dynamic.delta,
            sds: false,
            wildcard,
            backoff_base: std::time::Duration::from_millis(500),
            backoff_max: std::time::Duration::from_secs(30),
            connect_timeout: std::time::Duration::from_secs(5),
        };
        if dynamic.cds {
            state.stats.cds.attempt.inc();
        }
        let _ = state.me.set(Arc::downgrade(&state));
        // The handle is in place before the stream starts: its first response may come at
        // once, and what it triggers (the LDS request) goes through the handle.
        let (handle, stream) = ads::prepare(cfg, state.clone());
        let _ = state.handle.set(handle);
        stream.start();
        state.want_secrets(&Resources::default());
        // Clusters that never get their endpoints do not hold listeners back for ever.
        if let Some(t) = dynamic.initial_fetch_timeout {
            let s = state.clone();
            tokio::spawn(async move {
                tokio::time::sleep(t).await;
                let received = s.res.lock().map(|r| r.received.clone()).unwrap_or_default();
                if s.wants_cds && !received.contains(ads::CLUSTER) {
                    s.stats.cds.init_fetch_timeout.inc();
                }
                s.request_lds();
            });
        }
        Some(state)
    }

    fn server(&self) -> Option<Arc<Server>> {
        self.server.upgrade()
    }

    /// Publishes clusters and routes as one new snapshot.
    fn publish(&self, res: &Resources) {
        let Some(server) = self.server() else { return };
        let mut clusters = self.static_clusters.clone();
        for (name, c) in &res.clusters {
            clusters.insert(name.clone(), c.value.clone());
        }
        let routes = res
            .routes
            .iter()
            .map(|(n, r)| (n.clone(), r.value.clone()))
            .collect();
        server.stats.active_clusters.set(clusters.len() as u64);
        server
            .snapshot
            .store(Arc::new(Snapshot { clusters, routes }));
    }

    /// Subscribes to exactly `names` of a named type (routes, endpoints, secrets). Nothing is
    /// sent for a type until it has a name to ask for: in state of the world an empty list would
    /// ask for every resource of the type, and Envoy sends no request then.
    fn subscribe(&self, type_url: &str, names: BTreeSet<String>) {
        let mut asked = self.asked.lock().unwrap_or_else(|p| p.into_inner());
        if names.is_empty() && !asked.contains(type_url) {
            return;
        }
        asked.insert(type_url.to_string());
        drop(asked);
        if let Some(h) = self.handle.get() {
            h.subscribe(type_url, names);
        }
    }

    /// Asks for the SDS secrets that static and dynamic listeners and clusters name: over ADS,
    /// or from their separate SDS servers.
    fn want_secrets(&self, res: &Resources) {
        let Some(server) = self.server() else { return };
        let b = &server.bootstrap;
        let mut refs: Vec<crate::config::tls::SdsRef> = Vec::new();
        for l in b
            .listeners
            .iter()
            .chain(res.listeners.values().map(|a| &a.value))
        {
            refs.extend(crate::tls::sds::listener_refs(l));
        }
        for c in b
            .clusters
            .iter()
            .chain(res.clusters.values().map(|a| &a.value.cfg))
        {
            refs.extend(crate::tls::sds::cluster_refs(c));
        }
        let from_ads = crate::tls::sds::clients().want(&server, &refs);
        self.subscribe(ads::SECRET, from_ads);
    }

    fn request_lds(&self) {
        if self.wants_lds
            && !self
                .lds_requested
                .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            self.stats.lds.attempt.inc();
            // Clusters are in: Envoy's server moves from PRE_INITIALIZING to INITIALIZING.
            if let Some(server) = self.server() {
                if server.state() == crate::snapshot::ServerState::PreInitializing {
                    server.set_state(crate::snapshot::ServerState::Initializing);
                }
            }
            if let Some(h) = self.handle.get() {
                h.subscribe_wildcard(ads::LISTENER);
            }
        }
    }

    /// Clusters are initialised once CDS is in and every EDS cluster has its endpoints.
    fn clusters_initialized(&self, res: &Resources) -> bool {
        res.received.contains(ads::CLUSTER)
            && res.clusters.values().all(|c| {
                c.value.cfg.discovery != crate::config::cluster::Discovery::Eds
                    || res.assignments.contains_key(&c.value.cfg.eds_service_name)
            })
    }

    fn check_initialized(&self, res: &Resources) {
        if self.clusters_initialized(res) {
            self.request_lds();
        }
        let done = (!self.wants_cds || res.received.contains(ads::CLUSTER))
            && (!self.wants_lds || res.received.contains(ads::LISTENER));
        if done && !*self.initialized.borrow() {
            let _ = self.initialized.send(true);
        }
    }
}

impl Handler for XdsState {
    fn apply(&self, type_url: &str, version: &str, resources: Vec<Any>) -> Result<(), String> {
        let mut res = self.res.lock().unwrap_or_else(|p| p.into_inner());
        let result = match type_url {
            ads::CLUSTER => self.apply_clusters(&mut res, version, resources),
            ads::ENDPOINT => self.apply_assignments(&mut res, version, resources),
            ads::LISTENER => self.apply_listeners(&mut res, version, resources),
            ads::ROUTE => self.apply_routes(&mut res, version, resources),
            ads::SECRET => self.apply_secrets(&mut res, version, resources),
            other => Err(format!("resource type {other} is not supported by Ferry")),
        };
        self.check_initialized(&res);
        result
    }

    fn connected(&self, up: bool) {
        self.stats.connected.set(u64::from(up));
        self.charge_xds_cluster(up);
        if !up {
            self.stats.cds.failure.inc();
            self.stats.lds.failure.inc();
            let res = self.res.lock().unwrap_or_else(|p| p.into_inner());
            for st in res.eds_stats.values() {
                st.failure.inc();
            }
            for (_, st) in res.rds_stats.values().flatten() {
                st.failure.inc();
            }
        }
    }
}

impl XdsState {
    /// The ADS stream is one request on one connection of the control plane's static cluster,
    /// counted in that cluster's stats as Envoy counts it (200 once the stream is up).
    fn charge_xds_cluster(&self, up: bool) {
        let Some(server) = self.server.upgrade() else {
            return;
        };
        let Some(d) = &server.bootstrap.dynamic else {
            return;
        };
        let snapshot = server.snapshot.load();
        let Some(c) = snapshot.cluster(&d.cluster) else {
            return;
        };
        let st = &c.stats;
        if up {
            st.upstream_cx_total.inc();
            st.upstream_cx_active.inc();
            st.upstream_rq_total.inc();
            st.upstream_rq_active.inc();
            st.charge(200);
        } else if st.upstream_cx_active.get() > 0 {
            st.upstream_cx_active.dec();
            st.upstream_rq_active.dec();
        }
    }
}

/// The node as Envoy sends it: the bootstrap's node with the CLI overrides, and this build.
pub fn node(server: &Server) -> envoy_types::pb::envoy::config::core::v3::Node {
    use envoy_types::pb::envoy::config::core::v3::{node::UserAgentVersionType, Node};
    // The typed bootstrap carries the node with the CLI overrides applied.
    let raw = server.bootstrap.raw_message();
    let mut n: Node = match raw.get_field_by_name("node").as_deref() {
        Some(prost_reflect::Value::Message(m)) => {
            crate::config::load::to_typed(m).unwrap_or_default()
        }
        _ => Node::default(),
    };
    n.user_agent_name = "ferry".into();
    n.user_agent_version_type = Some(UserAgentVersionType::UserAgentVersion(
        crate::VERSION.into(),
    ));
    n
}
