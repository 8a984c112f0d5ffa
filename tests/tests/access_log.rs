//! Access logs against Envoy: the same requests through both proxies, and the lines their file
//! loggers write compared one for one — Envoy's default format, Istio's text and JSON
//! formats, a filtered custom format with `omit_empty_values`, a typed JSON format with
//! literals, lists and nested objects, tcp_proxy logs (proxied and connect failure) and a
//! listener's log for a connection no filter chain takes. Times, ephemeral ports and
//! millisecond durations are normalised; everything else must match byte for byte.

use ferry_tests::client::{self, HttpRequest};
use ferry_tests::proxy::Proxy;
use ferry_tests::{Observation, Setup};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const FILES: &[(&str, usize)] = &[
    ("default.log", 7),
    ("istio.log", 7),
    ("istio.json", 7),
    ("custom.log", 4),
    ("mixed.json", 7),
    ("tcp.log", 2),
    ("listener.log", 1),
];

async fn traffic(p: &Proxy) {
    let l1 = p.port("L1");
    let req = |method: &str, path: &str, rid: &str| {
        let mut r = HttpRequest::get(path);
        r.method = method.to_string();
        r.headers = vec![
            ("user-agent".into(), "curl/test".into()),
            ("x-request-id".into(), rid.into()),
        ];
        r
    };
    let mut post = req("POST", "/big/9", "rid-post-1");
    post.body = b"fourteen bytes".to_vec();
    let mut logged = req("GET", "/big/3", "rid-hdr-1");
    logged.headers.push(("x-log".into(), "1".into()));
    let reqs = [
        req("GET", "/big/8?q=1", "rid-get-1"),
        post,
        req("GET", "/nothing", "rid-nr-1"),
        req("GET", "/fail", "rid-uf-1"),
        req("GET", "/direct", "rid-dr-1"),
        req("GET", "/retry", "rid-urx-1"),
        logged,
    ];
    for r in &reqs {
        if let Err(e) = client::send(l1, r).await {
            panic!("{} {}: {e}", p.kind, r.path);
        }
        // One line after the other, in request order, in every file.
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    // tcp_proxy: 13 bytes each way, then close.
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", p.port("L2")))
        .await
        .expect("connect L2");
    s.write_all(b"hello access\n").await.expect("write");
    let mut buf = [0u8; 13];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut buf))
        .await
        .expect("echo in time")
        .expect("echo");
    drop(s);
    tokio::time::sleep(Duration::from_millis(100)).await;
    // tcp_proxy to a dead port, and a listener with no chain for this connection: both close.
    for l in ["L3", "L4"] {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", p.port(l)))
            .await
            .expect("connect");
        let _ = s.write_all(b"x").await;
        let mut sink = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut sink)).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls until every file has its lines (the loggers flush every 100 ms here).
async fn read_logs(p: &Proxy) -> BTreeMap<&'static str, Vec<String>> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let logs: BTreeMap<&str, Vec<String>> = FILES
            .iter()
            .map(|(f, _)| {
                let text = std::fs::read_to_string(p.dir().join(f)).unwrap_or_default();
                (*f, text.lines().map(str::to_string).collect())
            })
            .collect();
        let complete = FILES.iter().all(|(f, n)| logs[f].len() >= *n);
        if complete || std::time::Instant::now() > deadline {
            return logs;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Times, ports and durations made comparable: ports named by the placeholder they fill,
/// others (ephemeral) as `EPH`; DURATION and the upstream service time as `D`.
fn normalise(file: &str, line: &str, ports: &BTreeMap<u16, String>) -> String {
    let ts = regex::Regex::new(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z").expect("regex");
    let mut s = ts.replace_all(line, "TIME").into_owned();
    let addr = regex::Regex::new(r"127\.0\.0\.1:(\d+)").expect("regex");
    s = addr
        .replace_all(&s, |c: &regex::Captures| {
            let port: u16 = c[1].parse().unwrap_or(0);
            format!(
                "127.0.0.1:{}",
                ports.get(&port).map_or("EPH", String::as_str)
            )
        })
        .into_owned();
    if file.ends_with(".json") {
        if let Ok(mut v) = serde_json::from_str::<serde_json::Value>(&s) {
            for k in ["duration", "upstream_service_time"] {
                if v.get(k).is_some_and(|d| !d.is_null()) {
                    v[k] = "D".into();
                }
            }
            if let Some(p) = v.pointer_mut("/obj/port") {
                let n = p.as_u64().unwrap_or(0) as u16;
                *p = ports.get(&n).map_or("EPH".into(), |s| s.as_str().into());
            }
            return v.to_string();
        }
        return s;
    }
    // The custom format's request duration is in milliseconds too.
    let rqd = regex::Regex::new(r"rqd=\d+").expect("regex");
    s = rqd.replace_all(&s, "rqd=D").into_owned();
    // `"REQUEST" CODE FLAGS [DETAILS TERM "FAIL"] RX TX DURATION SERVICE_TIME ...`
    let fields = match file {
        "default.log" => r#"^(\[TIME\] "[^"]*" \S+ \S+ \S+ \S+) \S+ \S+ "#,
        "istio.log" | "tcp.log" => {
            r#"^(\[TIME\] "[^"]*" \S+ \S+ \S+ \S+ "[^"]*" \S+ \S+) \S+ \S+ "#
        }
        _ => return s,
    };
    let re = regex::Regex::new(fields).expect("regex");
    if !re.is_match(&s) {
        // tcp.log also holds a default-format line (the dead port's).
        let d =
            regex::Regex::new(r#"^(\[TIME\] "[^"]*" \S+ \S+ \S+ \S+) \S+ \S+ "#).expect("regex");
        return d.replace(&s, "$1 D D ").into_owned();
    }
    re.replace(&s, "$1 D D ").into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_logs() {
    let Some(env) = Setup::new("access_log", include_str!("../configs/access_log.yaml"))
        .echo("UP", "up")
        .refusing("DEAD")
        .tcp_echo("ECHO", "echo")
        .args(&["--file-flush-interval-msec", "100"])
        .start()
        .await
    else {
        return;
    };
    let mut report = env.report();
    let mut seen = Vec::new();
    for p in env.both() {
        traffic(p).await;
        let mut ports: BTreeMap<u16, String> =
            p.ports.iter().map(|(n, port)| (*port, n.clone())).collect();
        for u in &env.upstreams {
            ports.insert(u.port(), u.name.to_uppercase());
        }
        let logs = read_logs(p).await;
        seen.push(
            logs.into_iter()
                .map(|(f, lines)| {
                    let norm: Vec<String> = lines.iter().map(|l| normalise(f, l, &ports)).collect();
                    (f, norm)
                })
                .collect::<BTreeMap<_, _>>(),
        );
    }
    let (envoy, ferry) = (&seen[0], &seen[1]);
    for (file, want) in FILES {
        let mut e = Observation::new();
        let mut f = Observation::new();
        e.insert("lines".into(), envoy[file].len().to_string());
        f.insert("lines".into(), ferry[file].len().to_string());
        for (i, l) in envoy[file].iter().enumerate() {
            e.insert(format!("line {i}"), l.clone());
        }
        for (i, l) in ferry[file].iter().enumerate() {
            f.insert(format!("line {i}"), l.clone());
        }
        report.check(
            ferry_tests::proxy::ProxyKind::Envoy,
            file,
            envoy[file].len() == *want,
            &format!("{want} lines in {file}"),
        );
        report.compare(file, &e, &f);
    }
    report.finish();
}
