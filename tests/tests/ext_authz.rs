//! ext_authz over gRPC and HTTP against Envoy (`configs/tls/ext_authz.yaml`): Istio's CUSTOM authorization
//! (a shadow RBAC policy gating the check through dynamic metadata), OK with request and
//! response header changes, denials with and without a denied response, service errors and
//! timeouts, per-route disabling and context extensions, failing open, a missing cluster; the
//! CheckRequests the service received; the `ext_authz` and RBAC shadow counters.

use envoy_types::pb::envoy::config::core::v3::{address, Address};
use envoy_types::pb::envoy::service::auth::v3::CheckRequest;
use ferry_tests::authz::{AuthzServer, HttpAuthzServer};
use ferry_tests::client::{self, HttpRequest};
use ferry_tests::echo;
use ferry_tests::proxy;

fn ip(a: &Option<Address>) -> String {
    match a.as_ref().and_then(|a| a.address.as_ref()) {
        Some(address::Address::SocketAddress(s)) => s.address.clone(),
        _ => "-".into(),
    }
}

/// What a CheckRequest says, without the values that differ from run to run.
fn summary(c: &CheckRequest) -> String {
    let Some(a) = &c.attributes else {
        return "no attributes".into();
    };
    let http = a.request.as_ref().and_then(|r| r.http.as_ref());
    let mut headers: Vec<String> = http
        .map(|h| {
            h.headers
                .iter()
                .map(|(k, v)| match k.as_str() {
                    "x-request-id" => format!("{k}=<id>"),
                    _ => format!("{k}={v}"),
                })
                .collect()
        })
        .unwrap_or_default();
    headers.sort();
    let mut ext: Vec<String> = a
        .context_extensions
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    ext.sort();
    format!(
        "{} {} host={} scheme={} protocol={} size={} body={:?} raw_body={:?} cert={:?} id={} src={} dst={} principals=[{}|{}] headers={headers:?} ext={ext:?} metadata={} route_metadata={} time={}",
        http.map_or("", |h| h.method.as_str()),
        http.map_or("", |h| h.path.as_str()),
        http.map_or("", |h| h.host.as_str()),
        http.map_or("", |h| h.scheme.as_str()),
        http.map_or("", |h| h.protocol.as_str()),
        http.map_or(-2, |h| h.size),
        http.map_or("", |h| h.body.as_str()),
        http.map_or(String::new(), |h| String::from_utf8_lossy(&h.raw_body).into_owned()),
        a.source
            .as_ref()
            .map_or(String::new(), |p| p.certificate.clone()),
        http.is_some_and(|h| h.id.parse::<u64>().is_ok()),
        a.source.as_ref().map_or("-".into(), |p| ip(&p.address)),
        a.destination.as_ref().map_or("-".into(), |p| ip(&p.address)),
        a.source.as_ref().map_or("", |p| p.principal.as_str()),
        a.destination.as_ref().map_or("", |p| p.principal.as_str()),
        a.metadata_context.is_some(),
        a.route_metadata_context.is_some(),
        a.request.as_ref().is_some_and(|r| r.time.is_some()),
    )
}

/// Status, the headers ext_authz touches, and what the upstream saw.
fn outcome(r: &client::HttpResponse) -> String {
    let mut out = format!("{}", r.status);
    for h in [
        "x-authz-response",
        "x-authz-added",
        "x-authz-why",
        "x-authz-dropped",
        "www-authenticate",
        "location",
        "set-cookie",
        "x-client-ok",
        "x-other",
        "content-type",
        "content-length",
    ] {
        let all: Vec<&str> = r
            .headers
            .iter()
            .filter(|(n, _)| n == h)
            .map(|(_, v)| v.as_str())
            .collect();
        if !all.is_empty() {
            out.push_str(&format!(" {h}={all:?}"));
        }
    }
    if r.headers
        .iter()
        .any(|(n, _)| n == "x-envoy-upstream-service-time")
        && r.status != 200
    {
        out.push_str(" x-envoy-upstream-service-time");
    }
    if r.status == 200 {
        let seen: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
        out.push_str(&format!(" upstream path={}", seen["path"]));
        for h in [
            "x-authz-set",
            "x-app",
            "x-drop",
            "x-absent",
            "x-envoy-auth-failure-mode-allowed",
        ] {
            let v = &seen["headers"][h];
            if !v.is_null() {
                out.push_str(&format!(" upstream {h}={v}"));
            }
        }
    } else {
        out.push_str(&format!(" body={:?}", r.text()));
    }
    out
}

