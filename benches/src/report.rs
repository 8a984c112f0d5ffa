//! The report: a markdown table per scenario (absolute figures per target and the
//! candidate/baseline ratio), a headline table of ratios, and the same data as JSON.

use std::fmt::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::results::{group, metric, Grouped, Sample, Summary, METRICS};

/// Everything the report says besides the samples.
pub struct Meta {
    pub started_utc: String,
    pub command: String,
    pub machine: String,
    pub pinning: String,
    /// (name, path, version) per target; path and version empty for `direct`.
    pub targets: Vec<(String, String, String)>,
    pub runs: usize,
    pub loadavg_start: String,
    pub loadavg_end: String,
    pub wall_s: f64,
    /// (scenario key as in the samples, description), in display order.
    pub scenarios: Vec<(String, String)>,
    pub notes: Vec<String>,
    pub plot: Option<String>,
}

/// The ratio's numerator and denominator: the 2nd and 1st proxy targets (ferry / envoy).
fn pair(meta: &Meta) -> Option<(String, String)> {
    let proxies: Vec<&String> = meta
        .targets
        .iter()
        .filter(|t| !t.1.is_empty())
        .map(|t| &t.0)
        .collect();
    match proxies.as_slice() {
        [base, cand, ..] => Some(((*cand).clone(), (*base).clone())),
        _ => None,
    }
}

/// Metrics shown in the headline per scenario kind.
fn headline_metrics(scenario: &str) -> &'static [&'static str] {
    match scenario {
        "tcp" => &["gbps", "cpu_s_per_gib"],
        "conn" => &["conn_per_s", "cpu_us_per_conn"],
        "idle" => &[
            "idle_conns_held",
            "kib_per_idle_conn",
            "kib_heap_per_idle_conn",
            "rss_idle_conns_mib",
        ],
        crate::mtls::HANDSHAKES => &["hs_per_s", "cpu_us_per_hs"],
        "mesh" => &[
            "rps",
            "cpu_us_per_req",
            "cpu_vs_http1",
            "p99_us",
            "rss_idle_mib",
        ],
        s if s.starts_with("xds-scale") => &["xds_ack_s", "rss_peak_mib"],
        _ => &["rps", "cpu_us_per_req", "p99_us", "rss_peak_mib"],
    }
}

pub fn fmt_num(v: f64, decimals: usize) -> String {
    let s = format!("{:.*}", decimals, v.abs());
    let (int, frac) = s.split_once('.').map_or((s.as_str(), ""), |(i, f)| (i, f));
    let mut grouped = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    let sign = if v < 0.0 { "-" } else { "" };
    if frac.is_empty() {
        format!("{sign}{grouped}")
    } else {
        format!("{sign}{grouped}.{frac}")
    }
}

fn cell(s: Option<&Summary>, decimals: usize) -> String {
    match s {
        None => "—".to_string(),
        Some(s) if s.n > 1 && s.min != s.max => format!(
            "{} ({}–{})",
            fmt_num(s.median, decimals),
            fmt_num(s.min, decimals),
            fmt_num(s.max, decimals)
        ),
        Some(s) => fmt_num(s.median, decimals),
    }
}

fn ratio_cell(key: &str, cand: Option<&Summary>, base: Option<&Summary>) -> String {
    let (Some(c), Some(b)) = (cand, base) else {
        return "—".to_string();
    };
    if b.median == 0.0 || metric(key).higher_better.is_none() {
        return "—".to_string();
    }
    let r = c.median / b.median;
    let verdict = match metric(key).higher_better {
        Some(true) if r > 1.02 => " (better)",
        Some(true) if r < 0.98 => " (worse)",
        Some(false) if r < 0.98 => " (better)",
        Some(false) if r > 1.02 => " (worse)",
        _ => "",
    };
    format!("{r:.2}{verdict}")
}

fn summary(g: &Grouped, sc: &str, key: &str, target: &str) -> Option<Summary> {
    Summary::of(g.get(sc)?.get(key)?.get(target)?)
}

