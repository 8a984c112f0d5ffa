//! Counters and gauges with Envoy's names, kept in one registry and updated lock-free on the
//! hot path (each holder keeps an `Arc` to its atomic). Rendered as Envoy's `/stats` text and as
//! Prometheus text with Envoy's default tag extraction (cluster name, HTTP/TCP prefix, listener
//! address, response code class).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    /// A text readout (shown as `name: ""` in `/stats`; not exported to Prometheus). Ferry's
    /// text readouts are all empty for now.
    Text,
}

/// The Prometheus tag a scope's name segment becomes (Envoy's default tag extraction).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tag {
    None,
    Cluster,
    Http,
    Tcp,
    Listener,
}

impl Tag {
    fn label(self) -> &'static str {
        match self {
            Tag::None => "",
            Tag::Cluster => "envoy_cluster_name",
            Tag::Http => "envoy_http_conn_manager_prefix",
            Tag::Tcp => "envoy_tcp_prefix",
            Tag::Listener => "envoy_listener_address",
        }
    }
}

/// One stat: its name (shared with the registry's index) and its atomic. Prometheus names
/// and tags are derived from the name when rendered, so that a cluster's ~30 stats stay small
/// (10,000 clusters mean 300,000 of them).
#[derive(Debug)]
pub struct Stat {
    pub name: Arc<str>,
    tag: Tag,
    /// The tagged segment of `name` (`cluster.<this>.stat`), as a byte range.
    tag_at: (u32, u32),
    pub kind: Kind,
    value: AtomicU64,
}

pub type Counter = Arc<Stat>;
pub type Gauge = Arc<Stat>;

impl Stat {
    #[inline]
    pub fn inc(&self) {
        self.value.fetch_add(1, Relaxed);
    }
    #[inline]
    pub fn add(&self, n: u64) {
        self.value.fetch_add(n, Relaxed);
    }
    #[inline]
    pub fn dec(&self) {
        self.value.fetch_sub(1, Relaxed);
    }
    #[inline]
    pub fn set(&self, v: u64) {
        self.value.store(v, Relaxed);
    }
    #[inline]
    pub fn get(&self) -> u64 {
        self.value.load(Relaxed)
    }
}

/// A counter outside the registry (for stats Envoy does not keep in some scope).
pub fn detached() -> Stat {
    Stat {
        name: Arc::from(""),
        tag: Tag::None,
        tag_at: (0, 0),
        kind: Kind::Counter,
        value: AtomicU64::new(0),
    }
}

/// Decrements a gauge when dropped (active connections, active requests).
pub struct ActiveGuard(Gauge);

