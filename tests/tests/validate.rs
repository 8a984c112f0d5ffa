//! `--mode validate`: valid bootstraps pass on Envoy and Ferry, invalid ones
//! are rejected by both, and Ferry names the offending field.

use std::path::{Path, PathBuf};

use ferry_tests::proxy::{self, TempDir};

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "yaml"));
    files.sort();
    files
}

/// The binaries to validate with: Ferry always, Envoy when installed (its
/// absence is a failure in CI and a SKIP line elsewhere).
fn binaries() -> Vec<(&'static str, PathBuf)> {
    let mut bins = vec![("ferry", proxy::ferry_bin())];
    if let Some(envoy) = proxy::envoy_or_skip() {
        bins.insert(0, ("envoy", envoy));
    }
    bins
}

fn check_valid(files: &[PathBuf], failures: &mut Vec<String>) {
    for (name, bin) in binaries() {
        for file in files {
            let v = proxy::validate(&bin, file);
            if !v.status.success() {
                failures.push(format!(
                    "{name} rejected valid {} ({}):\n{}{}",
                    file.display(),
                    v.status,
                    v.stdout,
                    v.stderr
                ));
            }
        }
    }
}

#[test]
fn examples_validate() {
    let files = yaml_files(&manifest_dir().join("../examples"));
    eprintln!("validating {} example bootstrap(s)", files.len());
    let mut failures = Vec::new();
    check_valid(&files, &mut failures);
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The bootstraps of the differential tests, with placeholders replaced by
/// free ports, are valid for both binaries.
#[test]
fn test_bootstraps_validate() {
    let dir = TempDir::new("validate");
    let templates = yaml_files(&manifest_dir().join("configs"));
    assert!(
        templates.len() >= 10,
        "expected the differential test bootstraps in tests/configs"
    );
    let mut files = Vec::new();
    for template in &templates {
        let text = std::fs::read_to_string(template).expect("read template");
        let (yaml, _) = proxy::render_instance(&text, &Default::default());
        let yaml = yaml.replace("@@DIR@@", &dir.path().to_string_lossy());
        let out = dir.path().join(template.file_name().expect("file name"));
        std::fs::write(&out, yaml).expect("write rendered bootstrap");
        files.push(out);
    }
    let mut failures = Vec::new();
    check_valid(&files, &mut failures);
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// True when FERRY_BIN is really the Envoy binary (used to check the suite
/// itself, Envoy against Envoy); Ferry's own error wording is then not
/// checked.
fn ferry_is_envoy(ferry: &Path) -> bool {
    let canonical = |p: &Path| std::fs::canonicalize(p).ok();
    proxy::find_envoy().is_some_and(|envoy| canonical(&envoy) == canonical(ferry))
}

#[test]
fn invalid_bootstraps_rejected() {
    let files = yaml_files(&manifest_dir().join("configs/invalid"));
    assert!(
        files.len() >= 8,
        "expected the invalid bootstraps in tests/configs/invalid"
    );
    let mut failures = Vec::new();
    let skip_wording = ferry_is_envoy(&proxy::ferry_bin());
    if skip_wording {
        eprintln!("NOTE: FERRY_BIN is the Envoy binary; Ferry's .expect wording is not checked");
    }
    for (name, bin) in binaries() {
        for file in &files {
            let v = proxy::validate(&bin, file);
            let file_name = file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if v.status.success() {
                // `<name>.differs` holds the reason Ferry deliberately accepts what Envoy rejects.
                let differs = std::fs::read_to_string(file.with_extension("differs")).ok();
                match (name, differs) {
                    ("ferry", Some(reason)) => {
                        eprintln!("NOTE ferry accepts {file_name}: {}", reason.trim())
                    }
                    _ => failures.push(format!("{name} accepted invalid {file_name}")),
                }
                continue;
            }
            if name != "ferry" || skip_wording {
                continue;
            }
            let expect_file = file.with_extension("expect");
            let Ok(expected) = std::fs::read_to_string(&expect_file) else {
                failures.push(format!("{} is missing", expect_file.display()));
                continue;
            };
            let expected = expected.trim();
            let output = format!("{}{}", v.stderr, v.stdout);
            if !output.contains(expected) {
                failures.push(format!(
                    "ferry rejected {file_name} but its output does not name `{expected}`:\n{output}"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The bootstraps with istio-proxy's own extensions (`stats.PluginConfig`,
/// `io.istio.http.peer_metadata.Config`): Ferry implements them, stock Envoy 1.39.3 does not
/// have them and must refuse them — the difference a drop-in for istio-proxy makes.
#[test]
fn istio_proxy_bootstraps() {
    let dir = TempDir::new("validate-istio");
    let templates = yaml_files(&manifest_dir().join("configs/istio"));
    assert!(!templates.is_empty(), "expected tests/configs/istio/*.yaml");
    let mut failures = Vec::new();
    for template in &templates {
        let text = std::fs::read_to_string(template).expect("read template");
        let (yaml, _) = proxy::render_instance(&text, &Default::default());
        let out = dir.path().join(template.file_name().expect("file name"));
        std::fs::write(&out, yaml).expect("write rendered bootstrap");
        for (name, bin) in binaries() {
            let v = proxy::validate(&bin, &out);
            let istio_only = name == "envoy" && !proxy::ferry_is_envoy();
            if v.status.success() == istio_only {
                failures.push(format!(
                    "{name} {} {}:\n{}{}",
                    if istio_only { "accepted" } else { "rejected" },
                    out.display(),
                    v.stderr,
                    v.stdout
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The bootstraps Istio's own code renders (`pkg/bootstrap` goldens) and ours from its
/// template: every one Envoy 1.39.3 takes, Ferry takes too — outlier event log, deferred
/// cluster creation, StatsD sink, Zipkin tracer, dual-stack listeners included. The two it
/// refuses are named with their field: the gRPC metrics service sink (Envoy takes it; not in
/// Ferry yet) and Istio's workload discovery extension (Envoy refuses it too).
#[test]
fn istio_rendered_bootstraps() {
    let refused: &[(&str, &str)] = &[
        (
            "pkg-bootstrap-testdata-all_golden.json",
            "stats_sinks[0].typed_config",
        ),
        (
            "rendered-sidecar-bootstrap-metadata-discovery.json",
            "istio.workload.BootstrapExtension",
        ),
    ];
    let Some(dir) = ferry_tests::fixtures::istio("bootstrap") else {
        return;
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|p| {
        let n = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        n.ends_with("_golden.json") || n.starts_with("rendered-sidecar-bootstrap")
    });
    files.sort();
    assert!(files.len() >= 7, "Istio's bootstraps: {files:?}");
    let mut failures = Vec::new();
    for file in &files {
        let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let v = proxy::validate(&proxy::ferry_bin(), file);
        match refused.iter().find(|(f, _)| *f == name) {
            None if !v.status.success() => {
                failures.push(format!("Ferry rejected {name}:\n{}{}", v.stderr, v.stdout))
            }
            Some((_, why))
                if v.status.success() || !(v.stderr.contains(why) || v.stdout.contains(why)) =>
            {
                failures.push(format!(
                    "Ferry should refuse {name} for {why}:\n{}{}",
                    v.stderr, v.stdout
                ))
            }
            _ => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
