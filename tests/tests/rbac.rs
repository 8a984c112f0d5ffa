//! RBAC against Envoy: allow and deny by method, path (`url_path` without the query, `:path`
//! with it), header, source and destination, shadow rules, per-route overrides, gRPC denials,
//! and the `rbac.*` stats with their prefixes.

use ferry_tests::{Case, Setup};

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
    env.compare_stats(
        &mut report,
        &[
            "http.rb.rbac.myrules_.allowed",
            "http.rb.rbac.myrules_.denied",
            "http.rb.rbac.dry_run_.shadow_allowed",
            "http.rb.rbac.dry_run_.shadow_denied",
        ],
    )
    .await;
    report.finish();
}

/// RBAC by the peer's SPIFFE identity over mTLS: the same certificates through both proxies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rbac_by_identity() {
    use ferry_tests::proxy::{self, Proxy, TempDir};
    use ferry_tests::tls::{self, spiffe, Ca, Outcome};
    use ferry_tests::{echo, ProxyKind};
    let up = echo::start_http("echo").await;
    let dir = TempDir::new("rbac-pki");
    let root = Ca::root("mesh root");
    let server = root.issue(&spiffe("default", "server"), &["server.example.com"]);
    let client = root.issue(&spiffe("default", "client"), &[]);
    let other_sa = root.issue(&spiffe("default", "other"), &[]);
    let other_ns = root.issue(&spiffe("other", "client"), &[]);
    let mut files = tls::write_files(
        dir.path(),
        &[("server", &server)],
        &[("mesh", &root.root_pem)],
    );
    files.insert("UP_ECHO".into(), up.port().to_string());
    let mut kinds = vec![(ProxyKind::Ferry, proxy::ferry_bin())];
    if let Some(envoy) = proxy::envoy_or_skip() {
        kinds.insert(0, (ProxyKind::Envoy, envoy));
    }
    let template = include_str!("../configs/tls/rbac_mtls.yaml");
    let clients = [
        ("default/client", Some(&client)),
        ("default/other", Some(&other_sa)),
        ("other/client", Some(&other_ns)),
        ("no certificate", None),
    ];
    let mut results = Vec::new();
    for (kind, bin) in kinds {
        let px: Proxy = proxy::start(kind, &bin, template, &files, &[]).await;
        let mut got = Vec::new();
        for (who, cert) in &clients {
            for path in [
                "/ns-default/x",
                "/client-only",
                "/any-peer",
                "/not-other",
                "/nothing",
            ] {
                let cfg = tls::client_config(&root.root_pem, *cert, &["http/1.1"]);
                let o = tls::get(px.port("L1"), cfg, "server.example.com", path).await;
                let status = match o {
                    Outcome::Ok { status, .. } => status.to_string(),
                    Outcome::Refused => "refused".to_string(),
                };
                got.push(format!("{who} {path}: {status}"));
            }
        }
        results.push((kind, got));
    }
    let ferry = &results[results.len() - 1].1;
    // What the policies say, whichever proxy is compared against.
    for (line, want) in [
        ("default/client /ns-default/x", "200"),
        ("default/client /client-only", "200"),
        ("default/other /client-only", "403"),
        ("other/client /ns-default/x", "403"),
        ("other/client /any-peer", "200"),
        // `authenticated: {}` is any TLS connection, even without a client certificate.
        ("no certificate /any-peer", "200"),
        ("other/client /not-other", "403"),
        ("no certificate /not-other", "200"),
        ("default/client /nothing", "403"),
    ] {
        let got = ferry.iter().find(|l| l.starts_with(&format!("{line}:")));
        assert_eq!(
            got.map(String::as_str),
            Some(format!("{line}: {want}").as_str())
        );
    }
    if results.len() == 2 {
        assert_eq!(
            results[0].1, results[1].1,
            "Envoy (left) and Ferry (right) differ"
        );
    }
}
