//! The access log's downstream TLS operators against Envoy: version, cipher, the client
//! certificate's subject, issuer, serial, SHA-256 fingerprint, DNS and URI SANs, and this
//! proxy's URI SAN, over TLS 1.3 and TLS 1.2, with and without a client certificate.

use ferry_tests::proxy::{self, TempDir};
use ferry_tests::tls::{self, spiffe, Ca};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_operators_against_envoy() {
    let dir = TempDir::new("access-log-tls");
    let root = Ca::root("mesh root");
    let server = root.issue(&spiffe("default", "server"), &["server.example.com"]);
    let client = root.issue(
        &spiffe("default", "client"),
        &["client.example.com", "alt.example.com"],
    );
    let files = tls::write_files(
        dir.path(),
        &[("server", &server)],
        &[("mesh", &root.root_pem)],
    );
    let mut results = Vec::new();
    for (kind, bin) in proxy::kinds() {
        let px = proxy::start(
            kind,
            &bin,
            include_str!("../configs/tls/access_log_tls.yaml"),
            &files,
            &["--file-flush-interval-msec".to_string(), "50".to_string()],
        )
        .await;
        let with_cert = tls::client_config(&root.root_pem, Some(&client), &["http/1.1"]);
        let without = tls::client_config(&root.root_pem, None, &["http/1.1"]);
        for l in ["L1", "L2"] {
            for cfg in [&with_cert, &without] {
                let o = tls::get(px.port(l), cfg.clone(), "server.example.com", "/").await;
                assert!(
                    matches!(o, tls::Outcome::Ok { status: 200, .. }),
                    "{kind:?} {l}"
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut got = Vec::new();
        for name in ["tls13", "tls12"] {
            let text =
                std::fs::read_to_string(px.dir().join(format!("{name}.log"))).unwrap_or_default();
            // TLS 1.2 cipher choice differs on purpose: Envoy (BoringSSL) applies its own
            // preference (AES128-GCM before AES256-GCM), rustls the client's order among the
            // allowed suites. Both are AEAD ECDHE suites; the rest of the line must match.
            got.extend(text.lines().map(|l| {
                let mut w: Vec<&str> = l.split(' ').collect();
                if name == "tls12" && w.len() > 1 {
                    assert!(
                        w[1].starts_with("ECDHE-ECDSA-AES")
                            && (w[1].ends_with("-GCM-SHA256") || w[1].ends_with("-GCM-SHA384")),
                        "{l}"
                    );
                    w[1] = "<ECDHE-ECDSA AES-GCM>";
                }
                format!("{name}: {}", w.join(" "))
            }));
        }
        if std::env::var_os("FERRY_TESTS_DUMP").is_some() {
            eprintln!("{kind:?}: {got:#?}");
        }
        results.push((kind, got));
    }
    let ferry = &results.last().expect("ferry ran").1;
    assert_eq!(ferry.len(), 4, "{ferry:#?}");
    assert!(ferry[0].starts_with("tls13: TLSv1.3 "), "{ferry:#?}");
    assert!(ferry[2].starts_with("tls12: TLSv1.2 "), "{ferry:#?}");
    ferry_tests::diff::assert_lines_equal(&results);
}
