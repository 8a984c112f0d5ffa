//! Rendering the registry: Envoy's `/stats` text and JSON, and Prometheus text with Envoy's
//! default tag extraction.

use super::tags::TagProducer;
use super::{Kind, Registry, ScopeName};
use std::collections::BTreeMap;
use std::sync::Arc;

/// One stat as rendered: its full name and value at the time of the listing.
pub struct Entry {
    pub name: String,
    pub kind: Kind,
    pub value: u64,
}

impl Entry {
    pub(super) fn new(scope: &Arc<ScopeName>, stat: &str, kind: Kind, value: u64) -> Entry {
        let mut name = String::with_capacity(scope.name.len() + 1 + stat.len());
        name.push_str(&scope.name);
        if !name.is_empty() {
            name.push('.');
        }
        name.push_str(stat);
        Entry { name, kind, value }
    }

    /// Envoy's Prometheus family name and `{label="value",…}` for this stat.
    fn prometheus(&self, tags: &TagProducer) -> (String, String) {
        let (extracted, tags) = tags.produce(&self.name);
        let family = format!("envoy_{}", sanitize(&extracted));
        if tags.is_empty() {
            return (family, String::new());
        }
        let labels: Vec<String> = tags
            .iter()
            .map(|(k, v)| format!("{}=\"{}\"", sanitize(k), escape(v)))
            .collect();
        (family, format!("{{{}}}", labels.join(",")))
    }
}

impl Registry {
    /// Envoy's `/stats` text: `name: value`, sorted by name.
    pub fn render_text(&self, filter: Option<&regex::Regex>, used_only: bool) -> String {
        let mut out = String::new();
        for e in self.entries(filter, used_only) {
            out.push_str(&e.name);
            out.push_str(": ");
            if e.kind == Kind::Text {
                out.push_str("\"\"");
            } else {
                out.push_str(&e.value.to_string());
            }
            out.push('\n');
        }
        out
    }

    /// Envoy's `/stats?format=json`.
    pub fn render_json(&self, filter: Option<&regex::Regex>, used_only: bool) -> String {
        let stats: Vec<serde_json::Value> = self
            .entries(filter, used_only)
            .into_iter()
            .map(|e| serde_json::json!({"name": e.name, "value": e.value}))
            .collect();
        serde_json::to_string_pretty(&serde_json::json!({ "stats": stats })).unwrap_or_default()
    }

    /// Prometheus text exposition, one `# TYPE` line per metric family.
    pub fn render_prometheus(&self, filter: Option<&regex::Regex>, used_only: bool) -> String {
        let mut families: BTreeMap<String, Vec<(String, u64, Kind)>> = BTreeMap::new();
        let tags = &super::settings().tags;
        for e in self.entries(filter, used_only) {
            if e.kind == Kind::Text {
                continue;
            }
            let (family, labels) = e.prometheus(tags);
            families
                .entry(family)
                .or_default()
                .push((labels, e.value, e.kind));
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
