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
    /// Written at least once (a block's stats: non-zero).
    pub used: bool,
}

impl Entry {
    pub(super) fn new(scope: &Arc<ScopeName>, stat: &str, kind: Kind, value: u64) -> Entry {
        let mut name = String::with_capacity(scope.name.len() + 1 + stat.len());
        name.push_str(&scope.name);
        if !name.is_empty() {
            name.push('.');
        }
        name.push_str(stat);
        Entry {
            name,
            kind,
            value,
            used: value != 0,
        }
    }

    /// The tag-extracted name and `{label="value",…}` (`{}` without tags) of this stat.
    fn prometheus(&self, tags: &TagProducer) -> (String, String) {
        let (extracted, tags) = tags.produce(&self.name);
        let labels: Vec<String> = tags
            .iter()
            .map(|(k, v)| format!("{}=\"{}\"", sanitize(k), escape(v)))
            .collect();
        (extracted, format!("{{{}}}", labels.join(",")))
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

    /// Prometheus text exposition as Envoy writes it: counters, then gauges, each family
    /// (by dotted tag-extracted name) under one `# TYPE` line, series by full name.
    pub fn render_prometheus(&self, filter: Option<&regex::Regex>, used_only: bool) -> String {
        let tags = &super::settings().tags;
        // (kind order, dotted extracted name) → (family, [(full name, labels, value)]).
        type Series = (String, String, u64);
        let mut families: BTreeMap<(u8, String), (String, Vec<Series>)> = BTreeMap::new();
        for e in self.entries(filter, used_only) {
            let order = match e.kind {
                Kind::Counter => 0,
                Kind::Gauge => 1,
                Kind::Text => continue,
            };
            let (extracted, labels) = e.prometheus(tags);
            let family = format!("envoy_{}", sanitize(&extracted));
            families
                .entry((order, extracted))
                .or_insert_with(|| (family, Vec::new()))
                .1
                .push((e.name, labels, e.value));
        }
        let mut out = String::new();
        for ((order, _), (family, mut series)) in families {
            let kind = if order == 0 { "counter" } else { "gauge" };
            out.push_str(&format!("# TYPE {family} {kind}\n"));
            series.sort_by(|a, b| a.0.cmp(&b.0));
            for (_, labels, value) in series {
                out.push_str(&family);
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
