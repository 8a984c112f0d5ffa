//! The outlier detection event log (`cluster_manager.outlier_detection.event_log_path`, which
//! Istio's bootstrap sets) against Envoy: the same ejection, un-ejection and second ejection
//! give the same JSON lines, timestamps and elapsed seconds aside.

use ferry_tests::client::{self, HttpRequest};
use ferry_tests::echo;
use ferry_tests::proxy;
use std::time::Duration;

/// An event line without the values that depend on the clock.
fn normalise(line: &str) -> String {
    let mut v: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        let ts_ok = o
            .get("timestamp")
            .and_then(|t| t.as_str())
            .is_some_and(|t| t.len() == 24 && t.ends_with('Z'));
        o.insert("timestamp".into(), ts_ok.into());
        if o.contains_key("secs_since_last_action") {
            o.insert("secs_since_last_action".into(), "<secs>".into());
        }
    }
    // Keys in the order written.
    let keys: Vec<&str> = line
        .split("\",\"")
        .filter_map(|p| p.split('"').find(|s| !s.is_empty() && *s != "{"))
        .collect();
    format!("{v} keys={keys:?}")
}

async fn fail(port: u16, n: usize) {
    for _ in 0..n {
        let _ = client::send(port, &HttpRequest::get("/fail/flaky/503")).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outlier_event_log_against_envoy() {
    let up = echo::start_http("flaky").await;
    let mut results = Vec::new();
    for (kind, bin) in proxy::kinds() {
        let vars = std::collections::BTreeMap::from([("UP".to_string(), up.port().to_string())]);
        let px = proxy::start(
            kind,
            &bin,
            include_str!("../configs/outlier_events.yaml"),
            &vars,
            &["--file-flush-interval-msec".to_string(), "50".to_string()],
        )
        .await;
        let port = px.port("L1");
        let events = px.dir().join("events.log");
        // Two 503s eject the host; it comes back after a second; two more eject it again.
        fail(port, 2).await;
        tokio::time::sleep(Duration::from_millis(1700)).await;
        fail(port, 2).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let text = std::fs::read_to_string(&events).unwrap_or_default();
        let got: Vec<String> = text.lines().map(normalise).collect();
        if std::env::var_os("FERRY_TESTS_DUMP").is_some() {
            eprintln!("{kind:?}:\n{text}");
        }
        drop(px);
        results.push((kind, got));
    }
    let ferry = &results.last().expect("ferry ran").1;
    assert!(ferry.len() >= 3, "{ferry:#?}");
    assert!(ferry[0].contains("\"action\":\"EJECT\""), "{ferry:#?}");
    assert!(ferry[1].contains("\"action\":\"UNEJECT\""), "{ferry:#?}");
    assert!(ferry[2].contains("\"num_ejections\":2"), "{ferry:#?}");
    // Envoy's second un-ejection may or may not have come by the time the file is read.
    let n = ferry.len().min(3);
    if let [(_, envoy), (_, ferry)] = results.as_slice() {
        assert_eq!(
            envoy[..n.min(envoy.len())],
            ferry[..n],
            "Envoy and Ferry differ"
        );
    }
}
