//! Checks that need no proxy: the load generator against the in-process upstream, the
//! summaries, and a report rendered from every metric.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt, Either, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use crate::bootstrap::{
    mtls_client_bootstrap, mtls_server_bootstrap, static_bootstrap, xds_bootstrap, Ports,
};
use crate::certs::{self, MeshCerts};
use crate::grpc;
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
    let c = tcpload::conn_rate(up.http, 2, Duration::from_millis(200), 1_000_000, None)
        .await
        .unwrap();
    assert!(c.connections > 0 && c.errors == 0, "{c:?}");
}

/// An h2c (or HTTP/1.1) server that answers by path, each answer but `/odd/ok` breaking one
/// condition of a successful gRPC call. Reads each request body before answering.
async fn odd_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        // Bounded: the test's runtime ends it; a handful of connections at most.
        for _ in 0..64 {
            let Ok((s, _)) = listener.accept().await else {
                return;
            };
            let service = service_fn(|req: http::Request<hyper::body::Incoming>| async move {
                let path = req.uri().path().to_string();
                let _ = req.into_body().collect().await;
                let reply = grpc::frame(grpc::REPLY);
                let status = |code| Some(grpc::status_map(code));
                let resp = match path.as_str() {
                    "/odd/plain" => {
                        return Ok::<_, Infallible>(http::Response::new(Either::Left(Full::new(
                            Bytes::from_static(SMALL_BODY),
                        ))))
                    }
                    "/odd/ok" => grpc::response(StatusCode::OK, reply, status(0)),
                    "/odd/http-503" => {
                        grpc::response(StatusCode::SERVICE_UNAVAILABLE, reply, status(0))
                    }
                    "/odd/no-trailers" => grpc::response(StatusCode::OK, reply, None),
                    "/odd/status-5" => grpc::response(StatusCode::OK, reply, status(5)),
                    "/odd/truncated" => {
                        grpc::response(StatusCode::OK, reply.slice(..reply.len() - 3), status(0))
                    }
                    _ => grpc::response(StatusCode::OK, Bytes::new(), None),
                };
                Ok(resp.map(Either::Right))
            });
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(s), service)
                    .await;
            });
        }
    });
    addr
}

#[test]
fn grpc_framing() {
    assert_eq!(grpc::unframe(&grpc::frame(b"abc")), Some(&b"abc"[..]));
    assert_eq!(grpc::unframe(&grpc::frame(b"")), Some(&b""[..]));
    let f = grpc::frame(b"abc");
    assert_eq!(grpc::unframe(&f[..f.len() - 1]), None, "truncated");
    assert_eq!(
        grpc::unframe(&[f.as_ref(), b"x"].concat()),
        None,
        "trailing bytes"
    );
    assert_eq!(
        grpc::unframe(&[&[1u8][..], &f[1..]].concat()),
        None,
        "compressed"
    );
    assert!(grpc::METHOD.starts_with(grpc::SERVICE));
}

#[tokio::test]
async fn grpc_unary_against_the_upstream_and_what_counts_as_an_error() {
    let up = Upstream::start().await.unwrap();
    let t = target(&up, Proto::Grpc, grpc::METHOD);
    let r = load::closed(&t, Duration::from_millis(200), 1_000_000)
        .await
        .unwrap();
    assert!(r.requests > 0 && r.errors == 0, "{r:?}");
    assert_eq!(r.bytes, r.requests * grpc::REPLY.len() as u64);

    // 1,000 calls/s for 0.3 s: about 300, latencies recorded.
    let r = load::open(&t, 1000.0, Duration::from_millis(300), 1_000_000)
        .await
        .unwrap();
    assert!((270..=310).contains(&r.requests) && r.errors == 0, "{r:?}");
    assert_eq!(r.hist.len(), r.requests);

    // A method the upstream does not serve: UNIMPLEMENTED (trailers-only), an error each.
    let wrong = target(&up, Proto::Grpc, "/ferry.bench.Bench/Nope");
    let r = load::closed(&wrong, Duration::from_secs(5), 12)
        .await
        .unwrap();
    assert_eq!((r.requests, r.errors), (0, 12), "wrong method");

    // Answers that break one condition each count as errors; the well-formed one does not.
    let odd = odd_server().await;
    for (path, ok) in [
        ("/odd/ok", true),
        ("/odd/plain", false),
        ("/odd/http-503", false),
        ("/odd/no-trailers", false),
        ("/odd/status-5", false),
        ("/odd/truncated", false),
        ("/odd/trailers-missing-and-no-message", false),
    ] {
        let t = HttpTarget {
            addr: odd,
            ..target(&up, Proto::Grpc, path)
        };
        let r = load::closed(&t, Duration::from_secs(5), 12).await.unwrap();
        let want = if ok { (12, 0) } else { (0, 12) };
        assert_eq!((r.requests, r.errors), want, "{path}");
    }
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
        grpc::SERVICE,
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
        for sc in [
            "http1",
            "mesh",
            "tcp",
            "conn",
            "mtls",
            "mtls-handshakes",
            "xds-scale-1000",
        ] {
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
        scenarios: [
            "http1",
            "mesh",
            "tcp",
            "conn",
            "mtls",
            "mtls-handshakes",
            "xds-scale-1000",
        ]
        .iter()
        .map(|s| (s.to_string(), String::new()))
        .collect(),
        notes: report::caveats(&samples),
        plot: None,
    };
    let md = report::markdown(&meta, &samples);
    assert!(md.contains("## Headline: ferry / envoy"));
    assert!(md.contains("| ferry/envoy |"));
    assert!(md.contains("| mtls-handshakes | mTLS handshakes (1 request each) (handshakes/s) |"));
    assert!(!md.contains("not yet measured"));
    let json = report::json(&meta, &samples);
    assert!(json["summary"].as_array().unwrap().len() > METRICS.len());
}

