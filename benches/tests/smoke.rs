//! CI smoke: the whole harness end to end with tiny windows (http1 and tcp, 0.3 s each, one
//! run) against direct, Envoy and the debug Ferry; checks that the report's markdown and JSON
//! are written and hold a nonzero throughput for every target and scenario. Never asserts a
//! time or a ratio.
//!
//! Ferry: `$FERRY_BIN`, else the `ferry` built beside this test's `ferry-bench` (the debug
//! build from `cargo build -p ferry`; passed explicitly, so the harness never builds a
//! release). Envoy: `$ENVOY_BIN`, else the pip location. Either missing: a failure when `$CI`
//! is set, else `SKIP`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const SCENARIOS: [(&str, &str, &str); 2] = [
    ("http1", "rps", "max throughput (closed loop)"),
    ("tcp", "gbps", "TCP echo throughput (payload)"),
];
const TARGETS: [&str; 3] = ["direct", "envoy", "ferry"];

fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

fn envoy() -> Option<PathBuf> {
    if let Some(p) = env_path("ENVOY_BIN") {
        return Some(p);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/opt/envoy-venv/lib")
        .ok()?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("python3"))
        .map(|e| e.path().join("site-packages/envoy/_bin/envoy"))
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    found.pop()
}

fn ferry(bench: &Path) -> Option<PathBuf> {
    env_path("FERRY_BIN").or_else(|| Some(bench.parent()?.join("ferry")))
}

/// Fails under CI, else says why the test does nothing.
fn missing(what: &str) {
    assert!(std::env::var_os("CI").is_none(), "{what} (CI is set)");
    println!("SKIP: {what}");
}

/// A fresh, empty directory under the system temp dir.
fn temp_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("ferry-bench-smoke-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create the temp dir");
    d
}

/// The one file in `dir` ending in `ext`.
fn only_file(dir: &Path, ext: &str) -> PathBuf {
    let found: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read the output dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    assert_eq!(found.len(), 1, "one .{ext} in {}: {found:?}", dir.display());
    found[0].clone()
}

/// A markdown number cell ("12,345", "1.23", "12 (10–14)") as its median.
fn number(cell: &str) -> Option<f64> {
    cell.split_whitespace()
        .next()?
        .replace(',', "")
        .parse()
        .ok()
}

/// Checks scenario `sc`'s table: a column per target, a positive `label` figure in each.
fn check_markdown(md: &str, sc: &str, label: &str) {
    let section = md
        .split(&format!("\n## {sc}\n"))
        .nth(1)
        .unwrap_or_else(|| panic!("no ## {sc} section:\n{md}"));
    let section = section.split("\n## ").next().unwrap_or(section);
    let row = |first: &str| -> Vec<String> {
        let line = section
            .lines()
            .find(|l| l.starts_with(&format!("| {first} |")))
            .unwrap_or_else(|| panic!("{sc}: no row {first:?}:\n{section}"));
        line.trim_matches('|')
            .split('|')
            .map(|c| c.trim().to_string())
            .collect()
    };
    let header = row("metric");
    let figures = row(label);
    for t in TARGETS {
        let col = header
            .iter()
            .position(|h| h == t)
            .unwrap_or_else(|| panic!("{sc}: no column {t}: {header:?}"));
        let v = figures.get(col).and_then(|c| number(c));
        assert!(v.is_some_and(|v| v > 0.0), "{sc}, {t}: {label} = {v:?}");
    }
}

/// Checks the JSON summary: a positive median of `metric` for every target in `sc`.
fn check_json(json: &Value, sc: &str, metric: &str) {
    let summary = json["summary"].as_array().expect("summary array");
    for t in TARGETS {
        let median = summary
            .iter()
            .find(|s| s["scenario"] == sc && s["metric"] == metric && s["target"] == t)
            .and_then(|s| s["median"].as_f64());
        assert!(
            median.is_some_and(|m| m > 0.0),
            "{sc}, {t}: {metric} = {median:?}; notes: {}",
            json["notes"]
        );
    }
}

#[test]
fn the_harness_runs_end_to_end() {
    let bench = PathBuf::from(env!("CARGO_BIN_EXE_ferry-bench"));
    let Some(envoy) = envoy().filter(|p| p.is_file()) else {
        return missing("Envoy not found");
    };
    let ferry = ferry(&bench).filter(|p| p.is_file());
    let Some(ferry) = ferry else {
        return missing("ferry not found (run `cargo build -p ferry` or set FERRY_BIN)");
    };
    let out = temp_dir();
    let scenarios: Vec<&str> = SCENARIOS.iter().map(|s| s.0).collect();
    let mut child = Command::new(&bench)
        .arg("--envoy")
        .arg(&envoy)
        .arg("--ferry")
        .arg(&ferry)
        .args(["--targets", &TARGETS.join(",")])
        .args(["--scenario", &scenarios.join(",")])
        .args(["--duration", "0.3", "--warmup", "0.1", "--runs", "1"])
        .args(["--nice", "0", "--no-plot"])
        .arg("--out")
        .arg(&out)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("start ferry-bench");
    // Bounded: a hung harness is killed rather than holding CI.
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for ferry-bench") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ferry-bench did not finish within 120 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "ferry-bench failed: {status}");

    let md = std::fs::read_to_string(only_file(&out, "md")).expect("read the markdown");
    let json: Value = serde_json::from_str(
        &std::fs::read_to_string(only_file(&out, "json")).expect("read the JSON"),
    )
    .expect("parse the JSON");
    for (sc, metric, label) in SCENARIOS {
        check_markdown(&md, sc, label);
        check_json(&json, sc, metric);
    }
    let _ = std::fs::remove_dir_all(&out);
}
