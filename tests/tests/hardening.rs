//! Safe by default, side by side with Envoy's defaults (the same bootstrap, which sets
//! neither): a client trickling its request headers is cut off after Ferry's 10 s request
//! headers timeout while Envoy keeps it; two Host headers get a 400 from Ferry while Envoy
//! merges them into `a,b` and forwards the request; an HTTP/2 connection is offered 100
//! streams, a 64 KiB stream window and a 1 MiB connection window (Envoy: 1024 streams, 16 MiB
//! and 24 MiB), while explicit `http2_protocol_options` are honoured by both. Paths are
//! normalised by default (Envoy: not), each `path_with_escaped_slashes_action` is compared, and
//! a cluster's response header limit gives both proxies' 502. HTTP/2 abuse is in
//! `http2_abuse.rs`.

use ferry_tests::proxy::{ProxyKind, Target};
use ferry_tests::{Case, Observation, Setup};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends a request line, then one header byte a second for up to 13 s; reports when the
/// proxy closed the connection.
async fn trickle(t: Target) -> Observation {
    let mut obs = Observation::new();
    let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", t.port("L1"))).await else {
        obs.insert("connect".into(), "failed".into());
        return obs;
    };
    let started = Instant::now();
    let _ = s
        .write_all(b"GET /slow HTTP/1.1\r\nHost: example.com\r\nX-Slow: ")
        .await;
    let mut buf = [0u8; 512];
    let verdict = loop {
        if started.elapsed() > Duration::from_secs(13) {
            break "open after 13 s".to_string();
        }
        match tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                let secs = started.elapsed().as_secs_f64();
                break if (9.5..12.5).contains(&secs) {
                    "closed after about 10 s".to_string()
                } else {
                    format!("closed after {secs:.1} s")
                };
            }
            Ok(Ok(_)) => break "answered".to_string(),
            Err(_) => {
                if s.write_all(b"x").await.is_err() {
                    break format!(
                        "write failed after {:.1} s",
                        started.elapsed().as_secs_f64()
                    );
                }
            }
        }
    };
    obs.insert("trickling headers".into(), verdict);
    obs
}

