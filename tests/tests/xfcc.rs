//! `x-forwarded-client-cert` against Envoy: each `forward_client_cert_details` mode, with and
//! without `set_current_client_cert_details`, for an mTLS client, a TLS client without a
//! certificate and a plaintext client, each sending a claim of its own. Istio's inbound
//! listeners use APPEND_FORWARD with subject, DNS and URI: the workload learns who called.

use ferry_tests::client::{self, HttpRequest};
use ferry_tests::echo;
use ferry_tests::proxy::{self, TempDir};
use ferry_tests::tls::{self, spiffe, Ca, Outcome};

/// The header the upstream received, or what went wrong.
fn seen(body: &str) -> String {
    let json: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    json["headers"]["x-forwarded-client-cert"].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_client_cert_modes() {
    let up = echo::start_http("echo").await;
    let dir = TempDir::new("xfcc");
    let root = Ca::root("mesh root");
    let server = root.issue(&spiffe("default", "server"), &["server.example.com"]);
    let client_cert = root.issue(
        &spiffe("default", "client"),
        &["client.example.com", "other.example.com"],
    );
    let files = tls::write_files(
        dir.path(),
        &[("server", &server), ("client", &client_cert)],
        &[("mesh", &root.root_pem)],
    );
    let mut results = Vec::new();
    for (kind, bin) in proxy::kinds() {
        let mut vars = files.clone();
        vars.insert("UP_ECHO".into(), up.port().to_string());
        let px = proxy::start(
            kind,
            &bin,
            include_str!("../configs/tls/xfcc.yaml"),
            &vars,
            &[],
        )
        .await;
        let mut got = Vec::new();
        let mtls = tls::client_config(&root.root_pem, Some(&client_cert), &["http/1.1"]);
        let no_cert = tls::client_config(&root.root_pem, None, &["h2"]);
        for listener in [
            "L_SANITIZE",
            "L_FORWARD_ONLY",
            "L_APPEND",
            "L_APPEND_BARE",
            "L_SET",
            "L_ALWAYS",
            "L_SET_CERT",
        ] {
            for (who, cfg) in [("mtls", &mtls), ("no cert", &no_cert)] {
                // The client claims `By=forged`.
                let o = tls::get(px.port(listener), cfg.clone(), "server.example.com", "/").await;
                got.push(match o {
                    Outcome::Ok { status, body, .. } => {
                        format!("{listener} {who}: {status} {}", seen(&body))
                    }
                    Outcome::Refused => format!("{listener} {who}: refused"),
                });
            }
        }
        for listener in ["P_APPEND", "P_ALWAYS"] {
            let mut req = HttpRequest::get("/");
            req.headers
                .push(("x-forwarded-client-cert".into(), "By=forged".into()));
            let line = match client::send(px.port(listener), &req).await {
                Ok(r) => format!("{listener}: {} {}", r.status, seen(&r.text())),
                Err(e) => format!("{listener}: error {e}"),
            };
            got.push(line);
        }
        if std::env::var_os("FERRY_TESTS_DUMP").is_some() {
            eprintln!("{kind:?}: {got:#?}");
        }
        results.push((kind, got));
    }
    let ferry = &results.last().expect("ferry ran").1;
    let client_uri = spiffe("default", "client");
    let server_uri = spiffe("default", "server");
    let hash = {
        let der = tls::leaf_der(&client_cert.chain);
        format!("Hash={}", sha256_hex(&der))
    };
    for (prefix, want) in [
        ("L_SANITIZE mtls: 200 ", "null".to_string()),
        ("L_FORWARD_ONLY mtls: 200 ", "[\"By=forged\"]".to_string()),
        ("L_FORWARD_ONLY no cert: 200 ", "null".to_string()),
        (
            "L_APPEND mtls: 200 ",
            format!(
                "[\"By=forged,By={server_uri};{hash};Subject=\\\"CN=rcgen self signed cert\\\";URI={client_uri};DNS=client.example.com;DNS=other.example.com\"]"
            ),
        ),
        ("L_APPEND no cert: 200 ", "null".to_string()),
        (
            "L_SET mtls: 200 ",
            format!("[\"By={server_uri};{hash};URI={client_uri}\"]"),
        ),
        ("L_ALWAYS no cert: 200 ", "[\"By=forged\"]".to_string()),
        ("P_APPEND: 200 ", "null".to_string()),
        ("P_ALWAYS: 200 ", "[\"By=forged\"]".to_string()),
    ] {
        let line = format!("{prefix}{want}");
        assert!(ferry.contains(&line), "missing {line}\nin {ferry:#?}");
    }
    // SANITIZE_SET with every detail: Envoy's order and its URL-encoded PEM.
    assert!(
        ferry.iter().any(|l| l.starts_with("L_SET_CERT mtls: 200 ")
            && l.contains(";Cert=\\\"-----BEGIN%20CERTIFICATE-----%0A")
            && l.contains("%0A-----END%20CERTIFICATE-----%0A\\\";Chain=")
            && l.contains(";Subject=")),
        "{ferry:#?}"
    );
    if let [(_, envoy), (_, ferry)] = results.as_slice() {
        assert_eq!(envoy, ferry, "Envoy and Ferry differ");
    }
}

/// SHA-256 in lowercase hex, computed here independently of the proxy.
fn sha256_hex(data: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, data);
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}
