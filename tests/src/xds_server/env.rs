//! A differential xDS environment: shared echo upstreams, and for each of
//! Envoy and Ferry its own control plane ([`XdsServer`]) and its own ports.
//! Steps push the same resources to both control planes, wait for both
//! proxies, and compare (via [`Report`]) the requests each proxy sent, the
//! proxies' dynamic config and xDS stats, and traffic through the pushed
//! listeners.

use std::collections::BTreeMap;
use std::time::Duration;

use envoy_types::pb::google::protobuf::Any;

use super::admin::observe_state;
use super::side::start_side;
pub use super::side::XdsSide;
use super::{short, XdsRequest};
use crate::case::Case;
use crate::diff::{observe, Report};
use crate::echo::{self, Upstream};
use crate::normalise::Observation;
use crate::proxy::{self, ProxyKind};

/// Bound of every wait for a proxy.
pub const WAIT: Duration = Duration::from_secs(10);
/// A step is over when no request arrived for this long.
pub const QUIET: Duration = Duration::from_millis(300);

/// What a step observed on both proxies (Envoy first): the normalised
/// xDS requests of the step and the proxy state after it.
pub struct Step {
    pub xds: [Observation; 2],
    pub state: [Observation; 2],
}

/// Both sides, the upstreams and the report.
pub struct XdsEnv {
    pub upstreams: Vec<Upstream>,
    pub envoy: XdsSide,
    pub ferry: XdsSide,
    pub report: Report,
    /// Shared upstream port -> placeholder (for normalisation).
    upstream_names: BTreeMap<u16, String>,
    /// A control plane was stopped at some point.
    restarted: bool,
}

impl XdsEnv {
    /// Starts the echo `upstreams` (placeholder, name), then for each proxy
    /// a control plane and the proxy on `template` (its `{{XDS}}` is that
    /// control plane's port), without waiting for readiness. `listeners`
    /// are placeholder names that get a free port per proxy, for listeners
    /// pushed over xDS. `None` (after a SKIP line) without Envoy.
    pub async fn start(
        title: &str,
        template: &str,
        upstreams: &[(&str, &str)],
        listeners: &[&str],
    ) -> Option<XdsEnv> {
        proxy::envoy_or_skip()?;
        let mut ups = Vec::new();
        let mut shared = BTreeMap::new();
        let mut upstream_names = BTreeMap::new();
        for (placeholder, name) in upstreams {
            let up = echo::start_http(name).await;
            shared.insert(placeholder.to_string(), up.port().to_string());
            upstream_names.insert(up.port(), placeholder.to_string());
            ups.push(up);
        }
        let (envoy, ferry) = tokio::join!(
            start_side(ProxyKind::Envoy, template, &shared, listeners),
            start_side(ProxyKind::Ferry, template, &shared, listeners)
        );
        Some(XdsEnv {
            upstreams: ups,
            envoy,
            ferry,
            report: Report::new(title),
            upstream_names,
            restarted: false,
        })
    }

    pub fn upstream_port(&self, name: &str) -> u16 {
        self.upstreams
            .iter()
            .find(|u| u.name == name)
            .unwrap_or_else(|| panic!("no upstream named {name}"))
            .port()
    }

    pub fn sides(&self) -> [&XdsSide; 2] {
        [&self.envoy, &self.ferry]
    }

    /// Pushes the same resources (built from each side's ports by `build`)
    /// to both control planes. Returns the version.
    pub fn set<F>(&self, type_url: &str, build: F) -> String
    where
        F: Fn(&XdsSide) -> Vec<(String, Any)>,
    {
        let v = self.envoy.xds.set(type_url, build(&self.envoy));
        let w = self.ferry.xds.set(type_url, build(&self.ferry));
        assert_eq!(v, w, "control planes out of step");
        v
    }

    /// Fails the test now: the failure, everything recorded so far, and
    /// both xDS logs.
    pub fn abort(&mut self, failure: String) -> ! {
        for side in [&self.envoy, &self.ferry] {
            self.report.note(format!(
                "{} xDS log:\n{}{} stderr (tail):\n{}",
                side.kind,
                side.xds.dump(),
                side.kind,
                tail(&side.proxy.stderr(), 30)
            ));
        }
        self.report.fail(failure);
        std::mem::take(&mut self.report).finish();
        unreachable!("Report::finish panics on failures")
    }

    /// Waits on both sides for `what`; a timeout aborts the test.
    pub async fn wait_both<F>(&mut self, what: &str, pred: F)
    where
        F: Fn(&[XdsRequest]) -> bool + Copy,
    {
        let (e, f) = tokio::join!(
            self.envoy.xds.wait_for(what, WAIT, pred),
            self.ferry.xds.wait_for(what, WAIT, pred)
        );
        for (kind, r) in [(ProxyKind::Envoy, e), (ProxyKind::Ferry, f)] {
            if let Err(msg) = r {
                self.abort(format!("{kind}: {msg}"));
            }
        }
    }

    /// Waits for both proxies to ACK `type_url` at `version`.
    pub async fn wait_ack(&mut self, type_url: &str, version: &str) {
        let what = format!("the ACK of {} version {version:?}", short(type_url));
        self.wait_both(&what, |log: &[XdsRequest]| {
            log.iter().any(|r| r.answers(type_url, version, false))
        })
        .await;
    }

