//! TLS and mTLS against Envoy: termination with required client certificates (SPIFFE SAN
//! matching, an intermediate CA, rogue and expired certificates), TLS 1.2-only contexts,
//! origination with client certificates and server SAN checks, `ssl.*` stats — and the two
//! proxies talking mTLS to each other in both directions.

use ferry_tests::client::{self, HttpRequest};
use ferry_tests::proxy::{self, Proxy, TempDir};
use ferry_tests::tls::{self, spiffe, Ca, Outcome, Pem};
use ferry_tests::{echo, ProxyKind};
use std::collections::BTreeMap;

struct Pki {
    files: BTreeMap<String, String>,
    root_pem: String,
    client: Pem,
    other_ns: Pem,
    rogue: Pem,
    expired: Pem,
    revoked: Pem,
    _dir: TempDir,
}

fn pki() -> Pki {
    let dir = TempDir::new("pki");
    let root = Ca::root("mesh root");
    let inter = root.intermediate("mesh intermediate");
    let rogue_root = Ca::root("rogue root");
    let server = inter.issue(&spiffe("default", "server"), &["server.example.com"]);
    let client = inter.issue(&spiffe("default", "client"), &[]);
    let revoked = inter.issue(&spiffe("default", "revoked"), &[]);
    let crl = format!("{}{}", root.crl(&[]), inter.crl(&[&revoked]));
    let crl_path = dir.path().join("mesh.crl");
    std::fs::write(&crl_path, crl).expect("write CRL");
    let mut files = tls::write_files(
        dir.path(),
        &[("server", &server), ("client", &client)],
        &[("mesh", &root.root_pem), ("rogue", &rogue_root.root_pem)],
    );
    files.insert("MESH_CRL".into(), crl_path.display().to_string());
    Pki {
        files,
        root_pem: root.root_pem.clone(),
        other_ns: inter.issue(&spiffe("other", "client"), &[]),
        rogue: rogue_root.issue(&spiffe("default", "client"), &[]),
        expired: inter.issue_expired(&spiffe("default", "client")),
        client,
        revoked,
        _dir: dir,
    }
}

/// A short description of an outcome, with what the upstream saw of the forwarding headers.
fn describe(o: &Outcome) -> String {
    match o {
        Outcome::Refused => "refused".to_string(),
        Outcome::Ok {
            alpn, status, body, ..
        } => {
            let json: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
            let h = &json["headers"];
            format!(
                "{status} alpn={alpn:?} x-forwarded-proto={} xfcc={}",
                h["x-forwarded-proto"], h["x-forwarded-client-cert"]
            )
        }
    }
}

async fn status_via(port: u16, path: &str) -> String {
    match client::send(port, &HttpRequest::get(path)).await {
        Ok(r) => r.status.to_string(),
        Err(e) => format!("error {e}"),
    }
}

