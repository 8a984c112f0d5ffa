//! The StatsD sink (`stats_sinks` `envoy.stat_sinks.statsd` over UDP): at every
//! `stats_flush_interval`, each used counter's increase (`<prefix>.<name>:<n>|c`) and each
//! used gauge's value (`|g`), and every histogram value as it is recorded (`|ms` for times,
//! `|h` otherwise), one metric per datagram, as Envoy sends them.

use super::{registry, Kind};
use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct StatsdCfg {
    pub address: SocketAddr,
    /// `prefix` (default `envoy`).
    pub prefix: String,
}

struct Sink {
    sock: UdpSocket,
    prefix: String,
    /// Each counter's value at the last flush.
    last: Mutex<HashMap<String, u64>>,
}

static SINK: OnceLock<Sink> = OnceLock::new();

/// Starts the sink (once): flushes every `interval` from now on.
pub fn start(cfg: &StatsdCfg, interval: Duration) {
    let bind: SocketAddr = if cfg.address.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    }
    .parse()
    .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let sock = match UdpSocket::bind(bind).and_then(|s| s.connect(cfg.address).map(|()| s)) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("statsd sink {}: {e}", cfg.address);
            return;
        }
    };
    let _ = sock.set_nonblocking(true);
    if SINK
        .set(Sink {
            sock,
            prefix: cfg.prefix.clone(),
            last: Mutex::default(),
        })
        .is_err()
    {
        return;
    }
    crate::util::every(interval, || {
        flush();
        true
    });
}

fn flush() {
    let Some(s) = SINK.get() else { return };
    let mut last = s.last.lock().unwrap_or_else(|p| p.into_inner());
    for e in registry().entries(None, true) {
        let line = match e.kind {
            Kind::Counter => {
                let before = last.insert(e.name.clone(), e.value).unwrap_or(0);
                format!(
                    "{}.{}:{}|c",
                    s.prefix,
                    e.name,
                    e.value.saturating_sub(before)
                )
            }
            Kind::Gauge => format!("{}.{}:{}|g", s.prefix, e.name, e.value),
            Kind::Text => continue,
        };
        let _ = s.sock.send(line.as_bytes());
    }
}

/// One histogram value, sent at once when a sink runs.
pub fn histogram(name: impl FnOnce() -> String, v: u64) {
    let Some(s) = SINK.get() else { return };
    let name = name();
    let unit = if name.ends_with("_ms") || name.ends_with("_time") {
        "ms"
    } else {
        "h"
    };
    let _ = s
        .sock
        .send(format!("{}.{name}:{v}|{unit}", s.prefix).as_bytes());
}

/// Whether a sink runs (histogram values are only named then).
pub fn active() -> bool {
    SINK.get().is_some()
}
