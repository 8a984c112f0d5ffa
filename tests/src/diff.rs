//! Running cases against a proxy and comparing observations. All
//! mismatches are collected in a [`Report`] that fails once, at the end,
//! listing every case, field and the two values.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::case::{Case, Expect, Payload};
use crate::client;
use crate::normalise::{observe_http, observe_raw, Observation};
use crate::proxy::{Proxy, ProxyKind, Target};

/// How long the raw client waits for more bytes before giving up.
pub const RAW_IDLE: Duration = Duration::from_secs(2);

/// Port number -> placeholder name, for one proxy instance.
pub fn port_names(proxy: &Proxy) -> BTreeMap<u16, String> {
    proxy.ports.iter().map(|(n, p)| (*p, n.clone())).collect()
}

/// Port number -> placeholder name, for a [`Target`].
pub fn port_names_of(target: &Target) -> BTreeMap<u16, String> {
    target.port_names()
}

/// Sends the case's request(s) to `proxy` and returns the observation.
pub async fn observe(proxy: &Proxy, case: &Case) -> Observation {
    let port = proxy.port(&case.listener);
    let names = port_names(proxy);
    if case.repeat > 1 {
        let mut statuses = Vec::new();
        let mut upstreams = Vec::new();
        for _ in 0..case.repeat {
            let obs = observe_once(port, case, &names).await;
            statuses.push(
                obs.get("status")
                    .or_else(|| obs.get("error"))
                    .cloned()
                    .unwrap_or_default(),
            );
            upstreams.push(obs.get("upstream").cloned().unwrap_or_else(|| "-".into()));
        }
        statuses.sort();
        upstreams.sort();
        let mut obs = Observation::new();
        obs.insert("statuses".into(), statuses.join(","));
        obs.insert("upstreams".into(), upstreams.join(","));
        return obs;
    }
    observe_once(port, case, &names).await
}

async fn observe_once(port: u16, case: &Case, names: &BTreeMap<u16, String>) -> Observation {
    match &case.payload {
        Payload::Http(req) => observe_http(&client::send(port, req).await, names),
        Payload::Raw(bytes) => observe_raw(&client::raw(port, bytes, RAW_IDLE).await, names),
    }
}

/// Debug aid (`FERRY_TESTS_DUMP=1`): prints Envoy's observation and the
/// fields where Ferry's differs.
pub fn dump(title: &str, case: &str, envoy: &Observation, ferry: &Observation) {
    let mut out = format!("--- {title} / {case}\n");
    for (k, v) in envoy {
        out.push_str(&format!("  {k} = {v:?}\n"));
    }
    for (k, v) in ferry {
        if envoy.get(k) != Some(v) {
            out.push_str(&format!("  ferry {k} = {v:?}\n"));
        }
    }
    for k in envoy.keys().filter(|k| !ferry.contains_key(*k)) {
        out.push_str(&format!("  ferry {k} absent\n"));
    }
    eprint!("{out}");
}

#[derive(Debug)]
struct Mismatch {
    case: String,
    field: String,
    envoy: String,
    ferry: String,
}

/// Collects mismatches and notes; [`Report::finish`] panics if there are
/// mismatches.
#[derive(Default)]
pub struct Report {
    title: String,
    mismatches: Vec<Mismatch>,
    failures: Vec<String>,
    notes: Vec<String>,
    compared: usize,
}

fn show(v: Option<&String>) -> String {
    match v {
        None => "<absent>".to_string(),
        Some(s) if s.len() > 600 => format!("{:?}... ({} bytes)", &s[..600], s.len()),
        Some(s) => format!("{s:?}"),
    }
}

/// For multi-line values: the lines only one side has.
fn line_diff(envoy: &str, ferry: &str) -> (String, String) {
    let e: BTreeSet<&str> = envoy.lines().collect();
    let f: BTreeSet<&str> = ferry.lines().collect();
    let only = |a: &BTreeSet<&str>, b: &BTreeSet<&str>| {
        let lines: Vec<String> = a.difference(b).map(|l| format!("{l:?}")).collect();
        if lines.is_empty() {
            "(no lines of its own; order or repetition differs)".to_string()
        } else {
            format!("lines only here: {}", lines.join(", "))
        }
    };
    (only(&e, &f), only(&f, &e))
}

