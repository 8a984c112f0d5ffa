//! Histograms as Envoy keeps them: values in log-linear bins of two significant digits,
//! reported as cumulative counts per bucket bound, a sum and a count. [`Lazy`] allocates on the
//! first value, so that every cluster can have its histograms without paying for them idle.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};

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

impl super::Registry {
    /// Every histogram with its full name (tagged ones with their tags), sorted by name.
    pub fn histogram_entries(
        &self,
        filter: Option<&regex::Regex>,
        used_only: bool,
    ) -> Vec<(String, Option<Arc<super::tagged::Tagged>>, Snapshot)> {
        let mut all = Vec::new();
        {
            let map = self.scopes.lock().unwrap_or_else(|p| p.into_inner());
            for s in map.values() {
                let full = |n: &str| format!("{}.{n}", s.name.name);
                for (n, h) in &s.histograms {
                    let f = full(n);
                    let snap = Snapshot::of(h.get(), &f);
                    all.push((f, None, snap));
                }
                for (b, _) in &s.blocks {
                    b.histograms(&mut |n, h| {
                        let f = full(n);
                        let snap = Snapshot::of(h, &f);
                        all.push((f, None, snap));
                    });
                }
            }
        }
        for t in super::tagged::all() {
            if let super::tagged::TaggedValue::Histogram(h) = &t.value {
                let snap = Snapshot::of(Some(h), &t.full);
                all.push((t.full.to_string(), Some(t.clone()), snap));
            }
        }
        let matcher = &super::settings().matcher;
        all.retain(|(name, _, snap)| {
            (!used_only || snap.count > 0)
                && filter.is_none_or(|f| f.is_match(name))
                && matcher.accepts(name)
        });
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }
}

/// What a histogram shows at one moment.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub bounds: Arc<[f64]>,
    pub cumulative: Vec<u64>,
    pub sum: f64,
    pub count: u64,
}

impl Snapshot {
    pub fn of(h: Option<&Histogram>, full_name: &str) -> Snapshot {
        match h {
            Some(h) => Snapshot {
                bounds: h.bounds.clone(),
                cumulative: h.cumulative(),
                sum: h.sum(),
                count: h.count(),
            },
            None => {
                let bounds = super::settings().buckets_for(full_name);
                Snapshot {
                    cumulative: vec![0; bounds.len()],
                    bounds,
                    sum: 0.0,
                    count: 0,
                }
            }
        }
    }
}

/// A histogram allocated on its first value; rendered as all zeros until then.
#[derive(Debug, Default)]
pub struct Lazy(OnceLock<Histogram>);

impl Lazy {
    pub fn record(&self, full_name: impl Fn() -> String, v: u64) {
        self.0
            .get_or_init(|| Histogram::new(super::settings().buckets_for(&full_name())))
            .record(v);
        if super::statsd::active() {
            super::statsd::histogram(full_name, v);
        }
    }

    pub fn get(&self) -> Option<&Histogram> {
        self.0.get()
    }
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
}
