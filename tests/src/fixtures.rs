//! Istio's own files (bootstraps, config dumps), read from `<workspace>/../shared/fixtures`
//! or `$FERRY_FIXTURES`. Missing fixtures fail under CI and skip, saying why, elsewhere.

use std::path::PathBuf;

/// `<fixtures>/istio/<rel>`, when it exists.
pub fn istio(rel: &str) -> Option<PathBuf> {
    let root = match std::env::var_os("FERRY_FIXTURES") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures"),
    };
    let path = root.join("istio").join(rel);
    if path.exists() {
        return Some(path);
    }
    let why = format!(
        "Istio fixture {} not found (set FERRY_FIXTURES to the fixtures directory)",
        path.display()
    );
    if std::env::var_os("CI").is_some() {
        panic!("{why}");
    }
    eprintln!("SKIP: {why}");
    None
}
