//! Rendering the registry: Envoy's `/stats` text and JSON, and Prometheus text with Envoy's
//! default tag extraction.

use super::{Kind, Registry, ScopeName, Tag};
use std::collections::BTreeMap;
use std::sync::Arc;

/// One stat as rendered: its full name and value at the time of the listing.
pub struct Entry {
    pub name: String,
    scope: Arc<ScopeName>,
    /// Where the stat's own name starts in `name`.
    stat_at: usize,
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
        let stat_at = name.len();
        name.push_str(stat);
        Entry {
            name,
            scope: scope.clone(),
            stat_at,
            kind,
            value,
        }
    }

    /// Envoy's Prometheus family name and `{label="value",…}` for this stat.
    fn prometheus(&self) -> (String, String) {
        let mut tags: Vec<(&'static str, String)> = Vec::new();
        let family = if self.scope.tag == Tag::None {
            format!("envoy_{}", sanitize(&self.name))
        } else {
            let scope = &*self.scope.name;
            let (a, b) = (self.scope.tag_at.0 as usize, self.scope.tag_at.1 as usize);
            tags.push((self.scope.tag.label(), scope[a..b].to_string()));
            let stat = extract_code(&self.name[self.stat_at..], &mut tags);
            format!("envoy_{}_{}", &scope[..a - 1], sanitize(&stat))
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
        for e in self.entries(filter, used_only) {
            if e.kind == Kind::Text {
                continue;
            }
            let (family, labels) = e.prometheus();
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
