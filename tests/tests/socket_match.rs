//! `transport_socket_matches`, against Envoy: the transport socket of each endpoint chosen by
//! its `envoy.transport_socket_match` metadata, as Istio's auto mTLS configures every outbound
//! cluster (`tlsMode-istio` gets mTLS, the rest plaintext). Covered: Istio's two matches over
//! three endpoints, a locality's metadata when the endpoint's own matches nothing, the cluster's
//! `transport_socket` when nothing matches, typed comparison (`1` is not `"1"`), and the
//! `cluster.<name>.<match>.total_match_count` counters.

use ferry_tests::client::{self, HttpRequest};
use ferry_tests::echo;
use ferry_tests::proxy::{self, TempDir};
use ferry_tests::tls::{self, spiffe, Ca};

/// Each request's status and the upstream that answered it.
async fn call(port: u16, path: &str) -> String {
    match client::send(port, &HttpRequest::get(path)).await {
        Ok(r) => format!(
            "{path}: {} {}",
            r.status,
            r.header("x-upstream").unwrap_or("-")
        ),
        Err(e) => format!("{path}: error {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_pick_their_transport_socket() {
    let behind = echo::start_http("behind-tls").await;
    let plain = echo::start_http("plain").await;
    let plain2 = echo::start_http("plain2").await;
    let dir = TempDir::new("socket-match");
    let root = Ca::root("mesh root");
    let server = root.issue(&spiffe("default", "server"), &["server.example.com"]);
    let client_cert = root.issue(&spiffe("default", "client"), &[]);
    let files = tls::write_files(
        dir.path(),
        &[("server", &server), ("client", &client_cert)],
        &[("mesh", &root.root_pem)],
    );
    let mut results = Vec::new();
    for (kind, bin) in proxy::kinds() {
        let l1 = ferry_tests::ports::free_port();
        let mut vars = files.clone();
        vars.insert("L1".into(), l1.to_string());
        vars.insert("UP_BEHIND".into(), behind.port().to_string());
        vars.insert("UP_PLAIN".into(), plain.port().to_string());
        vars.insert("UP_PLAIN2".into(), plain2.port().to_string());
        let px = proxy::start(
            kind,
            &bin,
            include_str!("../configs/tls/socket_match.yaml"),
            &vars,
            &[],
        )
        .await;
        let out = px.port("L2");
        let mut got = Vec::new();
        // Round robin over the three endpoints of `auto`, twice.
        let mut auto: Vec<String> = Vec::new();
        for _ in 0..6 {
            auto.push(call(out, "/auto").await);
        }
        auto.sort();
        got.extend(auto);
        for path in ["/locality", "/fallback", "/typed"] {
            got.push(call(out, path).await);
        }
        for (cluster, counters) in [
            (
                "auto",
                &["tlsMode-istio", "tlsMode-disabled", "default"][..],
            ),
            ("locality", &["mtls", "default"][..]),
            ("fallback", &["never", "default"][..]),
            ("typed", &["one", "default"][..]),
        ] {
            for c in counters {
                let name = format!("cluster.{cluster}.{c}.total_match_count");
                got.push(format!(
                    "{name}: {}",
                    ferry_tests::conn::stat(px.admin_port(), &name).await
                ));
            }
        }
        for name in [
            "cluster.auto.ssl.handshake",
            "cluster.auto.upstream_cx_total",
            "cluster.locality.ssl.handshake",
            "cluster.fallback.ssl.handshake",
            "cluster.typed.ssl.handshake",
        ] {
            got.push(format!(
                "{name}: {}",
                ferry_tests::conn::stat(px.admin_port(), name).await
            ));
        }
        if std::env::var_os("FERRY_TESTS_DUMP").is_some() {
            eprintln!("{kind:?}: {got:#?}");
        }
        results.push((kind, got));
    }
    let ferry = &results.last().expect("ferry ran").1;
    for want in [
        "/auto: 200 behind-tls",
        "/auto: 200 plain",
        "/auto: 200 plain2",
        "/locality: 200 behind-tls",
        "/fallback: 200 behind-tls",
        "/typed: 200 plain",
        "cluster.auto.tlsMode-istio.total_match_count: 1",
        "cluster.auto.tlsMode-disabled.total_match_count: 2",
        "cluster.auto.default.total_match_count: 0",
        "cluster.locality.mtls.total_match_count: 1",
        "cluster.fallback.default.total_match_count: 1",
        "cluster.typed.default.total_match_count: 1",
        "cluster.auto.ssl.handshake: 1",
        "cluster.typed.ssl.handshake: 0",
    ] {
        assert!(
            ferry.iter().any(|l| l == want),
            "missing {want:?} in {ferry:#?}"
        );
    }
    assert_eq!(
        ferry.iter().filter(|l| l.starts_with("/auto: 200")).count(),
        6,
        "{ferry:#?}"
    );
    if let [(_, envoy), (_, ferry)] = results.as_slice() {
        assert_eq!(envoy, ferry, "Envoy and Ferry differ");
    }
}
