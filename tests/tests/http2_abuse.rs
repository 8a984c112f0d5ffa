//! Abusive HTTP/2 clients, side by side with Envoy's defaults (the same bootstrap as
//! `hardening.rs`): malformed requests, flow-control overflows, rapid resets and empty DATA
//! floods, each written frame by frame.

use ferry_tests::proxy::ProxyKind;
use ferry_tests::Setup;
use std::time::Duration;

/// What a side's answer to an abusive HTTP/2 client should look like.
enum Want {
    /// Envoy's default: the connection ends with no GOAWAY and nothing answered.
    Dropped,
    Exactly(&'static [&'static str]),
    /// A GOAWAY ENHANCE_YOUR_CALM whose last stream id is below the bound, then the close.
    CalmBelow(u32),
}

impl Want {
    fn met(&self, got: &[String]) -> bool {
        match self {
            Want::Dropped => got == ["closed"] || got == ["reset"],
            Want::Exactly(w) => got.iter().map(String::as_str).eq(w.iter().copied()),
            Want::CalmBelow(max) => {
                let last = got.first().and_then(|g| {
                    g.strip_prefix("GOAWAY(last ")?
                        .strip_suffix(", ENHANCE_YOUR_CALM)")?
                        .parse::<u32>()
                        .ok()
                });
                last.is_some_and(|l| l < *max) && got.len() == 2 && got[1] != "open"
            }
        }
    }
}

/// Abusive HTTP/2 clients, Envoy's defaults beside Ferry's: a malformed request resets only
/// its own stream (the next one is answered) where Envoy drops the connection; connection
/// errors get a GOAWAY with their code before the close; rapid resets and empty DATA floods
/// are cut off by GOAWAY ENHANCE_YOUR_CALM, rapid resets after about 20 streams (Envoy: 250),
/// with Envoy's counters moving on both sides.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_abuse_against_envoys() {
    use ferry_tests::h2raw::{self, frame, get, headers, rst_stream, WINDOW_UPDATE};
    let Some(env) = Setup::new("hardening-h2", include_str!("../configs/hardening.yaml"))
        .echo("UP_A", "a")
        .start()
        .await
    else {
        return;
    };
    let mut report = env.report();
    let next = headers(3, &get(&[]), true);
    let rapid: Vec<u8> = (0..300u32)
        .flat_map(|i| {
            let mut f = headers(2 * i + 1, &get(&[]), true);
            f.extend(rst_stream(2 * i + 1, 8));
            f
        })
        .collect();
    let mut empty = headers(1, &get(&[]), false);
    for _ in 0..20_000 {
        empty.extend(frame(0, 0, 1, &[]));
    }
    let reset_only = &["RST_STREAM(1, PROTOCOL_ERROR)", "HEADERS(3)", "open"];
    let cases: Vec<(&str, Vec<u8>, Want)> = vec![
        (
            "malformed request (connection-specific header)",
            [
                headers(1, &get(&[("connection", "keep-alive")]), true),
                next.clone(),
            ]
            .concat(),
            Want::Exactly(reset_only),
        ),
        (
            "malformed request (no :path)",
            [
                headers(
                    1,
                    &[(":method", "GET"), (":scheme", "http"), (":authority", "a")],
                    true,
                ),
                next.clone(),
            ]
            .concat(),
            Want::Exactly(reset_only),
        ),
        (
            "connection window overflow",
            [
                frame(WINDOW_UPDATE, 0, 0, &0x7fff_ffffu32.to_be_bytes()),
                headers(1, &get(&[]), true),
            ]
            .concat(),
            Want::Exactly(&["GOAWAY(last 0, FLOW_CONTROL_ERROR)", "closed"]),
        ),
        (
            "stream window overflow",
            [
                headers(1, &get(&[]), false),
                frame(WINDOW_UPDATE, 0, 1, &0x7fff_ffffu32.to_be_bytes()),
                frame(WINDOW_UPDATE, 0, 1, &0x7fff_ffffu32.to_be_bytes()),
                next.clone(),
            ]
            .concat(),
            Want::Exactly(&["RST_STREAM(1, FLOW_CONTROL_ERROR)", "HEADERS(3)", "open"]),
        ),
        ("rapid reset (300 streams)", rapid, Want::CalmBelow(100)),
        ("empty DATA frames flood", empty, Want::CalmBelow(2)),
    ];
    // Envoy closes after its 1 s delayed_close_timeout.
    let wait = Duration::from_millis(1500);
    for (name, frames, ferry_want) in &cases {
        let (e, f) = tokio::join!(
            h2raw::exchange(env.envoy.port("L1"), frames, wait),
            h2raw::exchange(env.ferry.port("L1"), frames, wait)
        );
        report.check(
            ProxyKind::Envoy,
            name,
            Want::Dropped.met(&e),
            &format!("dropped without GOAWAY (got {e:?})"),
        );
        report.check(
            ProxyKind::Ferry,
            name,
            ferry_want.met(&f),
            &format!("got {f:?}"),
        );
    }
    // Both cut the rapid resets off once and count it; Envoy only after 250 streams.
    env.compare_stats(
        &mut report,
        &[
            "http.plain.downstream_rq_too_many_premature_resets",
            "http2.inbound_empty_frames_flood",
        ],
    )
    .await;
    for (kind, p, range) in [
        (ProxyKind::Envoy, &env.envoy, 250..1000),
        (ProxyKind::Ferry, &env.ferry, 1..100),
    ] {
        let resets = ferry_tests::conn::stat(p.admin_port(), "http2.rx_reset").await;
        let n = resets.parse::<u64>().unwrap_or(0);
        report.check(
            kind,
            "streams reset before the cut-off",
            range.contains(&n),
            &format!("http2.rx_reset {resets}"),
        );
    }
    let messaging =
        ferry_tests::conn::stat(env.ferry.admin_port(), "http2.rx_messaging_error").await;
    report.check(
        ProxyKind::Ferry,
        "malformed requests counted",
        messaging == "2",
        &format!("http2.rx_messaging_error 2 (got {messaging})"),
    );
    report.finish();
}
