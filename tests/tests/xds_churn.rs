//! xDS churn under load: while keep-alive clients (HTTP/1.1 and h2c) send
//! requests through an xDS-configured listener, 200 consecutive pushes
//! (each ACKed before the next) must lose no request and leave no
//! connection stuck. Run on Envoy and on Ferry, each with its own control
//! plane (`XdsEnv`), with the same assertions for both.
//!
//! The pushes cycle through four kinds, each a real change every time
//! (cycle `c = i / 4`, "even" meaning `c` is even):
//! 0. EDS: `cluster_a` = {a, a2} (even) / {a} (odd); `cluster_b` = {b};
//! 1. CDS: `cluster_b`'s `connect_timeout` 2 s (even) / 1 s (odd);
//! 2. RDS: `/` -> `cluster_b` (even) / `cluster_a` (odd);
//! 3. LDS: listener `l1` (same address) with HCM `stat_prefix`
//!    `ingress2` (even) / `ingress` (odd).
//!
//! So traffic goes to {a, a2}, b, {a} in turn, cluster_b is re-created
//! while it serves (odd cycles) and while it does not (even cycles), and
//! every LDS update replaces the filter chain while connections use it.

#[path = "xds_churn/load.rs"]
mod load;

use std::cell::Cell;
use std::time::{Duration, Instant};

use envoy_types::pb::google::protobuf::{Any, Duration as PbDuration};
use ferry_tests::client::{self, HttpRequest};
use ferry_tests::xds_server::resources::{
    cla, eds_cluster, eds_cluster_msg, listener_http, raw, route_config, Routes,
};
use ferry_tests::xds_server::scenario::{initial_push, ROUTES};
use ferry_tests::xds_server::{
    XdsEnv, XdsRequest, XdsServer, XdsSide, CLUSTER, ENDPOINT, LISTENER, ROUTE, WAIT,
};
use ferry_tests::ProxyKind;
use load::{Load, Report};

const TEMPLATE: &str = include_str!("../configs/xds_ads.yaml");
const UPSTREAMS: &[(&str, &str)] = &[("UP_A", "a"), ("UP_B", "b"), ("UP_A2", "a2")];
/// HCM stat prefixes the LDS pushes alternate between ("ingress" is the
/// initial push's).
const PREFIXES: [&str; 2] = ["ingress", "ingress2"];
const PUSHES: usize = 200;
/// Clients per proxy: HTTP/1.1 (one request in flight each) and h2c (two
/// streams in flight each).
const H1_CLIENTS: usize = 8;
const H2_CLIENTS: usize = 2;
/// The load stops by itself after this long.
const LOAD_LIMIT: Duration = Duration::from_secs(20);
/// Pause after each ACK before the next push, so that requests also flow
/// between pushes (back to back, the 200 pushes take ~1.5 s).
const PUSH_GAP: Duration = Duration::from_millis(10);
/// Bound of the whole push loop.
const PUSH_LIMIT: Duration = Duration::from_secs(60);
const MIN_REQUESTS: usize = 1000;
/// Load kept running after the last ACK (a drain or pool change it caused
/// has time to hit requests).
const TAIL: Duration = Duration::from_millis(300);
/// Bound for the connection gauges to settle.
const SETTLE: Duration = Duration::from_secs(2);

/// EDS: `cluster_a` on a (and a2 when `with_a2`), `cluster_b` on b.
fn endpoints(env: &XdsEnv, with_a2: bool) -> Vec<(String, Any)> {
    let (ua, ua2, ub) = (
        env.upstream_port("a"),
        env.upstream_port("a2"),
        env.upstream_port("b"),
    );
    let a: &[u16] = if with_a2 { &[ua, ua2] } else { &[ua] };
    vec![cla("cluster_a", a), cla("cluster_b", &[ub])]
}

/// `f` of a control plane's request log, read in place:
/// `XdsServer::requests` clones the whole log, each request's node
/// included, which grows costly over hundreds of pushes.
async fn on_log<T: Copy + Default>(xds: &XdsServer, f: impl Fn(&[XdsRequest]) -> T) -> T {
    let out = Cell::new(T::default());
    let read = |log: &[XdsRequest]| {
        out.set(f(log));
        true
    };
    let _ = xds.wait_for("", Duration::ZERO, read).await;
    out.get()
}

