//! Safe by default, side by side with Envoy's defaults (the same bootstrap, which sets
//! neither): a client trickling its request headers is cut off after Ferry's 10 s request
//! headers timeout while Envoy keeps it; two Host headers get a 400 from Ferry while Envoy
//! merges them into `a,b` and forwards the request.

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
        Case::raw(
            "one Host header",
            "GET /one HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n",
        )
        .expect_status(200)
        .expect("upstream.header:host", "a.example"),
    ];
    env.run_cases(&mut report, &cases).await;
    report.finish();
}
