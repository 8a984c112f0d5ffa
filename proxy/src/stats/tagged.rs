//! Stats created with explicit tags (Istio's `istiocustom.istio_requests_total` and its
//! labels), and histograms. A tagged stat's full name is its name followed by each tag's name
//! and value, dot-joined, as Envoy names them; Prometheus shows the name and the tags as
//! labels, in the order given.

use super::histogram::Histogram;
use super::Cell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

#[derive(Debug)]
pub enum TaggedValue {
    Counter(Cell),
    Gauge(Cell),
    Histogram(Histogram),
}

/// One tagged stat.
#[derive(Debug)]
pub struct Tagged {
    /// The name without tags (`istiocustom.istio_requests_total`).
    pub name: Box<str>,
    pub tags: Box<[(Box<str>, Box<str>)]>,
    pub full: Box<str>,
    pub value: TaggedValue,
}

fn store() -> &'static Mutex<HashMap<Box<str>, Arc<Tagged>>> {
    static S: OnceLock<Mutex<HashMap<Box<str>, Arc<Tagged>>>> = OnceLock::new();
    S.get_or_init(Default::default)
}

/// The full name Envoy gives a stat with explicit tags.
pub fn full_name(name: &str, tags: &[(&str, &str)]) -> String {
    let mut full = String::with_capacity(name.len() + tags.len() * 24);
    full.push_str(name);
    for (k, v) in tags {
        full.push('.');
        full.push_str(k);
        full.push('.');
        full.push_str(v);
    }
    full
}

fn get(name: &str, tags: &[(&str, &str)], make: impl FnOnce() -> TaggedValue) -> Arc<Tagged> {
    let full = full_name(name, tags);
    let mut map = store().lock().unwrap_or_else(|p| p.into_inner());
    if let Some(t) = map.get(full.as_str()) {
        return t.clone();
    }
    let t = Arc::new(Tagged {
        name: name.into(),
        tags: tags
            .iter()
            .map(|(k, v)| (Box::from(*k), Box::from(*v)))
            .collect(),
        full: full.clone().into(),
        value: make(),
    });
    map.insert(full.into(), t.clone());
    t
}

pub fn counter(name: &str, tags: &[(&str, &str)]) -> Arc<Tagged> {
    get(name, tags, || TaggedValue::Counter(Cell::default()))
}

pub fn gauge(name: &str, tags: &[(&str, &str)]) -> Arc<Tagged> {
    get(name, tags, || TaggedValue::Gauge(Cell::default()))
}

pub fn histogram(name: &str, tags: &[(&str, &str)]) -> Arc<Tagged> {
    get(name, tags, || {
        TaggedValue::Histogram(Histogram::new(
            super::settings().buckets_for(&full_name(name, tags)),
        ))
    })
}

/// Every tagged stat, for rendering.
pub fn all() -> Vec<Arc<Tagged>> {
    let map = store().lock().unwrap_or_else(|p| p.into_inner());
    map.values().cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_names_join_tags() {
        assert_eq!(
            full_name(
                "istiocustom.istio_requests_total",
                &[("reporter", "source"), ("response_code", "200")]
            ),
            "istiocustom.istio_requests_total.reporter.source.response_code.200"
        );
    }
}
