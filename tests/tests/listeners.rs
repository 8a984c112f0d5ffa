//! Listeners: `/drain_listeners` (plain, `?inboundonly`, `?graceful`) and a
//! listener on IPv6 loopback.

use std::net::{Ipv6Addr, SocketAddr};
use std::time::Duration;

use ferry_tests::client::{self, HttpRequest};
use ferry_tests::normalise::observe_http;
use ferry_tests::{conn, Case, Observation, Setup, Target};

const DRAIN: &str = include_str!("../configs/drain.yaml");

/// Listener placeholders of drain.yaml and their traffic direction.
const LISTENERS: [(&str, &str); 3] = [("L1", "INBOUND"), ("L2", "OUTBOUND"), ("L3", "unspecified")];

async fn probe_all(obs: &mut Observation, t: &Target, when: &str) {
    for (l, dir) in LISTENERS {
        obs.insert(
            format!("{when}: new connection to {l} ({dir})"),
            conn::probe(t.port(l)).await,
        );
    }
}

async fn admin_state(obs: &mut Observation, t: &Target, when: &str) {
    let ready = client::admin_get(t.admin_port(), "/ready").await;
    obs.insert(
        format!("{when}: /ready"),
        match ready {
            Ok(r) => format!("{} {:?}", r.status, r.text()),
            Err(e) => e,
        },
    );
    let info = conn::server_info(t.admin_port()).await;
    obs.insert(
        format!("{when}: server_info.state"),
        info["state"].to_string(),
    );
}

/// POSTs `/drain_listeners{query}` and observes the listeners and the
/// server state 200 ms later (and `after` later again, when given).
async fn drain(t: Target, query: &str, after: Option<Duration>) -> Observation {
    let mut obs = Observation::new();
    probe_all(&mut obs, &t, "0 before").await;
    let resp = client::admin_post(t.admin_port(), &format!("/drain_listeners{query}")).await;
    obs.insert(
        "1 POST".into(),
        match resp {
            Ok(r) => format!("{} {:?}", r.status, r.text()),
            Err(e) => e,
        },
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    probe_all(&mut obs, &t, "2 draining").await;
    admin_state(&mut obs, &t, "2 draining").await;
    if let Some(after) = after {
        tokio::time::sleep(after).await;
        probe_all(&mut obs, &t, "3 after drain time").await;
        admin_state(&mut obs, &t, "3 after drain time").await;
    }
    obs
}

fn expect_probes(mut case: Case, when: &str, outcomes: [&str; 3]) -> Case {
    for ((l, dir), want) in LISTENERS.iter().zip(outcomes) {
        case = case.expect(&format!("{when}: new connection to {l} ({dir})"), want);
    }
    case
}

async fn drain_case(title: &str, query: &str, args: &[&str], after: Option<Duration>) -> Case {
    let case = Case::get(title, "/");
    let Some(env) = Setup::new(title, DRAIN)
        .echo("UP_A", "a")
        .args(args)
        .start()
        .await
    else {
        return case;
    };
    let mut report = env.report();
    let case = expect_probes(case, "0 before", ["served 200"; 3]);
    let case = match (query, after) {
        ("", _) => expect_probes(case, "2 draining", ["refused"; 3]),
        ("?inboundonly", _) => {
            expect_probes(case, "2 draining", ["refused", "served 200", "served 200"])
        }
        (_, Some(_)) => {
            // Envoy keeps the server LIVE (and /ready 200) while draining.
            let c = expect_probes(case, "2 draining", ["served 200"; 3])
                .expect("2 draining: /ready", "200 \"LIVE\\n\"")
                .expect("2 draining: server_info.state", "\"LIVE\"");
            expect_probes(c, "3 after drain time", ["refused"; 3])
        }
        _ => case,
    };
    let (envoy, ferry) = tokio::join!(
        drain(env.envoy.target(), query, after),
        drain(env.ferry.target(), query, after),
    );
    report.compare_case(&case, &envoy, &ferry);
    report.finish();
    case
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_listeners_all() {
    drain_case("POST /drain_listeners", "", &[], None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_listeners_inbound_only() {
    drain_case(
        "POST /drain_listeners?inboundonly",
        "?inboundonly",
        &[],
        None,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_listeners_graceful() {
    let after = Some(Duration::from_millis(1500));
    let args = ["--drain-time-s", "1"];
    drain_case("POST /drain_listeners?graceful", "?graceful", &args, after).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_listener() {
    let Some(env) = Setup::new("ipv6_listener", include_str!("../configs/ipv6.yaml"))
        .echo_v6("UP_A", "a6")
        .start()
        .await
    else {
        return;
    };
    let mut report = env.report();
    let case = Case::get("GET over [::1] to a [::1] upstream", "/v6")
        .expect_status(200)
        .expect_upstream("a6")
        .expect("upstream.header:x-envoy-external-address", "::1");
    let mut obs = Vec::new();
    for t in [env.envoy.target(), env.ferry.target()] {
        let addr = SocketAddr::from((Ipv6Addr::LOCALHOST, t.port("L1")));
        let resp = client::send_to(addr, &HttpRequest::get("/v6")).await;
        obs.push(observe_http(&resp, &t.port_names()));
    }
    report.compare_case(&case, &obs[0], &obs[1]);
    report.finish();
}