impl Report {
    pub fn new(title: &str) -> Report {
        Report {
            title: title.to_string(),
            ..Report::default()
        }
    }

    /// Records that a field of a case differs between Envoy and Ferry.
    pub fn mismatch(
        &mut self,
        case: &str,
        field: &str,
        envoy: Option<&String>,
        ferry: Option<&String>,
    ) {
        let multi_line = |v: Option<&String>| v.is_some_and(|s| s.contains('\n'));
        let (envoy, ferry) = if multi_line(envoy) || multi_line(ferry) {
            line_diff(
                envoy.map_or("", String::as_str),
                ferry.map_or("", String::as_str),
            )
        } else {
            (show(envoy), show(ferry))
        };
        self.mismatches.push(Mismatch {
            case: case.to_string(),
            field: field.to_string(),
            envoy,
            ferry,
        });
    }

    /// Records a failed absolute expectation (holds for one proxy only).
    pub fn fail(&mut self, msg: String) {
        self.failures.push(msg);
    }

    pub fn note(&mut self, msg: String) {
        self.notes.push(msg);
    }

    /// Checks a boolean property observed on one proxy.
    pub fn check(&mut self, kind: ProxyKind, case: &str, ok: bool, what: &str) {
        if !ok {
            self.fail(format!("[{case}] {kind}: {what}"));
        }
    }

    /// Compares two observations field by field, honouring the case's
    /// declared differences, and checks the case's expectations on both.
    pub fn compare_case(&mut self, case: &Case, envoy: &Observation, ferry: &Observation) {
        self.compared += 1;
        if std::env::var_os("FERRY_TESTS_DUMP").is_some() {
            dump(&self.title, &case.name, envoy, ferry);
        }
        if let Some(reason) = &case.differs_all {
            self.note(format!("[{}] not compared: {reason}", case.name));
            return;
        }
        for (field, reason) in &case.differs {
            self.note(format!(
                "[{}] field {field}* not compared: {reason}",
                case.name
            ));
        }
        let fields: BTreeSet<&String> = envoy.keys().chain(ferry.keys()).collect();
        for field in fields {
            if case.skip_reason(field).is_some() {
                continue;
            }
            let (e, f) = (envoy.get(field), ferry.get(field));
            if e != f {
                self.mismatch(&case.name, field, e, f);
            }
        }
        for (kind, obs) in [(ProxyKind::Envoy, envoy), (ProxyKind::Ferry, ferry)] {
            for expect in &case.expects {
                self.check_expect(&case.name, kind, expect, obs, case);
            }
        }
        let plain = Case {
            differs: Vec::new(),
            ..case.clone()
        };
        for expect in &case.ferry_expects {
            self.check_expect(&case.name, ProxyKind::Ferry, expect, ferry, &plain);
        }
        for expect in &case.envoy_expects {
            self.check_expect(&case.name, ProxyKind::Envoy, expect, envoy, &plain);
        }
    }

    /// Compares two plain observations (custom, non-table checks).
    pub fn compare(&mut self, case: &str, envoy: &Observation, ferry: &Observation) {
        self.compare_case(&Case::get(case, "/"), envoy, ferry);
    }

    fn check_expect(
        &mut self,
        name: &str,
        kind: ProxyKind,
        expect: &Expect,
        obs: &Observation,
        case: &Case,
    ) {
        let (field, ok, wanted) = match expect {
            Expect::Eq(field, value) => (
                field,
                obs.get(field) == Some(value),
                format!("== {value:?}"),
            ),
            Expect::Contains(field, sub) => (
                field,
                obs.get(field).is_some_and(|v| v.contains(sub.as_str())),
                format!("contains {sub:?}"),
            ),
            Expect::Absent(field) => (field, !obs.contains_key(field), "absent".to_string()),
        };
        // A declared difference excuses Ferry, never Envoy.
        if kind == ProxyKind::Ferry && case.skip_reason(field).is_some() {
            return;
        }
        if !ok {
            self.fail(format!(
                "[{name}] {kind}: expected {field} {wanted}, got {}",
                show(obs.get(field))
            ));
        }
    }

