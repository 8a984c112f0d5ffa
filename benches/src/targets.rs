//! Which binaries are measured: finding Envoy, finding (or building) Ferry, and describing
//! them and the machine for the report.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::scenarios::Target;
use crate::Args;

/// The cargo workspace this benchmark belongs to (else the current directory).
pub fn workspace_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    if root.join("Cargo.toml").exists() {
        root.canonicalize().unwrap_or(root)
    } else {
        PathBuf::from(".")
    }
}

/// The targets in measuring order: envoy (the baseline), ferry, direct.
pub fn resolve(args: &Args, root: &Path, tmp: &Path) -> Result<Vec<Target>> {
    for t in &args.targets {
        if !["direct", "envoy", "ferry"].contains(&t.as_str()) {
            bail!("unknown target {t:?} (direct, envoy, ferry)");
        }
    }
    let wanted = |name: &str| args.targets.iter().any(|t| t == name);
    let mut out = Vec::new();
    if wanted("envoy") {
        let bin = envoy(args, root)?;
        out.push(Target {
            name: "envoy".into(),
            bin: Some(bin.clone()),
            source: Some(bin),
        });
    }
    if wanted("ferry") {
        let bin = ferry(args, root)?;
        // Measure a copy: other work may rebuild target/release/ferry while this runs.
        let copy = tmp.join("ferry");
        std::fs::copy(&bin, &copy).with_context(|| format!("copy {}", bin.display()))?;
        eprintln!(
            "ferry-bench: ferry = {} (measuring a copy taken now)",
            bin.display()
        );
        out.push(Target {
            name: "ferry".into(),
            bin: Some(copy),
            source: Some(bin),
        });
    }
    if wanted("direct") {
        out.push(Target {
            name: "direct".into(),
            bin: None,
            source: None,
        });
    }
    if out.is_empty() {
        bail!("no targets");
    }
    Ok(out)
}

fn envoy(args: &Args, root: &Path) -> Result<PathBuf> {
    if let Some(p) = &args.envoy {
        return executable(p);
    }
    if let Ok(entries) = std::fs::read_dir("/opt/envoy-venv/lib") {
        let mut found: Vec<PathBuf> = entries
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("python3"))
            .map(|e| e.path().join("site-packages/envoy/_bin/envoy"))
            .filter(|p| p.is_file())
            .collect();
        found.sort();
        if let Some(p) = found.pop() {
            return Ok(p);
        }
    }
    let pointer = root.join("target/envoy-bin");
    if let Ok(text) = std::fs::read_to_string(&pointer) {
        return executable(Path::new(text.trim()));
    }
    bail!("no Envoy binary: pass --envoy or ENVOY_BIN, or run scripts/setup.sh")
}

fn ferry(args: &Args, root: &Path) -> Result<PathBuf> {
    if let Some(p) = &args.ferry {
        return executable(p);
    }
    let bin = root.join("target/release/ferry");
    if !bin.is_file() {
        eprintln!(
            "ferry-bench: {} is missing; building it: cargo build --release -p ferry",
            bin.display()
        );
        let status = Command::new("cargo")
            .args(["build", "--release", "-p", "ferry"])
            .current_dir(root)
            .status()
            .context("run cargo")?;
        if !status.success() {
            bail!("cargo build --release -p ferry failed ({status})");
        }
    }
    executable(&bin)
}

fn executable(p: &Path) -> Result<PathBuf> {
    if !p.is_file() {
        bail!("{} is not a file", p.display());
    }
    Ok(p.to_path_buf())
}

/// The binary's `--version` line.
pub fn version(bin: &Path) -> String {
    Command::new(bin)
        .arg("--version")
        .output()
        .ok()
        .map(|o| {
            let text = String::from_utf8_lossy(&o.stdout).to_string()
                + &String::from_utf8_lossy(&o.stderr);
            let line = text
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or("");
            // Envoy prints "<path>  version: <sha>/<version>/…": keep what follows "version:".
            line.split_once("version:")
                .map_or(line, |(_, v)| v.trim())
                .to_string()
        })
        .unwrap_or_else(|| "version unknown".into())
}

/// "2 CPUs (AMD EPYC), Linux 6.x".
pub fn machine(cpus: usize) -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cpus} CPUs ({model}), Linux {}", kernel.trim())
}