pub fn markdown(meta: &Meta, samples: &[Sample]) -> String {
    let g = group(samples);
    let names: Vec<&String> = meta.targets.iter().map(|t| &t.0).collect();
    let pair = pair(meta);
    let mut md = String::new();
    let _ = writeln!(md, "# Ferry load benchmark — {}\n", meta.started_utc);
    let _ = writeln!(md, "- command: `{}`", meta.command);
    let _ = writeln!(md, "- machine: {}; {}", meta.machine, meta.pinning);
    let _ = writeln!(
        md,
        "- load average at start / end: {} / {}",
        meta.loadavg_start, meta.loadavg_end
    );
    for (name, path, version) in &meta.targets {
        if !path.is_empty() {
            let _ = writeln!(md, "- {name}: `{path}` ({version})");
        }
    }
    let spread = if meta.runs > 1 {
        ", shown as median (min–max)"
    } else {
        ""
    };
    let _ = writeln!(
        md,
        "- {} run(s){spread}; wall time {:.0} s\n",
        meta.runs, meta.wall_s
    );

    if let Some((cand, base)) = &pair {
        let _ = writeln!(md, "## Headline: {cand} / {base}\n");
        let _ = writeln!(
            md,
            "| scenario | metric | {base} | {cand} | {cand}/{base} |"
        );
        md.push_str("|---|---|---:|---:|---:|\n");
        for (sc, _) in &meta.scenarios {
            for key in headline_metrics(sc) {
                let (b, c) = (summary(&g, sc, key, base), summary(&g, sc, key, cand));
                if b.is_none() && c.is_none() {
                    continue;
                }
                let m = metric(key);
                let _ = writeln!(
                    md,
                    "| {sc} | {} ({}) | {} | {} | {} |",
                    m.label,
                    m.unit,
                    cell(b.as_ref(), m.decimals),
                    cell(c.as_ref(), m.decimals),
                    ratio_cell(key, c.as_ref(), b.as_ref())
                );
            }
        }
        md.push('\n');
    }

    for (sc, desc) in &meta.scenarios {
        let Some(per_metric) = g.get(sc) else {
            continue;
        };
        let _ = writeln!(md, "## {sc}\n\n{desc}\n");
        let cols: Vec<&&String> = names
            .iter()
            .filter(|n| per_metric.values().any(|t| t.contains_key(n.as_str())))
            .collect();
        let mut header = String::from("| metric | unit |");
        let mut rule = String::from("|---|---|");
        for n in &cols {
            let _ = write!(header, " {n} |");
            rule.push_str("---:|");
        }
        if let Some((cand, base)) = &pair {
            let _ = write!(header, " {cand}/{base} |");
            rule.push_str("---:|");
        }
        let _ = writeln!(md, "{header}\n{rule}");
        for m in METRICS.iter().filter(|m| per_metric.contains_key(m.key)) {
            let _ = write!(md, "| {} | {} |", m.label, m.unit);
            for n in &cols {
                let _ = write!(
                    md,
                    " {} |",
                    cell(summary(&g, sc, m.key, n).as_ref(), m.decimals)
                );
            }
            if let Some((cand, base)) = &pair {
                let (c, b) = (summary(&g, sc, m.key, cand), summary(&g, sc, m.key, base));
                let _ = write!(md, " {} |", ratio_cell(m.key, c.as_ref(), b.as_ref()));
            }
            md.push('\n');
        }
        md.push('\n');
    }
    if let Some(plot) = &meta.plot {
        let _ = writeln!(md, "Latency percentiles per target: ![latency]({plot})\n");
    }
    if !meta.notes.is_empty() {
        md.push_str("## Notes\n\n");
        for n in &meta.notes {
            let _ = writeln!(md, "- {n}");
        }
    }
    md
}

pub fn json(meta: &Meta, samples: &[Sample]) -> Value {
    let g = group(samples);
    let mut summaries = Vec::new();
    for (sc, per_metric) in &g {
        for (key, per_target) in per_metric {
            for (target, values) in per_target {
                if let Some(s) = Summary::of(values) {
                    summaries.push(json!({
                        "scenario": sc, "metric": key, "unit": metric(key).unit, "target": target,
                        "median": s.median, "min": s.min, "max": s.max, "runs": s.n,
                    }));
                }
            }
        }
    }
    let samples: Vec<Value> = samples
        .iter()
        .map(|s| json!({"run": s.run, "scenario": s.scenario, "target": s.target, "metric": s.metric, "value": s.value}))
        .collect();
    json!({
        "started_utc": meta.started_utc,
        "command": meta.command,
        "machine": meta.machine,
        "pinning": meta.pinning,
        "targets": meta.targets.iter().map(|(n, p, v)| json!({"name": n, "path": p, "version": v})).collect::<Vec<_>>(),
        "runs": meta.runs,
        "loadavg": {"start": meta.loadavg_start, "end": meta.loadavg_end},
        "wall_s": meta.wall_s,
        "scenarios": meta.scenarios.iter().map(|(s, d)| json!({"name": s, "description": d})).collect::<Vec<_>>(),
        "summary": summaries,
        "samples": samples,
        "notes": meta.notes,
    })
}

/// Warnings read off the figures: a max throughput held back by the load generator rather
/// than the proxy, and windows where other processes used the pinned CPUs.
pub fn caveats(samples: &[Sample]) -> Vec<String> {
    let g = group(samples);
    let mut out = Vec::new();
    for (sc, per_metric) in &g {
        let median = |key: &str, target: &str| {
            Summary::of(per_metric.get(key)?.get(target)?).map(|s| s.median)
        };
        let targets: Vec<&String> = per_metric.values().flat_map(|t| t.keys()).collect();
        let mut seen = Vec::new();
        for t in targets {
            if seen.contains(&t) {
                continue;
            }
            seen.push(t);
            if let (Some(gen), Some(proxy)) = (median("gen_cpu_pct", t), median("proxy_cpu_pct", t))
            {
                if gen >= 90.0 && proxy < 90.0 {
                    out.push(format!(
                        "{sc}, {t}: the load generator's CPU was {gen:.0} % busy and the proxy's {proxy:.0} %: the throughput is the generator's limit, a lower bound for the proxy (compare CPU per request)"
                    ));
                }
            }
            for (key, whose) in [
                ("noise_proxy_cpu_pct", "proxy's"),
                ("noise_load_cpu_pct", "load generator's"),
            ] {
                if let Some(n) = median(key, t).filter(|n| *n >= 10.0) {
                    out.push(format!("{sc}, {t}: other processes took {n:.0} % of the {whose} CPU during the window: figures are disturbed"));
                }
            }
        }
    }
    out
}

/// UTC date-time of `t`: ("2026-11-24 10:03:07 UTC", "2026-11-24T10-03-07Z" for file names).
pub fn utc(t: SystemTime) -> (String, String) {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    // Civil date from days since 1970-01-01 (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    (
        format!("{y:04}-{mo:02}-{d:02} {h:02}:{m:02}:{s:02} UTC"),
        format!("{y:04}-{mo:02}-{d:02}T{h:02}-{m:02}-{s:02}Z"),
    )
}