    /// Prints the notes and panics listing every mismatch and failure.
    pub fn finish(self) {
        for note in &self.notes {
            eprintln!("NOTE {}: {note}", self.title);
        }
        if self.mismatches.is_empty() && self.failures.is_empty() {
            eprintln!(
                "{}: {} case(s) compared, all equal",
                self.title, self.compared
            );
            return;
        }
        let mut msg = format!(
            "{}: {} mismatch(es), {} failed expectation(s) over {} case(s)\n",
            self.title,
            self.mismatches.len(),
            self.failures.len(),
            self.compared
        );
        let mut last_case: Option<&str> = None;
        for m in &self.mismatches {
            if last_case != Some(m.case.as_str()) {
                msg.push_str(&format!("\n  case {:?}:\n", m.case));
                last_case = Some(m.case.as_str());
            }
            msg.push_str(&format!(
                "    field {}\n      envoy: {}\n      ferry: {}\n",
                m.field, m.envoy, m.ferry
            ));
        }
        if !self.failures.is_empty() {
            msg.push_str("\n  failed expectations:");
        }
        for f in &self.failures {
            msg.push_str(&format!("\n    {f}"));
        }
        panic!("{msg}");
    }
}

/// Asserts that Envoy's and Ferry's lines of observations are the same, line by line, when
/// both ran (`results` from [`crate::proxy::kinds`], Envoy first).
pub fn assert_lines_equal(results: &[(crate::ProxyKind, Vec<String>)]) {
    if let [(_, envoy), (_, ferry)] = results {
        let diffs: Vec<String> = envoy
            .iter()
            .zip(ferry)
            .filter(|(e, f)| e != f)
            .map(|(e, f)| format!("envoy: {e}\nferry: {f}"))
            .collect();
        assert!(
            diffs.is_empty() && envoy.len() == ferry.len(),
            "Envoy and Ferry differ:\n{}",
            diffs.join("\n")
        );
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    fn obs(pairs: &[(&str, &str)]) -> Observation {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    #[should_panic(expected = "2 mismatch(es)")]
    fn every_mismatch_is_collected_before_failing() {
        let mut r = Report::new("unit");
        let case = Case::get("c", "/");
        r.compare_case(
            &case,
            &obs(&[("status", "200")]),
            &obs(&[("status", "404")]),
        );
        r.compare_case(&case, &obs(&[("body", "a")]), &obs(&[]));
        r.finish();
    }

    #[test]
    fn declared_differences_are_not_compared() {
        let mut r = Report::new("unit");
        let case = Case::get("c", "/").differs_field("header:server", "reason");
        r.compare_case(
            &case,
            &obs(&[("header:server", "envoy")]),
            &obs(&[("header:server", "ferry")]),
        );
        let whole = Case::get("d", "/").differs("reason");
        r.compare_case(
            &whole,
            &obs(&[("status", "200")]),
            &obs(&[("status", "500")]),
        );
        r.finish();
    }

    #[test]
    #[should_panic(expected = "failed expectation")]
    fn expectations_apply_to_envoy_too() {
        let mut r = Report::new("unit");
        let case = Case::get("c", "/").expect_status(200);
        let same = obs(&[("status", "503")]);
        r.compare_case(&case, &same, &same);
        r.finish();
    }

    #[test]
    fn multi_line_values_show_only_differing_lines() {
        let (e, f) = line_diff("a\nb\nc", "a\nc\nd");
        assert_eq!(e, "lines only here: \"b\"");
        assert_eq!(f, "lines only here: \"d\"");
    }
}
