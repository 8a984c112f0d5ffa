//! Counters and gauges with Envoy's names, kept in one registry and updated lock-free on the
//! hot path. A stat is either its own small allocation ([`Stat`], for scopes with few stats)
//! or a [`Cell`] inside a [`Block`] — one struct holding a whole scope's stats, such as a
//! cluster's, registered once and listed by name only when rendered, which keeps 10,000
//! clusters small. Rendered as Envoy's `/stats` text and JSON and as Prometheus text with
//! Envoy's default tag extraction (cluster name, HTTP/TCP prefix, listener address, response
//! code class) in [`render`].

pub mod histogram;
mod render;
pub mod statsd;
pub mod tagged;
pub mod tags;

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};

pub use render::Entry;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    /// A text readout (shown as `name: ""` in `/stats`; not exported to Prometheus). Ferry's
    /// text readouts are all empty for now.
    Text,
}

/// A stat scope's full name (`cluster.svc`, `server`), shared by every stat of the scope.
#[derive(Debug)]
struct ScopeName {
    name: Box<str>,
}

/// Which stats exist (`stats_config.stats_matcher`), matched against full names.
#[derive(Debug, Default)]
pub enum StatsMatcher {
    #[default]
    All,
    RejectAll,
    Include(Vec<crate::config::matcher::StringMatch>),
    Exclude(Vec<crate::config::matcher::StringMatch>),
}

impl StatsMatcher {
    pub fn accepts(&self, name: &str) -> bool {
        match self {
            StatsMatcher::All => true,
            StatsMatcher::RejectAll => false,
            StatsMatcher::Include(m) => m.iter().any(|m| m.matches(name)),
            StatsMatcher::Exclude(m) => !m.iter().any(|m| m.matches(name)),
        }
    }
}

/// The bootstrap's `stats_config`: tag extraction and which stats exist.
#[derive(Debug, Default)]
pub struct StatsSettings {
    pub tags: tags::TagProducer,
    pub matcher: StatsMatcher,
    /// `histogram_bucket_settings`: the first match gives a histogram its buckets.
    pub buckets: Vec<(crate::config::matcher::StringMatch, Arc<[f64]>)>,
}

impl StatsSettings {
    /// The buckets of the histogram named `name`.
    pub fn buckets_for(&self, name: &str) -> Arc<[f64]> {
        static DEFAULT: OnceLock<Arc<[f64]>> = OnceLock::new();
        self.buckets
            .iter()
            .find(|(m, _)| m.matches(name))
            .map(|(_, b)| b.clone())
            .unwrap_or_else(|| {
                DEFAULT
                    .get_or_init(|| Arc::from(histogram::DEFAULT_BUCKETS.to_vec()))
                    .clone()
            })
    }
}

static SETTINGS: OnceLock<Arc<StatsSettings>> = OnceLock::new();

/// Sets the stats configuration once, at startup; later calls are ignored.
pub fn configure(s: Arc<StatsSettings>) {
    let _ = SETTINGS.set(s);
}

/// The configured settings, or Envoy's defaults.
pub fn settings() -> &'static StatsSettings {
    SETTINGS.get_or_init(|| {
        Arc::new(StatsSettings {
            tags: tags::TagProducer::new(true, &[], false).unwrap_or_default(),
            matcher: StatsMatcher::All,
            buckets: Vec::new(),
        })
    })
}

/// One atomic value.
#[derive(Debug, Default)]
pub struct Cell(AtomicU64);

impl Cell {
    #[inline]
    pub fn inc(&self) {
        self.0.fetch_add(1, Relaxed);
    }
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Relaxed);
    }
    #[inline]
    pub fn dec(&self) {
        self.0.fetch_sub(1, Relaxed);
    }
    #[inline]
    pub fn set(&self, v: u64) {
        self.0.store(v, Relaxed);
    }
    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// One stat on its own: its interned name within its scope and its value.