/// Writes `ping` on a new connection and reads what comes back until it closes (or 2 s).
async fn ping(port: u16) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return "refused".into();
    };
    let _ = s.write_all(b"ping").await;
    let mut buf = [0u8; 16];
    match tokio::time::timeout(std::time::Duration::from_secs(2), s.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => "closed".into(),
        Ok(Ok(n)) => format!("echoed {:?}", String::from_utf8_lossy(&buf[..n])),
        Err(_) => "open, nothing back".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ext_authz_against_envoy() {
    let up = echo::start_http("echo").await;
    let authz = AuthzServer::start().await;
    let http_authz = HttpAuthzServer::start().await;
    let tcp_echo = echo::start_tcp_echo("tcp").await;
    let dir = ferry_tests::proxy::TempDir::new("ext-authz-pki");
    let root = ferry_tests::tls::Ca::root("mesh root");
    let server = root.issue(
        &ferry_tests::tls::spiffe("default", "server"),
        &["server.example.com"],
    );
    let client_cert = root.issue(&ferry_tests::tls::spiffe("default", "client"), &[]);
    let pki = ferry_tests::tls::write_files(
        dir.path(),
        &[("server", &server)],
        &[("mesh", &root.root_pem)],
    );
    let mut results = Vec::new();
    for (kind, bin) in proxy::kinds() {
        let mut vars = pki.clone();
        vars.extend([
            ("UP_ECHO".to_string(), up.port().to_string()),
            ("AUTHZ".to_string(), authz.port().to_string()),
            ("AUTHZ_HTTP".to_string(), http_authz.port().to_string()),
            ("TCP_ECHO".to_string(), tcp_echo.port().to_string()),
        ]);
        let px = proxy::start(
            kind,
            &bin,
            include_str!("../configs/tls/ext_authz.yaml"),
            &vars,
            &[],
        )
        .await;
        authz.take();
        http_authz.take();
        let mut got = Vec::new();
        let cases: &[(&str, &str)] = &[
            ("L1", "/other"),
            ("L1", "POST /secure/allow"),
            ("L2", "POST /allow"),
            ("L4", "POST /allow"),
            ("L4", "POST /allow/short"),
            ("L5", "/allow?x=1"),
            ("L5", "POST /allow"),
            ("L5", "/deny"),
            ("L5", "/redirect"),
            ("L5", "/fail"),
            ("L5", "/other"),
            ("L6", "/deny"),
            ("L1", "/secure/allow"),
            ("L1", "/secure/deny"),
            ("L1", "/secure/nothing"),
            ("L1", "/secure/fail"),
            ("L1", "/secure/slow"),
            ("L1", "/secure/off/allow"),
            ("L1", "/secure/ctx/allow?q=1"),
            ("L2", "/fail"),
            ("L2", "/allow"),
            (
                "L2",
                "/allow-query?z=9&qr=1&x=2&b=1&b=2&qs=old&a=1&qs=old2&flag",
            ),
            ("L3", "/allow"),
        ];
        for (listener, path) in cases {
            let mut req = match path.strip_prefix("POST ") {
                Some(p) => {
                    let mut r = HttpRequest::get(p);
                    r.method = "POST".into();
                    r.body = if p.ends_with("short") {
                        b"tiny".to_vec()
                    } else {
                        b"a body of 24 bytes here!".to_vec()
                    };
                    r
                }
                None => HttpRequest::get(path),
            };
            req.headers.push(("x-app".into(), "orig".into()));
            req.headers.push(("x-drop".into(), "gone".into()));
            let line = match client::send(px.port(listener), &req).await {
                Ok(r) => outcome(&r),
                Err(e) => format!("error {e}"),
            };
            got.push(format!("{listener} {path}: {line}"));
        }
        // mTLS: the client's certificate goes in the check.
        let cfg =
            ferry_tests::tls::client_config(&root.root_pem, Some(&client_cert), &["http/1.1"]);
        let o = ferry_tests::tls::get(px.port("L9"), cfg, "server.example.com", "/allow").await;
        got.push(format!(
            "L9 mtls /allow: {}",
            match o {
                ferry_tests::tls::Outcome::Ok { status, .. } => status.to_string(),
                ferry_tests::tls::Outcome::Refused => "refused".into(),
            }
        ));
        // Connections: denied, then allowed; L8's never checked.
        for (listener, allow) in [("L7", false), ("L7", true), ("L8", false)] {
            authz.set_tcp_allow(allow);
            got.push(format!(
                "{listener} tcp (service allows: {allow}): {}",
                ping(px.port(listener)).await
            ));
        }
        authz.set_tcp_allow(false);
        for c in authz.take() {
            got.push(format!("check: {}", summary(&c)));
        }
        for c in http_authz.take() {
            got.push(format!(
                "http check: {}",
                c.replace(&up.port().to_string(), "UP")
            ));
        }
        let mut names = Vec::new();
        for (hcm, prefix) in [
            ("istio", ""),
            ("open", "fo."),
            ("missing", ""),
            ("http_authz", ""),
            ("http_authz_few", ""),
        ] {
            for s in ["ok", "denied", "error", "disabled", "failure_mode_allowed"] {
                names.push(format!("http.{hcm}.ext_authz.{prefix}{s}"));
            }
        }
        for s in ["ok", "denied", "error", "failure_mode_allowed"] {
            names.push(format!("cluster.echo.ext_authz.{s}"));
            names.push(format!("cluster.echo.ext_authz.fo.{s}"));
        }
        // Not `disabled`: Envoy counts it on every read of an ungated connection (two for
        // L8's: its data and its close), Ferry once per connection (checked below).
        for s in ["total", "ok", "denied", "error", "cx_closed", "active"] {
            names.push(format!("ext_authz.tcp..{s}"));
        }
        if kind == ferry_tests::ProxyKind::Ferry {
            let n = "ext_authz.tcp..disabled";
            let v = ferry_tests::conn::stat(px.admin_port(), n).await;
            assert_eq!(v, "1", "{n}");
        }
        names.push("http.istio.rbac.istio_ext_authz_.shadow_denied".into());
        names.push("http.istio.rbac.istio_ext_authz_.shadow_allowed".into());
        for n in &names {
            got.push(format!(
                "{n}: {}",
                ferry_tests::conn::stat(px.admin_port(), n).await
            ));
        }
        if std::env::var_os("FERRY_TESTS_DUMP").is_some() {
            eprintln!("{kind:?}: {got:#?}");
        }
        results.push((kind, got));
    }
    let ferry = &results.last().expect("ferry ran").1;
    for want in [
        "L1 /other: 200",
        "L1 /secure/allow: 200 x-authz-response=[\"set\"] x-authz-added=[\"added\"]",
        "L1 /secure/deny: 401 x-authz-why=[\"test\"] content-type=[\"text/plain\"]",
        "L1 /secure/nothing: 403",
        "L1 /secure/fail: 403",
        "L1 /secure/slow: 403",
        "L3 /allow: 503",
        "http.istio.ext_authz.disabled: 1",
        "http.open.ext_authz.fo.failure_mode_allowed: 1",
    ] {
        assert!(
            ferry.iter().any(|l| l.starts_with(want)),
            "missing {want:?} in {ferry:#?}"
        );
    }
    assert!(
        ferry
            .iter()
            .any(|l| l.contains("upstream x-authz-set=[\"yes\"]")
                && l.contains("upstream x-app=[\"orig,from-authz\"]")
                && !l.contains("x-drop")
                && !l.contains("x-absent")),
        "{ferry:#?}"
    );
    ferry_tests::diff::assert_lines_equal(&results);
}
