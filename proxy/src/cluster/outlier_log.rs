//! `cluster_manager.outlier_detection.event_log_path`: one JSON line per outlier ejection and
//! un-ejection, in Envoy's `OutlierDetectionEvent` shape (Istio points it at `/dev/stdout`).

use super::outlier_rules::Kind;
use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::{Mutex, OnceLock};

static LOG: OnceLock<Mutex<std::fs::File>> = OnceLock::new();

/// Opens the event log (appending); a path that cannot be opened is reported and ignored.
pub fn open(path: &str) {
    match std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
    {
        Ok(f) => {
            let _ = LOG.set(Mutex::new(f));
        }
        Err(e) => tracing::warn!("outlier detection event log {path}: {e}"),
    }
}

pub fn enabled() -> bool {
    LOG.get().is_some()
}

/// The numbers a success-rate or failure-percentage ejection was decided on.
#[derive(Debug, Clone, Copy)]
pub enum Detail {
    Consecutive,
    SuccessRate {
        host: u32,
        average: u32,
        threshold: u32,
    },
    FailurePercentage {
        host: u32,
    },
}

/// One event.
pub struct Event<'a> {
    pub kind: Kind,
    pub cluster: &'a str,
    pub host: std::net::SocketAddr,
    pub eject: bool,
    pub num_ejections: u32,
    pub enforced: bool,
    /// Seconds since this host's previous ejection or un-ejection, if it had one.
    pub since_last: Option<u64>,
    pub detail: Option<Detail>,
}

fn type_name(k: Kind) -> &'static str {
    match k {
        Kind::Consecutive5xx => "CONSECUTIVE_5XX",
        Kind::ConsecutiveGateway => "CONSECUTIVE_GATEWAY_FAILURE",
        Kind::ConsecutiveLocal => "CONSECUTIVE_LOCAL_ORIGIN_FAILURE",
        Kind::SuccessRate => "SUCCESS_RATE",
        Kind::LocalSuccessRate => "SUCCESS_RATE_LOCAL_ORIGIN",
        Kind::FailurePercentage => "FAILURE_PERCENTAGE",
        Kind::LocalFailurePercentage => "FAILURE_PERCENTAGE_LOCAL_ORIGIN",
    }
}

/// The line Envoy writes for `e` at `now`.
pub fn line(e: &Event<'_>, now: std::time::SystemTime) -> String {
    let mut ts = String::new();
    crate::clock::Civil::of(now).rfc3339_millis(&mut ts);
    let mut out = format!(
        "{{\"type\":\"{}\",\"timestamp\":\"{ts}\"",
        type_name(e.kind)
    );
    if let Some(s) = e.since_last {
        let _ = write!(out, ",\"secs_since_last_action\":\"{s}\"");
    }
    let _ = write!(
        out,
        ",\"cluster_name\":{},\"upstream_url\":\"{}\",\"action\":\"{}\",\"num_ejections\":{},\"enforced\":{}",
        serde_json::Value::from(e.cluster),
        e.host,
        if e.eject { "EJECT" } else { "UNEJECT" },
        e.num_ejections,
        e.enforced
    );
    if e.eject {
        match e.detail {
            Some(Detail::SuccessRate {
                host,
                average,
                threshold,
            }) => {
                let _ = write!(
                    out,
                    ",\"eject_success_rate_event\":{{\"host_success_rate\":{host},\"cluster_average_success_rate\":{average},\"cluster_success_rate_ejection_threshold\":{threshold}}}"
                );
            }
            Some(Detail::FailurePercentage { host }) => {
                let _ = write!(
                    out,
                    ",\"eject_failure_percentage_event\":{{\"host_success_rate\":{host}}}"
                );
            }
            Some(Detail::Consecutive) | None => out.push_str(",\"eject_consecutive_event\":{}"),
        }
    }
    out.push_str("}\n");
    out
}

pub fn log(e: &Event<'_>) {
    let Some(f) = LOG.get() else { return };
    let l = line(e, std::time::SystemTime::now());
    let mut f = f.lock().unwrap_or_else(|p| p.into_inner());
    let _ = f.write_all(l.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_as_envoy_writes_them() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_764_037_685_251);
        let e = Event {
            kind: Kind::Consecutive5xx,
            cluster: "c",
            host: "127.0.0.1:19913".parse().expect("addr"),
            eject: true,
            num_ejections: 1,
            enforced: true,
            since_last: None,
            detail: Some(Detail::Consecutive),
        };
        assert_eq!(
            line(&e, t),
            "{\"type\":\"CONSECUTIVE_5XX\",\"timestamp\":\"2025-11-25T02:28:05.251Z\",\"cluster_name\":\"c\",\"upstream_url\":\"127.0.0.1:19913\",\"action\":\"EJECT\",\"num_ejections\":1,\"enforced\":true,\"eject_consecutive_event\":{}}\n"
        );
        let u = Event {
            eject: false,
            enforced: false,
            since_last: Some(2),
            ..e
        };
        assert_eq!(
            line(&u, t),
            "{\"type\":\"CONSECUTIVE_5XX\",\"timestamp\":\"2025-11-25T02:28:05.251Z\",\"secs_since_last_action\":\"2\",\"cluster_name\":\"c\",\"upstream_url\":\"127.0.0.1:19913\",\"action\":\"UNEJECT\",\"num_ejections\":1,\"enforced\":false}\n"
        );
    }
}
