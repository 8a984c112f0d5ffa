//! Traffic capture end to end: a pod namespace and a peer namespace joined by a veth pair;
//! `ferry-iptables` captures the pod's traffic and Ferry, running in the pod as UID/GID 1337,
//! carries it — outbound through `virtualOutbound` (15001, `use_original_dst`) to a
//! passthrough ORIGINAL_DST cluster or to a `bind_to_port: false` HTTP listener, inbound through
//! `virtualInbound` (15006) to the application from 127.0.0.6 / ::6. Excluded ports and CIDRs
//! bypass Ferry; Ferry's own upstream connections are not captured again; `--clean` leaves the
//! namespace's rules as they were. REDIRECT and TPROXY inbound modes, IPv4 and IPv6.
//!
//! Needs root (network namespaces, iptables): CI runs as root; elsewhere the tests say why they
//! did not run.

use ferry_tests::client::{self, HttpRequest};
use ferry_tests::netns::{root_or_skip, Netns, PodPair};
use ferry_tests::proxy::{envoy_or_skip, ferry_bin};
use ferry_tests::sidecar::{ferry_iptables_bin, Sidecar};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

const TIMEOUT: Duration = Duration::from_secs(5);

/// A TCP server that, once the client has said hello (client first: an inbound sidecar's
/// protocol detection waits for the first bytes, as Envoy's does), tells what it saw
/// (`local=<addr> peer=<addr>`), then echoes.
async fn whoami_tcp(addr: SocketAddr) {
    let l = TcpListener::bind(addr)
        .await
        .unwrap_or_else(|e| panic!("bind {addr}: {e}"));
    loop {
        let Ok((s, peer)) = l.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let local = s.local_addr().map(|a| a.to_string()).unwrap_or_default();
            let mut r = BufReader::new(s);
            let mut hello = String::new();
            if r.read_line(&mut hello).await.is_err() {
                return;
            }
            let mut s = r.into_inner();
            let _ = s
                .write_all(format!("local={local} peer={peer}\n").as_bytes())
                .await;
            let mut buf = [0u8; 1024];
            while let Ok(n) = s.read(&mut buf).await {
                if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        });
    }
}

/// An HTTP/1.1 server answering 200 with `local=… peer=…` and the request head it received.
async fn whoami_http(addr: SocketAddr) {
    let l = TcpListener::bind(addr)
        .await
        .unwrap_or_else(|e| panic!("bind {addr}: {e}"));
    loop {
        let Ok((s, peer)) = l.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let local = s.local_addr().map(|a| a.to_string()).unwrap_or_default();
            let mut r = BufReader::new(s);
            loop {
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    match r.read_line(&mut line).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    if line == "\r\n" {
                        break;
                    }
                    head.push_str(&line);
                }
                let body = format!("local={local} peer={peer}\n{head}");
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\ncontent-type: text/plain\r\n\r\n{body}",
                    body.len()
                );
                if r.get_mut().write_all(resp.as_bytes()).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// Connects, reads the server's `local=… peer=…` line and checks the echo.
async fn tcp_whoami(addr: SocketAddr) -> Result<String, String> {
    let run = async {
        let mut s = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        s.write_all(b"hello\n").await.map_err(|e| e.to_string())?;
        let mut r = BufReader::new(s);
        let mut line = String::new();
        r.read_line(&mut line).await.map_err(|e| e.to_string())?;
        r.get_mut()
            .write_all(b"ping\n")
            .await
            .map_err(|e| e.to_string())?;
        let mut echo = String::new();
        r.read_line(&mut echo).await.map_err(|e| e.to_string())?;
        if echo != "ping\n" {
            return Err(format!("echo through {addr} gave {echo:?}"));
        }
        Ok(line.trim().to_string())
    };
    tokio::time::timeout(TIMEOUT, run)
        .await
        .map_err(|_| format!("{addr}: timed out"))?
}

fn field<'a>(line: &'a str, key: &str) -> &'a str {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or("")
}

fn peer_ip(line: &str) -> Option<IpAddr> {
    field(line, "peer")
        .parse::<SocketAddr>()
        .ok()
        .map(|a| a.ip())
}