#[derive(Debug)]
pub struct Stat {
    stat: &'static str,
    pub kind: Kind,
    cell: Cell,
    /// Written at least once (Envoy's "used", which `?usedonly` shows even at zero).
    used: std::sync::atomic::AtomicBool,
}

impl Stat {
    fn mark(&self) {
        if !self.used.load(Relaxed) {
            self.used.store(true, Relaxed);
        }
    }
    #[inline]
    pub fn inc(&self) {
        self.mark();
        self.cell.inc();
    }
    #[inline]
    pub fn add(&self, n: u64) {
        self.mark();
        self.cell.add(n);
    }
    #[inline]
    pub fn set(&self, v: u64) {
        self.mark();
        self.cell.set(v);
    }
}

impl std::ops::Deref for Stat {
    type Target = Cell;
    fn deref(&self) -> &Cell {
        &self.cell
    }
}

pub type Counter = Arc<Stat>;
pub type Gauge = Arc<Stat>;

/// A scope's stats kept together in one struct of [`Cell`]s (a cluster's), listed by name
/// when rendered.
pub trait Block: Send + Sync + 'static {
    /// Calls `f` with each stat's name within the scope, its kind and its value.
    fn visit(&self, f: &mut dyn FnMut(&str, Kind, u64));

    /// Calls `f` with each histogram's name within the scope (none: nothing recorded yet).
    fn histograms(&self, _f: &mut dyn FnMut(&str, Option<&histogram::Histogram>)) {}
}

/// Stat names within a scope come from a small, bounded set (Envoy's names, response codes),
/// so each is kept once for the life of the process.
fn intern(s: &str) -> &'static str {
    static NAMES: OnceLock<Mutex<std::collections::HashSet<&'static str>>> = OnceLock::new();
    let mut names = NAMES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(n) = names.get(s) {
        return n;
    }
    let n: &'static str = Box::leak(s.into());
    names.insert(n);
    n
}

/// Increments a gauge now and decrements it when dropped (active connections, requests).
/// The gauge is a [`Stat`] or a [`Cell`] of a block that `owner` keeps alive.
pub struct ActiveGuard<T: Send + Sync + 'static = Stat> {
    owner: Arc<T>,
    cell: fn(&T) -> &Cell,
}

impl ActiveGuard<Stat> {
    pub fn new(g: &Gauge) -> Self {
        g.mark();
        Self::of(g, |s| &s.cell)
    }
}

impl<T: Send + Sync + 'static> ActiveGuard<T> {
    pub fn of(owner: &Arc<T>, cell: fn(&T) -> &Cell) -> Self {
        cell(owner).inc();
        ActiveGuard {
            owner: owner.clone(),
            cell,
        }
    }
}

impl<T: Send + Sync + 'static> Drop for ActiveGuard<T> {
    fn drop(&mut self) {
        (self.cell)(&self.owner).dec();
    }
}

type AnyBlock = Arc<dyn Any + Send + Sync>;

/// One scope's stats: those on their own, sorted by name, and its blocks.
struct ScopeStats {
    name: Arc<ScopeName>,
    stats: Vec<Arc<Stat>>,
    histograms: Vec<(&'static str, Arc<histogram::Lazy>)>,
    blocks: Vec<(Arc<dyn Block>, AnyBlock)>,
}

#[derive(Default)]
pub struct Registry {
    scopes: Mutex<BTreeMap<Box<str>, ScopeStats>>,
}

pub fn registry() -> &'static Registry {
    static R: OnceLock<Registry> = OnceLock::new();
    R.get_or_init(Registry::default)
}

