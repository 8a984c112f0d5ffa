//! The StatsD sink against Envoy: the same requests give the same counter increases, gauges
//! and histogram values over UDP, under the configured prefix.

use ferry_tests::client::{self, HttpRequest};
use ferry_tests::{echo, proxy};
use std::collections::BTreeMap;
use std::time::Duration;

/// What the datagrams say of `names`: counter increases summed, gauges seen, histogram values
/// counted per unit.
fn summarise(datagrams: &[String], names: &[&str]) -> Vec<String> {
    let mut out = BTreeMap::new();
    for d in datagrams {
        for line in d.lines() {
            let Some((name, rest)) = line.split_once(':') else {
                continue;
            };
            if !names.contains(&name) {
                continue;
            }
            let Some((value, unit)) = rest.split_once('|') else {
                continue;
            };
            let v: u64 = value.parse().unwrap_or(0);
            let e = out.entry(format!("{name} |{unit}")).or_insert(0u64);
            match unit {
                "c" => *e += v,
                _ => *e += 1,
            }
        }
    }
    out.into_iter()
        .map(|(k, v)| match k.ends_with("|g") {
            true => format!("{k} seen"),
            false => format!("{k} {v}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statsd_sink_against_envoy() {
    let up = echo::start_http("echo").await;
    let mut results = Vec::new();
    for (kind, bin) in proxy::kinds() {
        let udp = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind a UDP port");
        let vars = BTreeMap::from([
            ("UP".to_string(), up.port().to_string()),
            (
                "STATSD".to_string(),
                udp.local_addr().expect("addr").port().to_string(),
            ),
        ]);
        let px = proxy::start(
            kind,
            &bin,
            include_str!("../configs/statsd.yaml"),
            &vars,
            &[],
        )
        .await;
        for _ in 0..3 {
            let r = client::send(px.port("L1"), &HttpRequest::get("/")).await;
            assert!(r.is_ok_and(|r| r.status == 200), "{kind:?}");
        }
        // Two flushes and then some.
        let mut datagrams = Vec::new();
        let end = tokio::time::Instant::now() + Duration::from_millis(1600);
        let mut buf = vec![0u8; 65536];
        while let Ok(Ok(n)) = tokio::time::timeout_at(end, udp.recv(&mut buf)).await {
            datagrams.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        drop(px);
        let got = summarise(
            &datagrams,
            &[
                "mesh.http.l.downstream_rq_total",
                "mesh.http.l.downstream_rq_2xx",
                "mesh.http.l.downstream_cx_total",
                "mesh.cluster.echo.upstream_rq_total",
                "mesh.cluster.echo.upstream_rq_200",
                "mesh.http.l.downstream_cx_active",
                "mesh.cluster.echo.upstream_cx_active",
                "mesh.http.l.downstream_rq_time",
                "mesh.cluster.echo.upstream_rq_time",
            ],
        );
        if std::env::var_os("FERRY_TESTS_DUMP").is_some() {
            eprintln!("{kind:?}: {got:#?}");
        }
        results.push((kind, got));
    }
    let ferry = &results.last().expect("ferry ran").1;
    for want in [
        "mesh.http.l.downstream_rq_total |c 3",
        "mesh.cluster.echo.upstream_rq_200 |c 3",
        "mesh.http.l.downstream_cx_active |g seen",
        "mesh.http.l.downstream_rq_time |ms 3",
    ] {
        assert!(
            ferry.contains(&want.to_string()),
            "missing {want:?} in {ferry:#?}"
        );
    }
    ferry_tests::diff::assert_lines_equal(&results);
}