/// The CDS push: `cluster_b` with a new `connect_timeout`. A modified EDS
/// cluster warms until its endpoints arrive: Envoy asks for EDS again
/// (same names, shaped like an ACK, which this control plane does not
/// answer) and holds the CDS ACK until the cluster is warm. A control
/// plane must answer that request (xDS protocol, "Resource warming"); so
/// does this test: when a side asks for EDS after the CDS push, the same
/// endpoints are pushed again (to both sides). Returns whether they were.
async fn push_cds(env: &mut XdsEnv, secs: i64, with_a2: bool) -> bool {
    let marks = [
        on_log(&env.envoy.xds, <[_]>::len).await,
        on_log(&env.ferry.xds, <[_]>::len).await,
    ];
    let v = env.set(CLUSTER, |_| {
        let mut b = eds_cluster_msg("cluster_b");
        b.connect_timeout = Some(PbDuration {
            seconds: secs,
            nanos: 0,
        });
        vec![eds_cluster("cluster_a"), raw("cluster_b", &b)]
    });
    let acked = |r: &XdsRequest| r.answers(CLUSTER, &v, false);
    let answered = |mark: usize| {
        move |log: &[XdsRequest]| {
            log[mark..]
                .iter()
                .any(|r| acked(r) || r.type_url == ENDPOINT)
        }
    };
    let what = format!("the ACK of CDS {v:?} or an EDS request");
    let (e, f) = tokio::join!(
        env.envoy.xds.wait_for(&what, WAIT, answered(marks[0])),
        env.ferry.xds.wait_for(&what, WAIT, answered(marks[1]))
    );
    if let Err(msg) = e.and(f) {
        env.abort(msg);
    }
    let acked_by = |xds| on_log(xds, |log| log.iter().any(acked));
    let warming = !(acked_by(&env.envoy.xds).await && acked_by(&env.ferry.xds).await);
    if warming {
        let eds = endpoints(env, with_a2);
        let w = env.set(ENDPOINT, |_| eds.clone());
        env.wait_ack(ENDPOINT, &w).await;
    }
    env.wait_ack(CLUSTER, &v).await;
    warming
}

/// Push number `i` (see the module doc), waiting for both proxies' ACK.
/// Returns whether the endpoints had to be pushed again (see
/// [`push_cds`]).
async fn push(env: &mut XdsEnv, i: usize) -> bool {
    let even = (i / 4).is_multiple_of(2);
    let (type_url, version) = match i % 4 {
        0 => {
            let eds = endpoints(env, even);
            (ENDPOINT, env.set(ENDPOINT, |_| eds.clone()))
        }
        1 => return push_cds(env, if even { 2 } else { 1 }, even).await,
        2 => {
            let cluster = if even { "cluster_b" } else { "cluster_a" };
            let rc = route_config(ROUTES, &["*"], &[("/", cluster)]);
            (ROUTE, env.set(ROUTE, |_| vec![rc.clone()]))
        }
        _ => {
            let prefix = PREFIXES[usize::from(even)];
            let v = env.set(LISTENER, |s: &XdsSide| {
                let routes = Routes::Rds(ROUTES.into());
                vec![listener_http("l1", s.port("L1"), routes, prefix)]
            });
            (LISTENER, v)
        }
    };
    env.wait_ack(type_url, &version).await;
    false
}

/// The upstream serving `/` after all the pushes.
fn final_upstream() -> &'static str {
    let last_cycle_even = ((PUSHES - 1) / 4).is_multiple_of(2);
    if last_cycle_even {
        "b"
    } else {
        "a"
    }
}

/// HCM gauges summed over [`PREFIXES`] (connections opened before an LDS
/// update keep counting under the prefix they were accepted with), and the
/// listener's own gauge: (rq_active, http cx_active, listener cx_active).
async fn active(side: &XdsSide) -> (u64, u64, u64) {
    let text = client::admin_get(side.proxy.admin_port(), "/stats")
        .await
        .map(|r| r.text())
        .unwrap_or_default();
    let listener = format!(
        "listener.127.0.0.1_{}.downstream_cx_active",
        side.port("L1")
    );
    let (mut rq, mut cx, mut lcx) = (0, 0, 0);
    for (name, value) in text.lines().filter_map(|l| l.split_once(": ")) {
        let value: u64 = value.trim().parse().unwrap_or(0);
        for p in PREFIXES {
            if name == format!("http.{p}.downstream_rq_active") {
                rq += value;
            } else if name == format!("http.{p}.downstream_cx_active") {
                cx += value;
            }
        }
        if name == listener {
            lcx += value;
        }
    }
    (rq, cx, lcx)
}