/// The scope a stat lives in: its text prefix, Prometheus prefix and extracted tag.
#[derive(Debug, Clone)]
pub enum Scope<'a> {
    Server,
    Cluster(&'a str),
    Http(&'a str),
    Tcp(&'a str),
    Listener(&'a str),
    ListenerManager,
    ClusterManager,
    /// Any other dotted prefix, without tags (`control_plane`, `cluster_manager.cds`).
    Named(&'a str),
}

impl Registry {
    pub fn counter(&self, scope: Scope<'_>, stat: &str) -> Counter {
        self.get(scope, stat, Kind::Counter)
    }

    pub fn gauge(&self, scope: Scope<'_>, stat: &str) -> Gauge {
        self.get(scope, stat, Kind::Gauge)
    }

    /// The scope's histogram `stat` (allocated on its first value).
    pub fn histogram(&self, scope: Scope<'_>, stat: &str) -> Arc<histogram::Lazy> {
        self.with_scope(scope, |s| {
            if let Some((_, h)) = s.histograms.iter().find(|(n, _)| *n == stat) {
                return h.clone();
            }
            let h = Arc::new(histogram::Lazy::default());
            s.histograms.push((intern(stat), h.clone()));
            h
        })
    }

    pub fn text(&self, scope: Scope<'_>, stat: &str) {
        self.get(scope, stat, Kind::Text);
    }

    /// The scope's block of type `T`, made by `make` and registered if it has none yet: a
    /// cluster updated in place keeps its stats, as in Envoy.
    pub fn block<T: Block>(&self, scope: Scope<'_>, make: impl FnOnce() -> T) -> Arc<T> {
        self.with_scope(scope, |s| {
            if let Some(b) = s.blocks.iter().find_map(|(_, a)| a.clone().downcast().ok()) {
                return b;
            }
            let b = Arc::new(make());
            s.blocks.push((b.clone(), b.clone()));
            b
        })
    }

    fn with_scope<R>(&self, scope: Scope<'_>, f: impl FnOnce(&mut ScopeStats) -> R) -> R {
        let scope_name = scope_name(&scope);
        let mut map = self.scopes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = map.get_mut(scope_name.as_str()) {
            return f(s);
        }
        let s = map
            .entry(scope_name.clone().into())
            .or_insert_with(|| ScopeStats {
                name: Arc::new(ScopeName {
                    name: scope_name.into(),
                }),
                stats: Vec::new(),
                histograms: Vec::new(),
                blocks: Vec::new(),
            });
        f(s)
    }

    fn get(&self, scope: Scope<'_>, stat: &str, kind: Kind) -> Arc<Stat> {
        self.with_scope(scope, |s| {
            let at = match s.stats.binary_search_by(|s| s.stat.cmp(stat)) {
                Ok(i) => return s.stats[i].clone(),
                Err(i) => i,
            };
            let new = Arc::new(Stat {
                stat: intern(stat),
                kind,
                cell: Cell::default(),
                used: Default::default(),
            });
            s.stats.insert(at, new.clone());
            new
        })
    }

    /// Forgets the scope `cluster.<name>` (a removed cluster's), as Envoy drops the stats of
    /// what it removes. Holders of the old stats are unaffected.
    pub fn remove_scope(&self, scope: Scope<'_>) {
        if matches!(
            scope,
            Scope::Server | Scope::ListenerManager | Scope::ClusterManager
        ) {
            return;
        }
        self.scopes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(scope_name(&scope).as_str());
    }

    /// Every stat that passes `used_only` and `filter` (matched against the full name), sorted
    /// by full name. A name given by two sources of a scope is listed once, with the sum.
    pub fn entries(&self, filter: Option<&regex::Regex>, used_only: bool) -> Vec<Entry> {
        let mut all = Vec::new();
        {
            let map = self.scopes.lock().unwrap_or_else(|p| p.into_inner());
            for s in map.values() {
                for st in &s.stats {
                    let mut e = Entry::new(&s.name, st.stat, st.kind, st.get());
                    e.used |= st.used.load(Relaxed);
                    all.push(e);
                }
                for (b, _) in &s.blocks {
                    b.visit(&mut |stat, kind, value| {
                        all.push(Entry::new(&s.name, stat, kind, value))
                    });
                }
            }
        }
        for t in tagged::all() {
            let (c, kind) = match &t.value {
                tagged::TaggedValue::Counter(c) => (c, Kind::Counter),
                tagged::TaggedValue::Gauge(c) => (c, Kind::Gauge),
                tagged::TaggedValue::Histogram(_) => continue,
            };
            {
                let v = c.get();
                all.push(Entry {
                    name: t.full.to_string(),
                    kind,
                    value: v,
                    used: v != 0,
                    tags: Some(t.clone()),
                });
            }
        }
        all.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        all.dedup_by(|b, a| {
            let same = a.name == b.name;
            if same {
                a.value += b.value;
                a.used |= b.used;
            }
            same
        });
        let matcher = &settings().matcher;
        all.retain(|e| {
            (!used_only || e.used)
                && filter.is_none_or(|f| f.is_match(&e.name))
                && matcher.accepts(&e.name)
        });
        all
    }
}

/// The full dotted name of a scope.
fn scope_name(scope: &Scope<'_>) -> String {
    match scope {
        Scope::Server => "server".into(),
        Scope::Cluster(c) => format!("cluster.{c}"),
        Scope::Http(p) => format!("http.{p}"),
        Scope::Tcp(p) => format!("tcp.{p}"),
        Scope::Listener(a) => format!("listener.{a}"),
        Scope::ListenerManager => "listener_manager".into(),
        Scope::ClusterManager => "cluster_manager".into(),
        Scope::Named(p) => p.to_string(),
    }
}

/// Envoy's listener stat scope for an address: `127.0.0.1_10000`, `[::1]_10000`.
pub fn listener_scope(addr: &std::net::SocketAddr) -> String {
    // Envoy's stat name for an address: `0.0.0.0_15001`, `[__]_15001` (every ':' becomes '_').
    addr.to_string().replace(':', "_")
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Two {
        a: Cell,
        b: Cell,
    }

    impl Block for Two {
        fn visit(&self, f: &mut dyn FnMut(&str, Kind, u64)) {
            f("upstream_rq_total", Kind::Counter, self.a.get());
            f("membership_total", Kind::Gauge, self.b.get());
        }
    }

    #[test]
    fn blocks_and_stats_render_as_one_sorted_list() {
        let r = Registry::default();
        let make = || Two {
            a: Cell::default(),
            b: Cell::default(),
        };
        let b = r.block(Scope::Cluster("svc"), make);
        b.a.add(2);
        // A second call finds the same block; a stat of the same name is summed with it.
        r.block(Scope::Cluster("svc"), make).a.inc();
        r.counter(Scope::Cluster("svc"), "upstream_rq_total").inc();
        r.counter(Scope::Cluster("svc"), "bind_errors");
        let t = r.render_text(None, false);
        assert_eq!(
            t,
            "cluster.svc.bind_errors: 0\ncluster.svc.membership_total: 0\ncluster.svc.upstream_rq_total: 4\n"
        );
        r.remove_scope(Scope::Cluster("svc"));
        assert_eq!(r.render_text(None, false), "");
    }

    #[test]
    fn prometheus_names_and_tags() {
        let r = Registry::default();
        r.counter(Scope::Cluster("svc"), "upstream_rq_total").add(3);
        r.counter(Scope::Http("ing"), "downstream_rq_2xx").inc();
        r.counter(Scope::Cluster("svc"), "upstream_rq_503").inc();
        let p = r.render_prometheus(None, false);
        assert!(
            p.contains("envoy_cluster_upstream_rq_total{envoy_cluster_name=\"svc\"} 3"),
            "{p}"
        );
        assert!(p.contains("envoy_http_downstream_rq_xx{envoy_response_code_class=\"2\",envoy_http_conn_manager_prefix=\"ing\"} 1"), "{p}");
        assert!(p.contains("envoy_cluster_upstream_rq{envoy_response_code=\"503\",envoy_cluster_name=\"svc\"} 1"), "{p}");
        let t = r.render_text(None, true);
        assert!(t.contains("cluster.svc.upstream_rq_total: 3\n"), "{t}");
    }
}
