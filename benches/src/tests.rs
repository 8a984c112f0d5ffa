//! Checks that need no proxy: the load generator against the in-process upstream, the
//! summaries, and a report rendered from every metric.

use std::time::{Duration, UNIX_EPOCH};

use crate::bootstrap::{static_bootstrap, xds_bootstrap, Ports};
use crate::load::{self, HttpTarget, Proto};
use crate::report::{self, fmt_num, Meta};
use crate::results::{derive_mesh_ratio, Sample, Summary, METRICS};
use crate::tcpload;
use crate::upstream::{Upstream, BIG_BODY_LEN, SMALL_BODY};

fn target(up: &Upstream, proto: Proto, path: &str) -> HttpTarget {
    HttpTarget {
        addr: up.http,
        proto,
        connections: 2,
        streams: 3,
        path: path.into(),
        hosts: vec!["bench.local".into()],
    }
}

#[tokio::test]
async fn closed_and_open_loops_against_the_upstream() {
    let up = Upstream::start().await.unwrap();
    let short = Duration::from_millis(200);
    let r = load::closed(&target(&up, Proto::H1, "/"), short, 1_000_000)
        .await
        .unwrap();
    assert!(r.requests > 0 && r.errors == 0);
    assert_eq!(r.bytes, r.requests * SMALL_BODY.len() as u64);

    let r = load::closed(&target(&up, Proto::H2, "/64k"), short, 1_000_000)
        .await
        .unwrap();
    assert!(r.requests > 0 && r.errors == 0);
    assert_eq!(r.bytes, r.requests * BIG_BODY_LEN as u64);

    // The count bound holds.
    let r = load::closed(&target(&up, Proto::H1, "/"), Duration::from_secs(5), 50)
        .await
        .unwrap();
    assert_eq!(r.requests, 50);

    // 1,000 req/s for 0.5 s: about 500 requests, latencies recorded.
    let r = load::open(
        &target(&up, Proto::H1, "/"),
        1000.0,
        Duration::from_millis(500),
        1_000_000,
    )
    .await
    .unwrap();
    assert!((450..=510).contains(&r.requests), "{}", r.requests);
    assert_eq!(r.hist.len(), r.requests);
}

#[tokio::test]
async fn tcp_echo_and_connection_rate() {
    let up = Upstream::start().await.unwrap();
    let t = tcpload::throughput(up.echo, 1, Duration::from_millis(200))
        .await
        .unwrap();
    assert!(t.bytes > 0 && t.gbit_per_s() > 0.0);
    let c = tcpload::conn_rate(up.http, 2, Duration::from_millis(200), 1_000_000)
        .await
        .unwrap();
    assert!(c.connections > 0 && c.errors == 0, "{c:?}");
}

#[test]
fn summaries_and_numbers() {
    let s = Summary::of(&[3.0, 1.0, 2.0, f64::NAN]).unwrap();
    assert_eq!((s.median, s.min, s.max, s.n), (2.0, 1.0, 3.0, 3));
    assert_eq!(Summary::of(&[1.0, 2.0]).unwrap().median, 1.5);
    assert!(Summary::of(&[]).is_none());
    assert_eq!(fmt_num(1234567.891, 1), "1,234,567.9");
    assert_eq!(fmt_num(999.0, 0), "999");
    let t = UNIX_EPOCH + Duration::from_secs(1_795_514_400); // 2026-11-24 10:00:00 UTC
    assert_eq!(report::utc(t).1, "2026-11-24T10-00-00Z");
}

#[tokio::test]
async fn bootstraps_name_what_the_scenarios_use() {
    let up = Upstream::start().await.unwrap();
    let ports = Ports {
        admin: 1,
        http: 2,
        tcp: 3,
    };
    let y = static_bootstrap(&ports, &up, 3);
    for needle in [
        "svc-2.mesh.local",
        "cluster: svc-2",
        "upstream_h2",
        "http2_protocol_options",
        "cluster: echo",
    ] {
        assert!(y.contains(needle), "{needle}");
    }
    let x = xds_bootstrap(1, up.http);
    assert!(
        x.contains("ads_config") && x.contains("cds_config") && x.contains("cluster_name: xds")
    );
}

#[test]
fn a_report_with_every_metric_renders() {
    let mut samples = Vec::new();
    for run in 1..=3 {
        for sc in ["http1", "mesh", "tcp", "conn", "xds-scale-1000"] {
            for target in ["envoy", "ferry", "direct"] {
                for (i, m) in METRICS.iter().enumerate() {
                    samples.push(Sample {
                        run,
                        scenario: sc.into(),
                        target: target.into(),
                        metric: m.key,
                        value: (i + run) as f64,
                    });
                }
            }
        }
    }
    samples.retain(|s| s.metric != "cpu_vs_http1");
    derive_mesh_ratio(&mut samples);
    assert!(samples
        .iter()
        .any(|s| s.metric == "cpu_vs_http1" && s.value == 1.0));
    let meta = Meta {
        started_utc: "now".into(),
        command: "ferry-bench".into(),
        machine: "test".into(),
        pinning: "none".into(),
        targets: vec![
            ("envoy".into(), "/bin/envoy".into(), "1".into()),
            ("ferry".into(), "/bin/ferry".into(), "2".into()),
            ("direct".into(), String::new(), String::new()),
        ],
        runs: 3,
        loadavg_start: String::new(),
        loadavg_end: String::new(),
        wall_s: 1.0,
        scenarios: ["http1", "mesh", "tcp", "conn", "xds-scale-1000"]
            .iter()
            .map(|s| (s.to_string(), String::new()))
            .collect(),
        notes: report::caveats(&samples),
        plot: None,
    };
    let md = report::markdown(&meta, &samples);
    assert!(md.contains("## Headline: ferry / envoy"));
    assert!(md.contains("| ferry/envoy |"));
    let json = report::json(&meta, &samples);
    assert!(json["summary"].as_array().unwrap().len() > METRICS.len());
}
