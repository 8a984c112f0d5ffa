//! Stats created with explicit tags (Istio's `istiocustom.istio_requests_total` and its
//! labels), and histograms. A tagged stat's full name is its name followed by each tag's name
//! and value, dot-joined, as Envoy names them; Prometheus shows the name and the tags as
//! labels, in the order given.

use super::Cell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};

/// Envoy's default histogram buckets.
pub const DEFAULT_BUCKETS: [f64; 19] = [
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];

/// Cumulative bucket counts, a sum and a count; recorded lock-free.
#[derive(Debug)]
pub struct Histogram {
    bounds: Arc<[f64]>,
    /// Per bucket (not cumulative); the last one is above every bound.
    counts: Box<[AtomicU64]>,
    /// The sum, as f64 bits.
    sum: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: Arc<[f64]>) -> Histogram {
        Histogram {
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            bounds,
            sum: AtomicU64::new(0f64.to_bits()),
            count: AtomicU64::new(0),
        }
    }

    pub fn record(&self, v: u64) {
        let (edge, value) = bin(v);
        // The first bucket whose bound is at least the bin's lower edge.
        let i = self.bounds.partition_point(|b| *b < edge);
        self.counts[i].fetch_add(1, Relaxed);
        self.count.fetch_add(1, Relaxed);
        let _ = self.sum.fetch_update(Relaxed, Relaxed, |s| {
            Some((f64::from_bits(s) + value).to_bits())
        });
    }

    pub fn bounds(&self) -> &[f64] {
        &self.bounds
    }

    /// Cumulative counts per bound.
    pub fn cumulative(&self) -> Vec<u64> {
        let mut acc = 0;
        self.bounds
            .iter()
            .enumerate()
            .map(|(i, _)| {
                acc += self.counts[i].load(Relaxed);
                acc
            })
            .collect()
    }

    pub fn sum(&self) -> f64 {
        f64::from_bits(self.sum.load(Relaxed))
    }

    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }
}

/// Where a recorded value counts, as Envoy's log-linear histogram keeps it: in a bin of two
/// significant decimal digits (`[1, 1.1)`, `[12, 13)`, `[250, 260)`; 0 has a bin of its own). The
/// value counts toward every bucket bound at or above its bin's lower edge, and adds to the sum
/// the bin's representative value, `L + W·L/(2L+W)`. Returns (lower edge, that value).
fn bin(v: u64) -> (f64, f64) {
    if v == 0 {
        return (0.0, 0.0);
    }
    let digits = v.ilog10() as i32 + 1;
    // The first two significant digits, and the lower edge as Envoy computes it: (m/10)·10^e.
    let m = if digits >= 2 {
        v / 10u64.pow(digits as u32 - 2)
    } else {
        v * 10
    };
    let e = digits - 1;
    let lower = (m as f64 / 10.0) * 10f64.powi(e);
    let width = 10f64.powi(e - 1);
    (lower, lower + width * lower / (lower + lower + width))
}

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
        TaggedValue::Histogram(Histogram::new(super::settings().buckets_for(name)))
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
    fn bins_of_two_significant_digits() {
        assert_eq!(bin(0), (0.0, 0.0));
        assert_eq!(bin(1).0, 1.0);
        assert_eq!(
            format!("{:.31e}", bin(1).1),
            "1.0476190476190476719153821250075e0"
        );
        assert_eq!(bin(12).0, 12.0);
        assert_eq!(bin(254).0, 250.0);
        assert_eq!(
            format!("{:.31e}", bin(254).1),
            "2.5490196078431372939121501985937e2"
        );
    }

    #[test]
    fn histogram_buckets_and_sum() {
        let h = Histogram::new(Arc::from(DEFAULT_BUCKETS.to_vec()));
        for v in [0, 1, 4, 12] {
            h.record(v);
        }
        let c = h.cumulative();
        // 0 in le=0.5; 1 (its bin starts at 1) in le=1; 4 in le=5; 12 in le=25.
        assert_eq!(&c[..5], &[1, 2, 3, 3, 4]);
        assert_eq!(h.count(), 4);
        let want = bin(1).1 + bin(4).1 + bin(12).1;
        assert!((h.sum() - want).abs() < 1e-9);
    }

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