/// A tiny mTLS server with the mesh's server certificate: it requires a client certificate of
/// the mesh CA, answers each connection's request with an empty 200 and closes. Sends each
/// client's leaf certificate (DER) on the channel. Bounded: at most 10,000 connections.
async fn mtls_server(
    mesh: &MeshCerts,
) -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let provider = certs::provider();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        certs::roots(&mesh.ca).unwrap(),
        provider.clone(),
    )
    .build()
    .unwrap();
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            certs::certs(&mesh.server.cert).unwrap(),
            certs::key(&mesh.server.key).unwrap(),
        )
        .unwrap();
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(cfg));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (seen, peers) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        for _ in 0..10_000 {
            let Ok((s, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, seen) = (acceptor.clone(), seen.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(s).await else {
                    return;
                };
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65536 {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let peer = tls.get_ref().1.peer_certificates().map(|c| c[0].to_vec());
                let _ = seen.send(peer.unwrap_or_default());
                let _ = tls
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (addr, peers)
}

fn tls_to(mesh_ca: &str, me: &certs::Pem) -> tcpload::Tls {
    tcpload::Tls {
        connector: tokio_rustls::TlsConnector::from(certs::client_config(mesh_ca, me).unwrap()),
        name: rustls::pki_types::ServerName::try_from(certs::SNI).unwrap(),
    }
}

#[tokio::test]
async fn mtls_certificates_verify_and_the_handshake_loop_counts() {
    let mesh = MeshCerts::generate().unwrap();
    let (addr, mut peers) = mtls_server(&mesh).await;

    // One handshake by hand: ALPN http/1.1 out of Istio's list; the server got the client's
    // SPIFFE certificate.
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = tls_to(&mesh.ca, &mesh.client);
    let mut s = tls.connector.connect(tls.name.clone(), tcp).await.unwrap();
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    tokio::io::AsyncWriteExt::write_all(&mut s, b"GET / HTTP/1.1\r\n\r\n")
        .await
        .unwrap();
    let peer = peers.recv().await.unwrap();
    assert!(
        peer.windows(certs::CLIENT_ID.len())
            .any(|w| w == certs::CLIENT_ID.as_bytes()),
        "the client's certificate carries its SPIFFE URI"
    );
    drop(s);

    // The handshake loop: every connection a full handshake and a 200.
    let r = tcpload::conn_rate(addr, 2, Duration::from_millis(200), 1_000_000, Some(tls))
        .await
        .unwrap();
    assert!(r.connections > 0 && r.errors == 0, "{r:?}");

    // Certificates of another CA: refused (each side distrusts the other's chain).
    let rogue = MeshCerts::generate().unwrap();
    for t in [
        tls_to(&rogue.ca, &mesh.client),
        tls_to(&mesh.ca, &rogue.client),
    ] {
        let r = tcpload::conn_rate(addr, 1, Duration::from_secs(5), 3, Some(t))
            .await
            .unwrap();
        assert_eq!((r.connections, r.errors), (0, 3));
    }
}

#[tokio::test]
async fn mtls_bootstraps_name_the_certificates() {
    let up = Upstream::start().await.unwrap();
    let dir = std::env::temp_dir().join(format!("ferry-bench-test-mtls-{}", std::process::id()));
    let files = MeshCerts::generate().unwrap().write(&dir).unwrap();
    for (f, uri) in [
        (&files.client, certs::CLIENT_ID),
        (&files.server, certs::SERVER_ID),
    ] {
        let pem = std::fs::read_to_string(&f.cert).unwrap();
        let der = certs::certs(&pem).unwrap();
        assert_eq!(der.len(), 1);
        assert!(der[0].windows(uri.len()).any(|w| w == uri.as_bytes()));
        assert!(f.key.is_file() && f.ca.is_file());
    }
    let server: SocketAddr = "127.0.0.1:4003".parse().unwrap();
    let c = mtls_client_bootstrap(4001, 4002, server, &files.client);
    let s = mtls_server_bootstrap(4004, 4003, &up, &files.server);
    for (y, id) in [(&c, &files.client), (&s, &files.server)] {
        for path in [&id.cert, &id.key, &id.ca] {
            assert!(y.contains(&format!("{{ filename: \"{}\" }}", path.display())));
        }
        assert!(y.contains("tls_maximum_protocol_version: TLSv1_3"));
    }
    for needle in [
        "port_value: 4001",
        "port_value: 4002",
        "port_value: 4003",
        "UpstreamTlsContext",
        certs::SNI,
        "\"istio-http/1.1\", \"istio\", \"http/1.1\"",
        &format!("exact: \"{}\"", certs::SERVER_ID),
        "cluster: server",
    ] {
        assert!(c.contains(needle), "client: {needle}\n{c}");
    }
    for needle in [
        "port_value: 4003",
        "port_value: 4004",
        &format!("port_value: {}", up.http.port()),
        "DownstreamTlsContext",
        "require_client_certificate: true",
        "envoy.filters.listener.tls_inspector",
        "transport_protocol: tls",
        &format!("prefix: \"{}\"", certs::NAMESPACE_PREFIX),
        "cluster: upstream_h1",
    ] {
        assert!(s.contains(needle), "server: {needle}\n{s}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
