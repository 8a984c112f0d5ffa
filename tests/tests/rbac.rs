//! RBAC against Envoy: allow and deny by method, path (`url_path` without the query, `:path`
//! with it), header, source and destination, shadow rules, per-route overrides, gRPC denials,
//! and the `rbac.*` stats with their prefixes.

use ferry_tests::conn::stat;
use ferry_tests::proxy::Target;
use ferry_tests::{Case, Setup};
use std::collections::BTreeMap;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rbac_http() {
    let Some(env) = Setup::new("rbac", include_str!("../configs/rbac.yaml"))
        .echo("UP_A", "a")
        .start()
        .await
    else {
        return;
    };
    let mut report = env.report();
    let denied = |c: Case| c.expect_status(403).expect_body("RBAC: access denied");
    let cases = vec![
        Case::get("GET public", "/public/x").expect_status(200),
        Case::get("GET public with a query", "/public/x?a=1").expect_status(200),
        denied(Case::get("POST public", "/public/x").method("POST")),
        denied(Case::get("no policy matches", "/private")),
        denied(Case::get("admin without role", "/admin")),
        Case::get("admin with role", "/admin")
            .header("x-role", "admin")
            .expect_status(200),
        denied(Case::get("url_path exact ignores the query", "/admin/?x").header("x-role", "user")),
        Case::get(":path prefix", "/admin/tools?x=1")
            .header("x-role", "admin")
            .expect_status(200),
        Case::get("files", "/files/readme").expect_status(200),
        denied(Case::get("files: not a key", "/files/server.key")),
        denied(Case::get("denied over h2", "/private").h2()),
        Case::get("denied gRPC", "/private")
            .method("POST")
            .h2()
            .header("content-type", "application/grpc")
            .expect_status(200)
            .expect("header:grpc-status", "7")
            .expect("header:grpc-message", "RBAC: access denied"),
        Case::get("per-route: no RBAC", "/open/anything").expect_status(200),
        denied(Case::get("per-route: deny loopback", "/deny-local/x")),
    ];
    env.run_cases(&mut report, &cases).await;
    for name in [
        "rbac.myrules_.allowed",
        "rbac.myrules_.denied",
        "rbac.dry_run_.shadow_allowed",
        "rbac.dry_run_.shadow_denied",
    ] {
        let full = format!("http.rb.{name}");
        env.compare_with(&mut report, &full, |t: Target| {
            let full = full.clone();
            async move { BTreeMap::from([("value".to_string(), stat(t.port("ADMIN"), &full).await)]) }
        })
        .await;
    }
    report.finish();
}