/// The SETTINGS and connection WINDOW_UPDATE an HTTP/2 (prior knowledge) client gets first.
async fn h2_settings(t: Target, listener: &str) -> Observation {
    let mut obs = Observation::new();
    let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", t.port(listener))).await else {
        obs.insert("connect".into(), "failed".into());
        return obs;
    };
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    let _ = s.write_all(&hello).await;
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_millis(700);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => bytes.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    obs.insert("max_concurrent_streams".into(), "unset".into());
    obs.insert("initial_window_size".into(), "unset (65535)".into());
    obs.insert("connection_window_update".into(), "none".into());
    let mut at = 0;
    while at + 9 <= bytes.len() {
        let len = u32::from_be_bytes([0, bytes[at], bytes[at + 1], bytes[at + 2]]) as usize;
        let (kind, flags) = (bytes[at + 3], bytes[at + 4]);
        let stream =
            u32::from_be_bytes([bytes[at + 5], bytes[at + 6], bytes[at + 7], bytes[at + 8]]);
        let Some(payload) = bytes.get(at + 9..at + 9 + len) else {
            break;
        };
        match (kind, flags & 1, stream) {
            (4, 0, 0) => {
                for e in payload.chunks_exact(6) {
                    let id = u16::from_be_bytes([e[0], e[1]]);
                    let v = u32::from_be_bytes([e[2], e[3], e[4], e[5]]).to_string();
                    match id {
                        3 => obs.insert("max_concurrent_streams".into(), v),
                        4 => obs.insert("initial_window_size".into(), v),
                        _ => None,
                    };
                }
            }
            (8, _, 0) if payload.len() == 4 => {
                let inc = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]);
                obs.insert(
                    "connection_window_update".into(),
                    (u64::from(inc) + 65_535).to_string(),
                );
            }
            _ => {}
        }
        at += 9 + len;
    }
    obs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn safe_defaults_against_envoys() {
    let Some(env) = Setup::new("hardening", include_str!("../configs/hardening.yaml"))
        .echo("UP_A", "a")
        .start()
        .await
    else {
        return;
    };
    let mut report = env.report();
    // Both at once: each side takes its own 13 s.
    let (envoy, ferry) = tokio::join!(trickle(env.envoy.target()), trickle(env.ferry.target()));
    for (kind, obs, want) in [
        (ProxyKind::Envoy, &envoy, "open after 13 s"),
        (ProxyKind::Ferry, &ferry, "closed after about 10 s"),
    ] {
        let got = obs
            .get("trickling headers")
            .map(String::as_str)
            .unwrap_or("-");
        report.check(
            kind,
            "slow request headers",
            got == want,
            &format!("{want} (got {got})"),
        );
    }
    let cases = vec![
        Case::raw(
            "two Host headers",
            "GET /dup HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\nConnection: close\r\n\r\n",
        )
        .differs_field("", "Envoy merges duplicate Host headers and forwards them; Ferry refuses the ambiguous request")
        .expect_envoy("status", "200")
        .expect_envoy("upstream.header:host", "a.example,b.example")
        .expect_ferry("status", "400")
        .expect_ferry("header:connection", "close"),
        Case::get("merge_slashes: the route and the upstream see one path", "//a///b?x=//y")
            .listener("L3")
            .expect_status(200)
            .expect("upstream.path", "/a/b?x=//y"),
        Case::get("without merge_slashes the path stays as sent", "//a///b")
            .listener("L5")
            .expect_status(200)
            .expect("upstream.path", "//a///b"),
        Case::raw(
            "normalize_path unset: Envoy forwards dot segments, Ferry resolves them",
            "GET /a/../b/%2e/c?x=/../y HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n",
        )
        .differs_field("upstream.path", "Ferry normalises paths unless normalize_path is false (as Istio configures); Envoy does not")
        .expect_envoy("upstream.path", "/a/../b/%2e/c?x=/../y")
        .expect_ferry("upstream.path", "/b/c?x=/../y"),
        Case::raw(
            "normalize_path: false keeps the path as sent",
            "GET /a/../b HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n",
        )
        .listener("L3")
        .expect("upstream.path", "/a/../b"),
        Case::raw(
            "normalize_path: an escaped NUL is refused",
            "GET /a%00b HTTP/1.1\r\nHost: a.example\r\n\r\n",
        )
        .listener("L4")
        .expect_status(400),
        Case::raw(
            "escaped slashes: UNESCAPE_AND_FORWARD",
            "GET /a%2Fb/..%5cc HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n",
        )
        .listener("L5")
        .expect("upstream.path", "/a/b/..\\c"),
        Case::raw(
            "escaped slashes: REJECT_REQUEST",
            "GET /a%2fb HTTP/1.1\r\nHost: a.example\r\n\r\n",
        )
        .listener("L6")
        .expect_status(400),
        Case::raw(
            "escaped slashes: a double-escaped one is not a slash",
            "GET /a%252fb HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n",
        )
        .listener("L6")
        .expect("upstream.path", "/a%252fb"),
        Case::raw(
            "escaped slashes: UNESCAPE_AND_REDIRECT with normalize_path",
            "GET /a%2Fb/../c?q=1 HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n",
        )
        .listener("L7")
        .expect_status(307)
        .expect("header:location", "/a/c?q=1"),
        Case::raw(
            "one Host header",
            "GET /one HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n",
        )
        .expect_status(200)
        .expect("upstream.header:host", "a.example"),
    ];
    let mut many = Case::get(
        "upstream response over the cluster's max_headers_count",
        "/many",
    )
    .listener("L8");
    for i in 0..12 {
        many = many.header("x-echo-response", &format!("x-extra-{i}=v"));
    }
    let cases2 = vec![
        many,
        Case::get("upstream response within max_headers_count", "/few")
            .listener("L8")
            .header("x-echo-response", "x-extra=v")
            .expect_status(200),
    ];
    env.run_cases(&mut report, &cases2).await;
    env.run_cases(&mut report, &cases).await;
    // normalize_path: the same paths through both canonicalisers.
    let paths = [
        "/a/./b",
        "/../a",
        "/a/b/..",
        "/a/%2e%2e/b",
        "/%41%62c",
        "/a%2Fb",
        "/a\\b",
        "/a//b/../c",
        "/%7euser",
        "/a%zzb",
        "/caf%C3%A9",
        "/a;b/../c",
        "/a/.%2e/b",
        "/a{b}",
        "/a|b",
        "/a%7Eb%5f",
        "/x%2fy",
    ];
    let normalised: Vec<Case> = paths
        .iter()
        .map(|p| {
            Case::raw(
                &format!("normalize_path {p}"),
                format!("GET {p} HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n"),
            )
            .listener("L4")
            .expect_status(200)
        })
        .collect();
    env.run_cases(&mut report, &normalised).await;
    env.compare_stats(
        &mut report,
        &[
            "http.normalized.downstream_rq_failed_path_normalization",
            "http.escaped_rejected.downstream_rq_failed_path_normalization",
            "http.escaped_redirected.downstream_rq_redirected_with_normalized_path",
        ],
    )
    .await;
    // HTTP/2 limits: Envoy's defaults and Ferry's beside them; explicit values compared.
    let (envoy_h2, ferry_h2) = tokio::join!(
        h2_settings(env.envoy.target(), "L1"),
        h2_settings(env.ferry.target(), "L1")
    );
    for (kind, obs, streams, window, conn) in [
        (ProxyKind::Envoy, &envoy_h2, "1024", "16777216", "25165824"),
        (ProxyKind::Ferry, &ferry_h2, "100", "65536", "1048576"),
    ] {
        let got = |k: &str| obs.get(k).map(String::as_str).unwrap_or("-").to_string();
        let ok = got("max_concurrent_streams") == streams
            && got("initial_window_size") == window
            && got("connection_window_update") == conn;
        report.check(
            kind,
            "HTTP/2 defaults",
            ok,
            &format!(
                "streams {streams}, stream window {window}, connection window {conn} (got {obs:?})"
            ),
        );
    }
    env.compare_with(&mut report, "explicit HTTP/2 limits", |t| async move {
        h2_settings(t, "L2").await
    })
    .await;
    report.finish();
}