/// Ferry's counters, read from its admin port inside the pod.
async fn stats() -> Stats {
    let text = client::admin_get(15000, "/stats")
        .await
        .map(|r| r.text())
        .unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(": ")?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

fn get(s: &Stats, k: &str) -> u64 {
    s.get(k).copied().unwrap_or(0)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Redirect,
    Tproxy,
}

/// The ruleset of both families, for comparing before and after `--clean`.
fn ruleset(pod: &Netns) -> String {
    let clean = |s: String| {
        s.lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| {
                // Packet/byte counters of built-in chains change as traffic flows.
                if l.starts_with(':') {
                    l.split(" [").next().unwrap_or(l).to_string()
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    format!(
        "{}\n--- v6\n{}\n--- rules\n{}",
        clean(pod.exec_ok(&["iptables-save"])),
        clean(pod.exec_ok(&["ip6tables-save"])),
        pod.exec_ok(&["ip", "rule", "show"]) + &pod.exec_ok(&["ip", "-6", "rule", "show"])
    )
}

/// Runs the capture scenario with `bin` as the sidecar and describes what happened, one line
/// per observation (the same lines for any correct Envoy-compatible sidecar).
fn observe(mode: Mode, bin: &Path) -> Vec<String> {
    let tag = if mode == Mode::Redirect { "rd" } else { "tp" };
    let pair = PodPair::create(tag);
    let (pod, peer) = (&pair.pod, &pair.peer);
    let at = |ip: IpAddr, port: u16| SocketAddr::new(ip, port);

    for ip in [PodPair::PEER4, PodPair::PEER6] {
        peer.serve(move || whoami_http(at(ip, 8080)));
    }
    for ip in [
        PodPair::PEER4,
        PodPair::PEER4_B,
        PodPair::PEER6,
        PodPair::PEER6_B,
    ] {
        peer.serve(move || whoami_tcp(at(ip, 9000)));
        peer.serve(move || whoami_tcp(at(ip, 9001)));
    }
    for ip in [PodPair::POD4, PodPair::POD6] {
        pod.serve(move || whoami_tcp(at(ip, 7000)));
        pod.serve(move || whoami_tcp(at(ip, 7001)));
    }

    let before = ruleset(pod);
    let mode_flag = if mode == Mode::Redirect {
        "REDIRECT"
    } else {
        "TPROXY"
    };
    let ipt = ferry_iptables_bin();
    let ipt = ipt.to_str().expect("utf-8 path");
    let capture_args = [
        ipt,
        "-p",
        "15001",
        "-z",
        "15006",
        "-u",
        "1337",
        "-g",
        "1337",
        "-m",
        mode_flag,
        "-i",
        "*",
        "-x",
        "10.77.0.3/32,fd00:77::3/128",
        "-b",
        "*",
        "-d",
        "15090,15021,15020,7001",
        "-o",
        "9001",
    ];
    pod.exec_ok(&capture_args);

    let template = include_str!("../configs/capture/sidecar.yaml");
    let transparent = if mode == Mode::Tproxy {
        "true"
    } else {
        "false"
    };
    let sidecar = Sidecar::start(pod, bin, &template.replace("{{TRANSPARENT}}", transparent));
    let ready = sidecar.wait_ready(pod);
    assert!(
        ready,
        "{} did not become ready:\n{}",
        bin.display(),
        sidecar.log()
    );

    let mut out = pod.block_on(|| async {
        let mut out = Vec::new();
        for (fam, peer_ip, peer_b, suffix) in [
            ("v4", PodPair::PEER4, PodPair::PEER4_B, "0.0.0.0_15001"),
            ("v6", PodPair::PEER6, PodPair::PEER6_B, "[__]_15001"),
        ] {
            let cx = |s: &Stats| get(s, &format!("listener.{suffix}.downstream_cx_total"));
            let pt = |s: &Stats| get(s, "cluster.PassthroughCluster.upstream_cx_total");
            let s0 = stats().await;
            // Captured TCP: through virtualOutbound's passthrough chain to the original
            // destination.
            let line = tcp_whoami(at(peer_ip, 9000)).await;
            let s1 = stats().await;
            out.push(format!("{fam} outbound tcp: {}", describe(&line)));
            out.push(format!(
                "{fam} outbound tcp: listener cx +{} passthrough cx +{}",
                cx(&s1) - cx(&s0),
                pt(&s1) - pt(&s0),
            ));
            // Excluded port and excluded CIDR: straight to the peer.
            let excluded_port = tcp_whoami(at(peer_ip, 9001)).await;
            let excluded_cidr = tcp_whoami(at(peer_b, 9000)).await;
            let s2 = stats().await;
            out.push(format!(
                "{fam} excluded: port {} cidr {} passthrough cx +{}",
                describe(&excluded_port),
                describe(&excluded_cidr),
                pt(&s2) - pt(&s1),
            ));
            // Captured HTTP: handed off to the bind_to_port: false listener of port 8080, which
            // routes it (its HCM adds x-request-id) to the original destination.
            let resp = client::send_to(at(peer_ip, 8080), &HttpRequest::get("/hello")).await;
            let s3 = stats().await;
            out.push(match resp {
                Ok(r) => format!(
                    "{fam} outbound http: {} {} x-request-id {}",
                    r.status,
                    describe(&Ok(r.text().lines().next().unwrap_or("").to_string())),
                    r.text().contains("x-request-id:"),
                ),
                Err(e) => format!("{fam} outbound http: {e}"),
            });
            let rq = |s: &Stats| get(s, "http.outbound_8080.downstream_rq_total");
            out.push(format!(
                "{fam} outbound http: rq +{} outbound listener cx +{} passthrough cx +{}",
                rq(&s3) - rq(&s2),
                cx(&s3) - cx(&s2),
                pt(&s3) - pt(&s2),
            ));
        }
        out
    });

    out.extend(peer.block_on(|| async {
        let mut out = Vec::new();
        for (fam, pod_ip) in [("v4", PodPair::POD4), ("v6", PodPair::POD6)] {
            out.push(format!(
                "{fam} inbound: {}",
                describe(&tcp_whoami(at(pod_ip, 7000)).await)
            ));
            out.push(format!(
                "{fam} inbound excluded: {}",
                describe(&tcp_whoami(at(pod_ip, 7001)).await)
            ));
        }
        out
    }));
    let s = pod.block_on(|| async { stats().await });
    out.push(format!(
        "inbound passthrough cx: v4 {} v6 {}",
        get(
            &s,
            "cluster.InboundPassthroughClusterIpv4.upstream_cx_total"
        ),
        get(
            &s,
            "cluster.InboundPassthroughClusterIpv6.upstream_cx_total"
        ),
    ));
    if std::env::var_os("FERRY_TESTS_DUMP").is_some() {
        eprintln!("{} log:\n{}", bin.display(), sidecar.log());
        for (k, v) in &s {
            if k.contains("Inbound") || k.contains("15006") {
                eprintln!("{k}: {v}");
            }
        }
    }
    drop(sidecar);

    let mut clean_args = capture_args.to_vec();
    clean_args.push("--clean");
    pod.exec_ok(&clean_args);
    let after = ruleset(pod);
    out.push(format!("--clean restores the rules: {}", after == before));
    if after != before {
        eprintln!("before:\n{before}\nafter:\n{after}");
    }
    out
}

type Stats = std::collections::BTreeMap<String, u64>;

/// A `local=… peer=…` line without the peer's (ephemeral) port; the peer namespace's
/// addresses read `peer-ns` (the kernel picks either of its two as the source).
fn describe(r: &Result<String, String>) -> String {
    match r {
        Ok(line) => format!(
            "local={} peer={}",
            field(line, "local"),
            match peer_ip(line) {
                Some(ip) if ip == PodPair::PEER4 || ip == PodPair::PEER4_B => "peer-ns".to_string(),
                Some(ip) if ip == PodPair::PEER6 || ip == PodPair::PEER6_B => "peer-ns".to_string(),
                Some(ip) => ip.to_string(),
                None => String::new(),
            }
        ),
        Err(e) => format!("error: {e}"),
    }
}

fn expected() -> Vec<String> {
    let mut v = Vec::new();
    for (fam, pod, peer, peer_b) in [
        ("v4", "10.77.0.1", "10.77.0.2:", "10.77.0.3:"),
        ("v6", "fd00:77::1", "[fd00:77::2]:", "[fd00:77::3]:"),
    ] {
        v.push(format!("{fam} outbound tcp: local={peer}9000 peer={pod}"));
        // Exactly one connection each: Ferry's own upstream connection is not captured again.
        v.push(format!(
            "{fam} outbound tcp: listener cx +1 passthrough cx +1"
        ));
        v.push(format!(
            "{fam} excluded: port local={peer}9001 peer={pod} cidr local={peer_b}9000 peer={pod} passthrough cx +0"
        ));
        v.push(format!(
            "{fam} outbound http: 200 local={peer}8080 peer={pod} x-request-id true"
        ));
        // The HTTP connection is handed off: counted on the 8080 listener, not on 15001.
        v.push(format!(
            "{fam} outbound http: rq +1 outbound listener cx +0 passthrough cx +1"
        ));
    }
    for (fam, local, src, peer) in [
        ("v4", "10.77.0.1:7000", "127.0.0.6", "peer-ns"),
        ("v6", "[fd00:77::1]:7000", "::6", "peer-ns"),
    ] {
        // The application sees its own address as the destination and the passthrough source
        // as the peer; an excluded inbound port sees the real peer.
        v.push(format!("{fam} inbound: local={local} peer={src}"));
        v.push(format!(
            "{fam} inbound excluded: local={} peer={peer}",
            local.replace(":7000", ":7001")
        ));
    }
    v.push("inbound passthrough cx: v4 1 v6 1".to_string());
    v.push("--clean restores the rules: true".to_string());
    v
}

fn capture(mode: Mode) {
    let test = format!("capture_{mode:?}").to_lowercase();
    if !root_or_skip(&test) {
        return;
    }
    let want = expected();
    let ferry = observe(mode, &ferry_bin());
    if let Some(envoy) = envoy_or_skip() {
        let envoy = observe(mode, &envoy);
        assert_eq!(envoy, want, "Envoy does not behave as this test expects");
    }
    assert_eq!(ferry, want);
}

#[test]
fn capture_redirect() {
    capture(Mode::Redirect);
}

#[test]
fn capture_tproxy() {
    capture(Mode::Tproxy);
}