/// Polls the gauges until no request is active and both connection gauges
/// equal the client connections still open (re-counted on each poll), for
/// at most [`SETTLE`]. Returns the last (gauges, open) seen and whether
/// they matched.
async fn settle(side: &XdsSide, rep: &Report) -> (bool, String) {
    let deadline = Instant::now() + SETTLE;
    loop {
        let open = rep.open_connections() as u64;
        let (rq, cx, lcx) = active(side).await;
        let ok = rq == 0 && cx == open && lcx == open;
        let seen = format!(
            "downstream_rq_active {rq}, http downstream_cx_active {cx}, \
             listener downstream_cx_active {lcx}, client connections open {open}"
        );
        if ok || Instant::now() > deadline {
            return (ok, seen);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Checks one proxy's load report and connection gauges, then closes the
/// clients' connections and checks the gauges fall to 0, and that the
/// proxy still answers a fresh request.
async fn check_side(env: &mut XdsEnv, kind: ProxyKind, mut rep: Report) {
    let side = match kind {
        ProxyKind::Envoy => &env.envoy,
        ProxyKind::Ferry => &env.ferry,
    };
    let upstreams = ["a", "a2", "b"];
    let per_upstream: Vec<String> = upstreams
        .iter()
        .map(|u| format!("{u}: {}", rep.served_by(u)))
        .collect();
    eprintln!(
        "{kind}: {}; served by {}",
        rep.summary(),
        per_upstream.join(", ")
    );
    for f in &rep.failures {
        eprintln!("{kind}: {f}");
    }
    let (open_at_stop, conns) = (rep.open_connections(), rep.conns.len());
    let (settled, seen) = settle(side, &rep).await;
    eprintln!(
        "{kind}: after the load stopped ({open_at_stop}/{conns} client connections open): {seen}"
    );
    rep.conns.clear();
    let (closed, seen_closed) = settle(side, &rep).await;
    eprintln!("{kind}: after the clients closed: {seen_closed}");
    let fresh = client::send(side.port("L1"), &HttpRequest::get("/")).await;
    let fresh = match fresh {
        Ok(r) => format!(
            "{} from {}",
            r.status,
            r.header("x-upstream").unwrap_or("-")
        ),
        Err(e) => format!("error: {e}"),
    };

    let r = &mut env.report;
    let lost = rep.lost();
    let bounce = |f: &&String| f.contains("unsent: ") || f.contains("refused by a GOAWAY");
    let failures = rep.failures.iter().filter(|f| !bounce(f)).take(5);
    let failures: Vec<&str> = failures.map(String::as_str).collect();
    let failures = failures.join("; ");
    let what = format!("every request answered 200 by an echo upstream; {lost} not: {failures}");
    if kind == ProxyKind::Envoy && lost > 0 {
        // Envoy drains every connection of the old chain on each LDS update; now and then
        // (about one run in ten with other tests beside it) a request on a draining
        // connection gets no answer before the client gives up. That is the reference's
        // behaviour, not Ferry's to match: reported, not failed. Ferry must lose none.
        r.note(format!("{kind}: {what}"));
    } else {
        r.check(kind, "churn", lost == 0, &what);
    }
    let n = rep.requests();
    let what = format!("at least {MIN_REQUESTS} requests under churn, got {n}");
    r.check(kind, "churn", n >= MIN_REQUESTS, &what);
    for u in upstreams {
        // Each configuration took effect under load.
        let what = format!("some requests served by {u}");
        r.check(kind, "churn", rep.served_by(u) > 0, &what);
    }
    let what = format!("gauges match the open client connections: {seen}");
    r.check(kind, "after load", settled, &what);
    let what = format!("gauges fall to 0 once the clients close: {seen_closed}");
    r.check(kind, "after close", closed, &what);
    let wanted = format!("200 from {}", final_upstream());
    let what = format!("a fresh GET / answers {wanted}, got {fresh}");
    r.check(kind, "fresh request", fresh == wanted, &what);
    // Some requests never reach the proxy's routing: an HTTP/1.1 or h2
    // client hands a request back unsent when its connection closed just
    // before it was written (then sends it on a new connection), and an h2
    // stream above the last stream id of a GOAWAY is refused (RFC 9113,
    // 6.8: not processed, safe to retry). Neither is lost by the proxy, but
    // both are a cost of closing connections under load. Envoy drains every
    // downstream connection of the old filter chain on each LDS update
    // (`downstream_cx_drain_close`: all 10 per update, ~500 reconnections
    // per run). HTTP/1.1 gets `Connection: close` on a response, which the
    // client sees in time. h2 gets a GOAWAY, and an h2 client that has just
    // read its two responses often opens its next two streams before it
    // has processed the GOAWAY: they come back unsent (2 to 10 per run
    // here) or, now and then, refused by the final GOAWAY (0 or 1 per run).
    // Envoy's count is recorded; Ferry, which must do at least as well, is
    // held to none (it keeps its connections).
    let bounced = rep.bounced();
    let closes = rep.connects.saturating_sub(H1_CLIENTS + H2_CLIENTS);
    if kind == ProxyKind::Envoy {
        env.report.note(format!(
            "envoy: {bounced} request(s) handed back unsent or refused by a GOAWAY after an \
             LDS drain (not processed; sent again on a new connection); {closes} reconnection(s)"
        ));
    } else {
        let what = format!("no request unsent or refused by a closing connection, got {bounced}");
        env.check_ferry(&what, bounced == 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn xds_churn_under_load() {
    let started = Instant::now();
    let title = "xds_churn_under_load";
    let Some(mut env) = XdsEnv::start(title, TEMPLATE, UPSTREAMS, &["L1"]).await else {
        return;
    };
    initial_push(&mut env).await;

    let load_started = Instant::now();
    let start = |s: &XdsSide| Load::start(s.port("L1"), H1_CLIENTS, H2_CLIENTS, LOAD_LIMIT);
    let loads = [start(&env.envoy), start(&env.ferry)];
    // Pushing starts once traffic flows through both proxies.
    let deadline = Instant::now() + Duration::from_secs(5);
    while loads.iter().any(|l| l.ok_so_far() < 50) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let push_started = Instant::now();
    let mut slowest = [Duration::ZERO; 4];
    let mut rewarmed = 0;
    let pushes = async {
        for i in 0..PUSHES {
            let t = Instant::now();
            rewarmed += usize::from(push(&mut env, i).await);
            slowest[i % 4] = slowest[i % 4].max(t.elapsed());
            tokio::time::sleep(PUSH_GAP).await;
        }
    };
    if tokio::time::timeout(PUSH_LIMIT, pushes).await.is_err() {
        env.abort(format!("{PUSHES} pushes took more than {PUSH_LIMIT:?}"));
    }
    let push_time = push_started.elapsed();
    tokio::time::sleep(TAIL).await;
    let [envoy_load, ferry_load] = loads;
    let (envoy_rep, ferry_rep) = tokio::join!(envoy_load.stop(), ferry_load.stop());
    let load_time = load_started.elapsed();
    eprintln!(
        "{PUSHES} pushes ACKed by both proxies in {push_time:?} (slowest ACK: EDS {:?}, \
         CDS {:?}, RDS {:?}, LDS {:?}); endpoints pushed again for a warming cluster_b \
         {rewarmed} time(s); load ran {load_time:?}",
        slowest[0], slowest[1], slowest[2], slowest[3]
    );
    if load_time >= LOAD_LIMIT {
        env.report.fail(format!(
            "the load stopped (after {LOAD_LIMIT:?}) before the pushes ended"
        ));
    }

    check_side(&mut env, ProxyKind::Envoy, envoy_rep).await;
    check_side(&mut env, ProxyKind::Ferry, ferry_rep).await;
    eprintln!("{title}: {:?} in all", started.elapsed());
    env.finish();
}
