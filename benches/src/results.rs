//! What a run records (one sample per scenario × target × metric × run) and how runs are
//! summarised: the median and the min–max spread.

use std::collections::BTreeMap;

/// A measured figure.
#[derive(Clone, Debug)]
pub struct Sample {
    pub run: usize,
    pub scenario: String,
    pub target: String,
    pub metric: &'static str,
    pub value: f64,
}

/// How a metric is shown and judged.
pub struct Metric {
    pub key: &'static str,
    pub label: &'static str,
    pub unit: &'static str,
    /// Higher is better (throughput) or lower is better (cost, latency); None: neither.
    pub higher_better: Option<bool>,
    pub decimals: usize,
}

const fn m(
    key: &'static str,
    label: &'static str,
    unit: &'static str,
    higher_better: Option<bool>,
    decimals: usize,
) -> Metric {
    Metric {
        key,
        label,
        unit,
        higher_better,
        decimals,
    }
}

const UP: Option<bool> = Some(true);
const DOWN: Option<bool> = Some(false);

/// Every metric, in display order.
pub const METRICS: &[Metric] = &[
    m("rps", "max throughput (closed loop)", "req/s", UP, 0),
    m("gbps", "TCP echo throughput (payload)", "Gbit/s", UP, 2),
    m(
        "conn_per_s",
        "new connections (1 request each)",
        "conn/s",
        UP,
        0,
    ),
    m(
        "hs_per_s",
        "mTLS handshakes (1 request each)",
        "handshakes/s",
        UP,
        0,
    ),
    m(
        "idle_conns_held",
        "idle keep-alive connections held",
        "conn",
        UP,
        0,
    ),
    m(
        "kib_per_idle_conn",
        "memory per idle connection",
        "KiB",
        DOWN,
        2,
    ),
    m("cpu_us_per_req", "proxy CPU per request", "µs", DOWN, 1),
    m(
        "cpu_s_per_gib",
        "proxy CPU per GiB echoed",
        "CPU·s",
        DOWN,
        2,
    ),
    m("cpu_us_per_conn", "proxy CPU per connection", "µs", DOWN, 1),
    m(
        "cpu_us_per_hs",
        "proxy CPU per mTLS handshake",
        "µs",
        DOWN,
        1,
    ),
    m(
        "cpu_vs_http1",
        "CPU per request ÷ http1's (same run)",
        "×",
        DOWN,
        2,
    ),
    m(
        "xds_ack_s",
        "first CDS response → CDS and EDS ACKed",
        "s",
        DOWN,
        2,
    ),
    m(
        "proxy_cpu_pct",
        "proxy CPU use at max throughput",
        "%",
        None,
        0,
    ),
    m(
        "gen_cpu_pct",
        "load generator + upstream CPU use (their CPU)",
        "%",
        None,
        0,
    ),
    m(
        "noise_proxy_cpu_pct",
        "other processes on the proxy's CPU",
        "%",
        None,
        0,
    ),
    m(
        "noise_load_cpu_pct",
        "other processes on the load generator's CPU",
        "%",
        None,
        0,
    ),
    m("rate", "fixed rate achieved (open loop)", "req/s", None, 0),
    m("p50_us", "latency p50 at fixed rate", "µs", DOWN, 0),
    m("p90_us", "latency p90 at fixed rate", "µs", DOWN, 0),
    m("p99_us", "latency p99 at fixed rate", "µs", DOWN, 0),
    m("p999_us", "latency p99.9 at fixed rate", "µs", DOWN, 0),
    m("max_us", "latency max at fixed rate", "µs", DOWN, 0),
    m(
        "cpu_us_per_req_fixed",
        "proxy CPU per request at fixed rate",
        "µs",
        DOWN,
        1,
    ),
    m(
        "conn_p99_us",
        "connection + request p99 (closed loop)",
        "µs",
        DOWN,
        0,
    ),
    m(
        "hs_p99_us",
        "handshake + request p99 (closed loop)",
        "µs",
        DOWN,
        0,
    ),
    m(
        "kib_heap_per_idle_conn",
        "heap allocated per idle connection (admin /memory)",
        "KiB",
        DOWN,
        2,
    ),
    m(
        "rss_idle_conns_mib",
        "proxy RSS holding the idle connections",
        "MiB",
        DOWN,
        1,
    ),
    m(
        "rss_idle_mib",
        "proxy RSS idle (before load)",
        "MiB",
        DOWN,
        1,
    ),
    m("rss_peak_mib", "proxy peak RSS (VmHWM)", "MiB", DOWN, 1),
    m(
        "errors",
        "errors (non-2xx, transport, failed gRPC)",
        "",
        DOWN,
        0,
    ),
];

pub fn metric(key: &str) -> &'static Metric {
    METRICS
        .iter()
        .find(|m| m.key == key)
        .unwrap_or_else(|| panic!("unknown metric {key}"))
}

/// Median, min and max of one metric for one target over the runs.
#[derive(Clone, Debug)]
pub struct Summary {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

impl Summary {
    pub fn of(values: &[f64]) -> Option<Summary> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(|a, b| a.total_cmp(b));
        let mid = v.len() / 2;
        let median = if v.len() % 2 == 1 {
            v[mid]
        } else {
            (v[mid - 1] + v[mid]) / 2.0
        };
        Some(Summary {
            median,
            min: v[0],
            max: v[v.len() - 1],
            n: v.len(),
        })
    }
}

/// scenario → metric → target → values over runs (in insertion order of scenarios kept
/// separately by the caller).
pub type Grouped = BTreeMap<String, BTreeMap<&'static str, BTreeMap<String, Vec<f64>>>>;

pub fn group(samples: &[Sample]) -> Grouped {
    let mut g: Grouped = BTreeMap::new();
    for s in samples {
        g.entry(s.scenario.clone())
            .or_default()
            .entry(s.metric)
            .or_default()
            .entry(s.target.clone())
            .or_default()
            .push(s.value);
    }
    g
}

/// Adds, per run and target, mesh's CPU per request over http1's: a config 1,000 entries
/// bigger should not make a request dearer.
pub fn derive_mesh_ratio(samples: &mut Vec<Sample>) {
    let find = |s: &[Sample], run: usize, sc: &str, target: &str| {
        s.iter()
            .find(|x| {
                x.run == run
                    && x.scenario == sc
                    && x.target == target
                    && x.metric == "cpu_us_per_req"
            })
            .map(|x| x.value)
    };
    let mesh: Vec<(usize, String)> = samples
        .iter()
        .filter(|x| x.scenario == "mesh" && x.metric == "cpu_us_per_req")
        .map(|x| (x.run, x.target.clone()))
        .collect();
    for (run, target) in mesh {
        if let (Some(m), Some(h)) = (
            find(samples, run, "mesh", &target),
            find(samples, run, "http1", &target),
        ) {
            if h > 0.0 {
                samples.push(Sample {
                    run,
                    scenario: "mesh".into(),
                    target,
                    metric: "cpu_vs_http1",
                    value: m / h,
                });
            }
        }
    }
}

/// Records samples for one scenario × target × run.
pub struct Recorder<'a> {
    pub samples: &'a mut Vec<Sample>,
    pub run: usize,
    pub scenario: String,
    pub target: String,
}

impl Recorder<'_> {
    pub fn put(&mut self, metric: &'static str, value: f64) {
        debug_assert!(METRICS.iter().any(|m| m.key == metric), "{metric}");
        self.samples.push(Sample {
            run: self.run,
            scenario: self.scenario.clone(),
            target: self.target.clone(),
            metric,
            value,
        });
    }
}
