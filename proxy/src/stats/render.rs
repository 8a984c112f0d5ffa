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
    /// A stat created with explicit tags (not extracted from its name).
    pub tags: Option<Arc<super::tagged::Tagged>>,
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
            tags: None,
        }
    }

    /// The tag-extracted name and `{label="value",…}` (`{}` without tags) of this stat.
    fn prometheus(&self, tags: &TagProducer) -> (String, String) {
        if let Some(t) = &self.tags {
            return (t.name.to_string(), labels(&t.tags, None));
        }
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
            let family = family_name(&extracted);
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
        histograms(filter, used_only, &mut out);
        out
    }
}

/// Prometheus family names: Envoy's stats get `envoy_`; a custom namespace (Istio's
/// `istiocustom.`) is dropped instead.
fn family_name(extracted: &str) -> String {
    match extracted.strip_prefix("istiocustom.") {
        Some(rest) => sanitize(rest),
        None => format!("envoy_{}", sanitize(extracted)),
    }
}

/// `{k="v",…}` from explicit tags, with `le` last when given.
fn labels(tags: &[(Box<str>, Box<str>)], le: Option<&str>) -> String {
    let mut parts: Vec<String> = tags
        .iter()
        .map(|(k, v)| format!("{}=\"{}\"", sanitize(k), escape(v)))
        .collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    format!("{{{}}}", parts.join(","))
}

/// A bound or sum as Envoy prints it: C's `%.32g` (32 significant digits, trailing zeros
/// dropped; `0.5`, `1`, `1.0476190476190476719153821250075`).
fn number(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return if v.is_nan() {
            "nan".into()
        } else if v == 0.0 {
            "0".into()
        } else {
            format!("{v}")
        };
    }
    let sci = format!("{v:.31e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let negative = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let digits = digits.trim_end_matches('0');
    let digits = if digits.is_empty() { "0" } else { digits };
    let mut out = String::new();
    if negative {
        out.push('-');
    }
    if !(-4..32).contains(&exp) {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push_str(&format!(
            "e{}{:02}",
            if exp < 0 { '-' } else { '+' },
            exp.abs()
        ));
    } else if exp < 0 {
        out.push_str("0.");
        out.push_str(&"0".repeat((-exp - 1) as usize));
        out.push_str(digits);
    } else {
        let int_len = exp as usize + 1;
        if digits.len() <= int_len {
            out.push_str(digits);
            out.push_str(&"0".repeat(int_len - digits.len()));
        } else {
            out.push_str(&digits[..int_len]);
            out.push('.');
            out.push_str(&digits[int_len..]);
        }
    }
    out
}

/// The histogram families, after the counters and gauges: buckets, `+Inf`, sum and count.
fn histograms(filter: Option<&regex::Regex>, used_only: bool, out: &mut String) {
    let producer = &super::settings().tags;
    type Series = (String, String);
    let mut families: BTreeMap<String, Vec<Series>> = BTreeMap::new();
    for (full, tagged, snap) in super::registry().histogram_entries(filter, used_only) {
        let (name, tags) = match tagged {
            Some(t) => (t.name.to_string(), t.tags.to_vec()),
            None => {
                let (extracted, tags) = producer.produce(&full);
                let tags = tags
                    .into_iter()
                    .map(|(k, v)| (Box::from(k.as_ref()), Box::from(v.as_ref())))
                    .collect();
                (extracted, tags)
            }
        };
        let labels_of = |le: Option<&str>| labels(&tags, le);
        let mut text = String::new();
        for (bound, count) in snap.bounds.iter().zip(&snap.cumulative) {
            let le = number(*bound);
            text.push_str(&format!("_bucket{} {count}\n", labels_of(Some(&le))));
        }
        text.push_str(&format!(
            "_bucket{} {}\n",
            labels_of(Some("+Inf")),
            snap.count
        ));
        text.push_str(&format!("_sum{} {}\n", labels_of(None), number(snap.sum)));
        text.push_str(&format!("_count{} {}\n", labels_of(None), snap.count));
        families.entry(name).or_default().push((full, text));
    }
    for (name, mut series) in families {
        let family = family_name(&name);
        out.push_str(&format!("# TYPE {family} histogram\n"));
        series.sort_by(|a, b| a.0.cmp(&b.0));
        for (_, lines) in series {
            for l in lines.lines() {
                out.push_str(&family);
                out.push_str(l);
                out.push('\n');
            }
        }
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

#[cfg(test)]
mod number_tests {
    #[test]
    fn percent_32g() {
        assert_eq!(super::number(0.5), "0.5");
        assert_eq!(super::number(3600000.0), "3600000");
        assert_eq!(super::number(0.1), "0.10000000000000000555111512312578");
        assert_eq!(
            super::number(1.0476190476190477),
            "1.0476190476190476719153821250075"
        );
        assert_eq!(super::number(0.0), "0");
    }
}