async fn stats_of(admin: u16, names: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for n in names {
        out.push(format!("{n}: {}", ferry_tests::conn::stat(admin, n).await));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_termination_and_origination() {
    let up = echo::start_http("echo").await;
    let p = pki();
    let mut kinds = vec![(ProxyKind::Ferry, proxy::ferry_bin())];
    if let Some(envoy) = proxy::envoy_or_skip() {
        kinds.insert(0, (ProxyKind::Envoy, envoy));
    }
    let template = include_str!("../configs/tls/mtls.yaml");
    let mut results: Vec<(ProxyKind, Vec<String>)> = Vec::new();
    for (kind, bin) in kinds {
        let l1 = ferry_tests::ports::free_port();
        let mut shared = p.files.clone();
        shared.insert("UP_ECHO".into(), up.port().to_string());
        shared.insert("L1".into(), l1.to_string());
        shared.insert("MTLS_PORT".into(), l1.to_string());
        let px: Proxy = proxy::start(kind, &bin, template, &shared, &[]).await;
        let ca = &p.root_pem;
        let sni = "server.example.com";
        let mut got = Vec::new();
        let cases: Vec<(&str, Option<&Pem>, &[&str], &str)> = vec![
            ("mtls, h2", Some(&p.client), &["h2", "http/1.1"], "L1"),
            ("mtls, http/1.1", Some(&p.client), &["http/1.1"], "L1"),
            ("mtls, no client certificate", None, &[], "L1"),
            ("mtls, certificate of a rogue CA", Some(&p.rogue), &[], "L1"),
            (
                "mtls, identity of another namespace",
                Some(&p.other_ns),
                &[],
                "L1",
            ),
            ("mtls, expired certificate", Some(&p.expired), &[], "L1"),
            ("tls 1.2 only, no client certificate asked", None, &[], "L3"),
            ("crl, good certificate", Some(&p.client), &[], "L4"),
            ("crl, revoked certificate", Some(&p.revoked), &[], "L4"),
        ];
        for (name, cert, alpn, listener) in &cases {
            let port = if *listener == "L1" {
                l1
            } else {
                px.port(listener)
            };
            let o = tls::get(port, tls::client_config(ca, *cert, alpn), sni, "/x").await;
            got.push(format!("{name}: {}", describe(&o)));
        }
        for path in [
            "/good",
            "/wrong-san",
            "/no-client-cert",
            "/untrusted",
            "/auto-h2",
            "/auto-h1",
        ] {
            got.push(format!(
                "originate {path}: {}",
                status_via(px.port("L2"), path).await
            ));
        }
        let l = format!("listener.127.0.0.1_{l1}.ssl");
        let mut names: Vec<String> = [
            "handshake",
            "connection_error",
            "fail_verify_no_cert",
            "fail_verify_error",
            "fail_verify_san",
            "versions.TLSv1.3",
        ]
        .iter()
        .map(|s| format!("{l}.{s}"))
        .collect();
        let l3 = format!("listener.127.0.0.1_{}.ssl", px.port("L3"));
        names.push(format!("{l3}.handshake"));
        names.push(format!("{l3}.versions.TLSv1.2"));
        names.push(format!("{l3}.ciphers.ECDHE-ECDSA-AES256-GCM-SHA384"));
        for c in ["to_mtls_auto", "to_tls12_auto"] {
            names.push(format!("cluster.{c}.upstream_cx_http2_total"));
            names.push(format!("cluster.{c}.upstream_cx_http1_total"));
        }
        for c in [
            "to_mtls",
            "to_mtls_wrong_san",
            "to_mtls_no_cert",
            "to_mtls_untrusted",
        ] {
            names.push(format!("cluster.{c}.ssl.handshake"));
            names.push(format!("cluster.{c}.ssl.fail_verify_san"));
            names.push(format!("cluster.{c}.ssl.fail_verify_error"));
            names.push(format!("cluster.{c}.upstream_cx_connect_fail"));
        }
        // /certs: every TLS context's CA and certificate (order aside).
        let certs = client::admin_get(px.admin_port(), "/certs")
            .await
            .map(|r| r.text())
            .unwrap_or_default();
        let json: serde_json::Value = serde_json::from_str(&certs).unwrap_or_default();
        let mut entries: Vec<String> = json["certificates"]
            .as_array()
            .map(|a| a.iter().map(|e| e.to_string()).collect())
            .unwrap_or_default();
        entries.sort();
        got.push(format!("/certs: {} contexts", entries.len()));
        got.extend(entries.into_iter().map(|e| format!("/certs: {e}")));
        // Let the server side finish counting the failed handshakes.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        for s in stats_of(px.admin_port(), &names).await {
            got.push(
                s.replace(&l1.to_string(), "L1")
                    .replace(&px.port("L3").to_string(), "L3"),
            );
        }
        results.push((kind, got));
    }
    let ferry = &results.last().expect("ferry ran").1;
    let https = "x-forwarded-proto=[\"https\"] xfcc=null";
    for want in [
        format!("mtls, h2: 200 alpn=\"h2\" {https}"),
        format!("mtls, http/1.1: 200 alpn=\"http/1.1\" {https}"),
        "mtls, no client certificate: refused".to_string(),
        "mtls, certificate of a rogue CA: refused".to_string(),
        "mtls, identity of another namespace: refused".to_string(),
        "mtls, expired certificate: refused".to_string(),
        format!("tls 1.2 only, no client certificate asked: 200 alpn=\"\" {https}"),
        format!("crl, good certificate: 200 alpn=\"\" {https}"),
        "crl, revoked certificate: refused".to_string(),
        "originate /good: 200".to_string(),
        "originate /wrong-san: 503".to_string(),
        "originate /no-client-cert: 503".to_string(),
        "originate /untrusted: 503".to_string(),
        "originate /auto-h2: 200".to_string(),
        "originate /auto-h1: 200".to_string(),
        "cluster.to_mtls_auto.upstream_cx_http2_total: 1".to_string(),
        "cluster.to_tls12_auto.upstream_cx_http1_total: 1".to_string(),
    ] {
        assert!(ferry.contains(&want), "missing {want:?} in {ferry:#?}");
    }
    // mtls, mtls_crl and tls12 listeners, six origination clusters.
    assert!(
        ferry.contains(&"/certs: 9 contexts".to_string()),
        "{ferry:#?}"
    );
    assert!(
        ferry
            .iter()
            .any(|l| l.contains("\"uri\":\"spiffe://cluster.local/ns/default/sa/server\"")),
        "{ferry:#?}"
    );
    ferry_tests::diff::assert_lines_equal(&results);
}

/// Ferry originates mTLS to Envoy's listener and Envoy to Ferry's: the same certificates and
/// checks work across the two implementations.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_interop_with_envoy() {
    let Some(envoy) = proxy::envoy_or_skip() else {
        return;
    };
    let up = echo::start_http("echo").await;
    let p = pki();
    let template = include_str!("../configs/tls/mtls.yaml");
    let start = |kind: ProxyKind, bin: std::path::PathBuf, mtls_port: Option<u16>| {
        let mut shared = p.files.clone();
        shared.insert("UP_ECHO".into(), up.port().to_string());
        let l1 = ferry_tests::ports::free_port();
        shared.insert("L1".into(), l1.to_string());
        shared.insert("MTLS_PORT".into(), mtls_port.unwrap_or(l1).to_string());
        async move { (proxy::start(kind, &bin, template, &shared, &[]).await, l1) }
    };
    let (e, e_l1) = start(ProxyKind::Envoy, envoy.clone(), None).await;
    let (f, _) = start(ProxyKind::Ferry, proxy::ferry_bin(), Some(e_l1)).await;
    let mut got = Vec::new();
    for path in ["/good", "/wrong-san", "/no-client-cert", "/untrusted"] {
        got.push(format!(
            "ferry -> envoy {path}: {}",
            status_via(f.port("L2"), path).await
        ));
    }
    drop(f);
    let (f, f_l1) = start(ProxyKind::Ferry, proxy::ferry_bin(), None).await;
    let (e2, _) = start(ProxyKind::Envoy, envoy, Some(f_l1)).await;
    for path in ["/good", "/wrong-san", "/no-client-cert", "/untrusted"] {
        got.push(format!(
            "envoy -> ferry {path}: {}",
            status_via(e2.port("L2"), path).await
        ));
    }
    assert_eq!(
        got,
        [
            "ferry -> envoy /good: 200",
            "ferry -> envoy /wrong-san: 503",
            "ferry -> envoy /no-client-cert: 503",
            "ferry -> envoy /untrusted: 503",
            "envoy -> ferry /good: 200",
            "envoy -> ferry /wrong-san: 503",
            "envoy -> ferry /no-client-cert: 503",
            "envoy -> ferry /untrusted: 503",
        ]
    );
    drop((e, f));
}