impl ActiveGuard {
    pub fn new(g: &Gauge) -> Self {
        g.inc();
        ActiveGuard(g.clone())
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[derive(Default)]
pub struct Registry {
    stats: Mutex<BTreeMap<Arc<str>, Arc<Stat>>>,
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

    pub fn text(&self, scope: Scope<'_>, stat: &str) {
        self.get(scope, stat, Kind::Text);
    }

    fn get(&self, scope: Scope<'_>, stat: &str, kind: Kind) -> Arc<Stat> {
        let (prefix, segment, tag): (&str, &str, Tag) = match scope {
            Scope::Server => ("server", "", Tag::None),
            Scope::Cluster(c) => ("cluster", c, Tag::Cluster),
            Scope::Http(p) => ("http", p, Tag::Http),
            Scope::Tcp(p) => ("tcp", p, Tag::Tcp),
            Scope::Listener(a) => ("listener", a, Tag::Listener),
            Scope::ListenerManager => ("listener_manager", "", Tag::None),
            Scope::ClusterManager => ("cluster_manager", "", Tag::None),
            Scope::Named(p) => (p, "", Tag::None),
        };
        let name = if tag == Tag::None {
            format!("{prefix}.{stat}")
        } else {
            format!("{prefix}.{segment}.{stat}")
        };
        let mut map = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = map.get(name.as_str()) {
            return s.clone();
        }
        let start = (prefix.len() + 1) as u32;
        let name: Arc<str> = Arc::from(name);
        let s = Arc::new(Stat {
            name: name.clone(),
            tag,
            tag_at: (start, start + segment.len() as u32),
            kind,
            value: AtomicU64::new(0),
        });
        map.insert(name, s.clone());
        s
    }

    /// Forgets every stat under `prefix` (a removed cluster's `cluster.<name>.`), as Envoy
    /// drops the stats of what it removes. Holders of the old atomics are unaffected.
    pub fn remove_prefix(&self, prefix: &str) {
        let mut map = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        let names: Vec<Arc<str>> = map
            .range::<str, _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(|(name, _)| name.starts_with(prefix))
            .map(|(name, _)| name.clone())
            .collect();
        for name in names {
            map.remove(&name);
        }
    }

    pub fn all(&self) -> Vec<Arc<Stat>> {
        self.stats
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Envoy's `/stats` text: `name: value`, sorted by name.
    pub fn render_text(&self, filter: Option<&regex::Regex>, used_only: bool) -> String {
        let mut out = String::new();
        for s in self.all() {
            if used_only && s.get() == 0 {
                continue;
            }
            if filter.is_some_and(|f| !f.is_match(&s.name)) {
                continue;
            }
            out.push_str(&s.name);
            out.push_str(": ");
            if s.kind == Kind::Text {
                out.push_str("\"\"");
            } else {
                out.push_str(&s.get().to_string());
            }
            out.push('\n');
        }
        out
    }

    /// Prometheus text exposition, one `# TYPE` line per metric family.
    pub fn render_prometheus(&self, filter: Option<&regex::Regex>, used_only: bool) -> String {
        let mut families: BTreeMap<String, Vec<(String, u64, Kind)>> = BTreeMap::new();
        for s in self.all() {
            if s.kind == Kind::Text || (used_only && s.get() == 0) {
                continue;
            }
            if filter.is_some_and(|f| !f.is_match(&s.name)) {
                continue;
            }
            let (family, labels) = s.prometheus();
            families
                .entry(family)
                .or_default()
                .push((labels, s.get(), s.kind));
        }
        let mut out = String::new();
        for (name, stats) in families {
            let kind = if stats[0].2 == Kind::Counter {
                "counter"
            } else {
                "gauge"
            };
            out.push_str(&format!("# TYPE {name} {kind}\n"));
            for (labels, value, _) in stats {
                out.push_str(&name);
                out.push_str(&labels);
                out.push_str(&format!(" {value}\n"));
            }
        }
        out
    }
}

impl Stat {
    /// Envoy's Prometheus family name and `{label="value",…}` for this stat.
    fn prometheus(&self) -> (String, String) {
        let name = &*self.name;
        let mut tags: Vec<(&'static str, String)> = Vec::new();
        let family = if self.tag == Tag::None {
            format!("envoy_{}", sanitize(name))
        } else {
            let (a, b) = (self.tag_at.0 as usize, self.tag_at.1 as usize);
            let prefix = &name[..a - 1];
            let stat = name.get(b + 1..).unwrap_or("");
            tags.push((self.tag.label(), name[a..b].to_string()));
            let stat = extract_code(stat, &mut tags);
            format!("envoy_{prefix}_{}", sanitize(&stat))
        };
        if tags.is_empty() {
            return (family, String::new());
        }
        let labels: Vec<String> = tags
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
            .collect();
        (family, format!("{{{}}}", labels.join(",")))
    }
}

/// `upstream_rq_2xx` → (`upstream_rq_xx`, class 2); `upstream_rq_503` → (`upstream_rq`, code 503).
fn extract_code(stat: &str, tags: &mut Vec<(&'static str, String)>) -> String {
    let Some((head, last)) = stat.rsplit_once('_') else {
        return stat.to_string();
    };
    let b = last.as_bytes();
    if !(head.ends_with("_rq") || head == "rq") {
        return stat.to_string();
    }
    if b.len() == 3 && b[0].is_ascii_digit() && &last[1..] == "xx" {
        tags.insert(0, ("envoy_response_code_class", last[..1].to_string()));
        return format!("{head}_xx");
    }
    if b.len() == 3 && b.iter().all(u8::is_ascii_digit) {
        tags.insert(0, ("envoy_response_code", last.to_string()));
        return head.to_string();
    }
    stat.to_string()
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Envoy's listener stat scope for an address: `127.0.0.1_10000`, `[::1]_10000`.
pub fn listener_scope(addr: &std::net::SocketAddr) -> String {
    // Envoy's stat name for an address: `0.0.0.0_15001`, `[__]_15001` (every ':' becomes '_').
    addr.to_string().replace(':', "_")
}

#[cfg(test)]
mod tests {
    use super::*;

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
