//! Request mirroring against Envoy: what the shadow upstream receives (host with `-shadow`,
//! method, path, body, the internal mark), by cluster and by header, virtual-host policies,
//! sampling at 0 %, no suffix, and a dead shadow that never affects the main request.

use ferry_tests::client::{self, HttpRequest};
use ferry_tests::echo;
use ferry_tests::proxy::Target;
use ferry_tests::Setup;
use std::collections::BTreeMap;
use std::time::Duration;

/// Sends `req`; returns the main answer and what the shadow upstream "b" saw of the same
/// request (by its `x-request-id`), waiting up to 2 s for the copy.
async fn mirrored(port: u16, req: HttpRequest, expect_copy: bool) -> BTreeMap<String, String> {
    let mut obs = BTreeMap::new();
    let r = match client::send(port, &req).await {
        Ok(r) => r,
        Err(e) => {
            obs.insert("error".into(), e);
            return obs;
        }
    };
    obs.insert("status".into(), r.status.to_string());
    let main: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
    obs.insert("main upstream".into(), main["upstream"].to_string());
    let id = main["headers"]["x-request-id"][0]
        .as_str()
        .unwrap_or("")
        .to_string();
    let mut copies = Vec::new();
    for _ in 0..(if expect_copy { 40 } else { 6 }) {
        copies = echo::seen_with_request_id(&id)
            .into_iter()
            .filter(|j| j["upstream"] == "b")
            .collect();
        if !copies.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    obs.insert("copies".into(), copies.len().to_string());
    if let Some(c) = copies.first() {
        for f in ["method", "path", "authority", "body"] {
            obs.insert(format!("copy.{f}"), c[f].to_string());
        }
        let h = &c["headers"];
        obs.insert(
            "copy.x-envoy-internal".into(),
            h["x-envoy-internal"].to_string(),
        );
        obs.insert(
            "copy.has x-forwarded-for".into(),
            (!h["x-forwarded-for"].is_null()).to_string(),
        );
    }
    obs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_mirroring() {
    let Some(env) = Setup::new("mirror", include_str!("../configs/mirror.yaml"))
        .echo("UP_A", "a")
        .echo("UP_B", "b")
        .refusing("DEAD")
        .start()
        .await
    else {
        return;
    };
    let mut report = env.report();
    let get = |p: &str| HttpRequest::get(p);
    let mut post = HttpRequest::get("/vhost/upload");
    post.method = "POST".into();
    post.body = b"mirrored body".to_vec();
    let mut by_header = get("/by-header/x");
    by_header
        .headers
        .push(("x-mirror-to".into(), "shadow".into()));
    let mut h2 = get("/vhost/h2");
    h2.h2 = true;
    let cases: Vec<(&str, HttpRequest, bool)> = vec![
        ("virtual-host policy", get("/vhost/a?q=1"), true),
        ("with a body", post, true),
        ("over h2", h2, true),
        ("cluster from a header", by_header, true),
        ("header absent", get("/by-header/y"), false),
        ("sampled at 0 %", get("/never/x"), false),
        ("without the -shadow suffix", get("/no-suffix/x"), true),
        ("a dead shadow", get("/to-dead/x"), false),
    ];
    for (name, req, copy) in cases {
        env.compare_with(&mut report, name, |t: Target| {
            let req = req.clone();
            async move { mirrored(t.port("L1"), req, copy).await }
        })
        .await;
    }
    // What both were compared on, checked on Ferry: a copy arrives, with the shadow host.
    let ferry = env.both()[1].target();
    let o = mirrored(ferry.port("L1"), get("/vhost/check"), true).await;
    assert_eq!(o.get("copies").map(String::as_str), Some("1"), "{o:?}");
    assert_eq!(
        o.get("copy.authority").map(String::as_str),
        Some("\"example.com-shadow\""),
        "{o:?}"
    );
    assert_eq!(
        o.get("copy.x-envoy-internal").map(String::as_str),
        Some("[\"true\"]")
    );
    let o = mirrored(ferry.port("L1"), get("/never/x"), false).await;
    assert_eq!(o.get("copies").map(String::as_str), Some("0"), "{o:?}");
    report.finish();
}