    /// Waits for both proxies to NACK `type_url` at `version`.
    pub async fn wait_nack(&mut self, type_url: &str, version: &str) {
        let what = format!("the NACK of {} version {version:?}", short(type_url));
        self.wait_both(&what, |log: &[XdsRequest]| {
            log.iter().any(|r| r.answers(type_url, version, true))
        })
        .await;
    }

    /// Waits until both proxies became ready (`/ready` 200).
    pub async fn wait_ready(&mut self) {
        let (e, f) = tokio::join!(
            self.envoy.proxy.try_wait_ready(),
            self.ferry.proxy.try_wait_ready()
        );
        for r in [e, f] {
            if let Err(msg) = r {
                self.abort(msg);
            }
        }
    }

    /// Ends a step: waits until both control planes are quiet, then
    /// compares the requests received during the step (per type URL) and
    /// the proxies' dynamic state (config dump and xDS stats).
    pub async fn step(&mut self, name: &str) -> Step {
        self.step_with(name, &[]).await
    }

    /// Like [`XdsEnv::step`], with declared differences: `(field prefix,
    /// reason)` pairs excluded from both comparisons.
    pub async fn step_with(&mut self, name: &str, differs: &[(&str, &str)]) -> Step {
        tokio::join!(
            self.envoy.xds.settle(QUIET, WAIT),
            self.ferry.xds.settle(QUIET, WAIT)
        );
        let case = |what: &str| {
            differs
                .iter()
                .fold(Case::get(&format!("{name}: {what}"), "/"), |c, (f, r)| {
                    c.differs_field(f, r)
                })
        };
        let xds = [self.envoy.observe_xds(), self.ferry.observe_xds()];
        self.report
            .compare_case(&case("xDS requests"), &xds[0], &xds[1]);
        let state = self.observe_states().await;
        self.report
            .compare_case(&case("proxy state"), &state[0], &state[1]);
        Step { xds, state }
    }

    /// Both proxies' state ([`observe_state`]), Envoy first. Once a
    /// control plane was stopped, the number of failed reconnection
    /// attempts depends on timing: `*.update_attempt` is then left out and
    /// `*.update_failure` only says whether it is 0.
    pub async fn observe_states(&self) -> [Observation; 2] {
        let (te, tf) = (self.envoy.target(), self.ferry.target());
        let (mut e, mut f) = tokio::join!(
            observe_state(&te, &self.upstream_names),
            observe_state(&tf, &self.upstream_names)
        );
        if self.restarted {
            for obs in [&mut e, &mut f] {
                obs.retain(|k, _| !k.ends_with(".update_attempt"));
                for (k, v) in obs.iter_mut() {
                    if k.ends_with(".update_failure") && v != "0" {
                        *v = "<not 0: reconnection attempts>".to_string();
                    }
                }
            }
        }
        [e, f]
    }

    /// Stops both control planes (see [`XdsServer::stop`]).
    pub fn stop_control_planes(&mut self) {
        self.restarted = true;
        self.envoy.xds.stop();
        self.ferry.xds.stop();
    }

    /// Restarts both control planes on their ports.
    pub async fn restart_control_planes(&mut self) {
        self.restarted = true;
        self.envoy.xds.restart().await;
        self.ferry.xds.restart().await;
    }

    /// Polls both proxies' state until `pred` holds on each; a timeout
    /// aborts the test.
    pub async fn wait_state<F>(&mut self, what: &str, pred: F)
    where
        F: Fn(&Observation) -> bool,
    {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let states = self.observe_states().await;
            let pending: Vec<ProxyKind> = [ProxyKind::Envoy, ProxyKind::Ferry]
                .into_iter()
                .zip(&states)
                .filter(|(_, s)| !pred(s))
                .map(|(k, _)| k)
                .collect();
            if pending.is_empty() {
                return;
            }
            if std::time::Instant::now() > deadline {
                self.abort(format!(
                    "{pending:?}: timed out after {WAIT:?} waiting for {what}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A Ferry-only expectation (where Ferry deliberately does better than
    /// Envoy); skipped with a note when FERRY_BIN is the Envoy binary.
    pub fn check_ferry(&mut self, what: &str, ok: bool) {
        if proxy::ferry_is_envoy() {
            self.report.note(format!(
                "FERRY_BIN is Envoy; Ferry-only check skipped: {what}"
            ));
        } else if !ok {
            self.report.fail(format!("ferry: {what}"));
        }
    }

    /// Runs traffic cases against both proxies and compares.
    /// Returns the observations (Envoy first) for extra checks.
    pub async fn run_cases(&mut self, cases: &[Case]) -> Vec<[Observation; 2]> {
        let mut out = Vec::new();
        for case in cases {
            let e = observe(&self.envoy.proxy, case).await;
            let f = observe(&self.ferry.proxy, case).await;
            self.report.compare_case(case, &e, &f);
            out.push([e, f]);
        }
        out
    }

    /// Prints the notes and fails listing every mismatch.
    pub fn finish(self) {
        if std::env::var_os("FERRY_TESTS_DUMP").is_some() {
            for side in self.sides() {
                eprintln!("--- {} xDS log:\n{}", side.kind, side.xds.dump());
            }
        }
        self.report.finish();
    }
}

fn tail(s: &str, lines: usize) -> String {
    let all: Vec<&str> = s.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
