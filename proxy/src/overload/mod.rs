//! The overload manager at run time: resource monitors read on a timer, each action's state
//! (0 = inactive … 1 = saturated) published in an atomic that the hot paths read with one
//! relaxed load, and the global downstream connection count.
//!
//! Without an `overload_manager` in the bootstrap Ferry still watches its cgroup's memory limit
//! ([`Overload::implicit`]) and, whatever the bootstrap says, bounds downstream connections by
//! the file descriptors it may open.

mod monitor;

pub use monitor::heap_stats;

use crate::config::overload::{ActionKind, Overload};
use crate::stats::{registry, Counter, Gauge, Scope};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;
use std::time::Duration;
use tokio::sync::watch;

struct State {
    /// Each action's state as `f64` bits, in [`ActionKind::ALL`] order.
    actions: [AtomicU64; 5],
    active_cx: AtomicU64,
    max_cx: AtomicU64,
    /// `true` while `stop_accepting_connections` is saturated.
    paused: watch::Sender<bool>,
    cx_stats: OnceLock<CxStats>,
}

struct CxStats {
    pressure: Gauge,
    failed: Counter,
}

fn state() -> &'static State {
    static S: OnceLock<State> = OnceLock::new();
    S.get_or_init(|| State {
        actions: Default::default(),
        active_cx: AtomicU64::new(0),
        max_cx: AtomicU64::new(u64::MAX),
        paused: watch::channel(false).0,
        cx_stats: OnceLock::new(),
    })
}

fn index(kind: ActionKind) -> usize {
    ActionKind::ALL
        .iter()
        .position(|k| *k == kind)
        .unwrap_or_default()
}

/// An action's current state, in [0, 1].
pub fn action(kind: ActionKind) -> f64 {
    f64::from_bits(state().actions[index(kind)].load(Relaxed))
}

fn saturated(kind: ActionKind) -> bool {
    action(kind) >= 1.0
}

/// True with the probability of the action's state (a scaled trigger sheds that share).
fn chance(kind: ActionKind) -> bool {
    let v = action(kind);
    v >= 1.0 || (v > 0.0 && fastrand::f64() < v)
}

/// `stop_accepting_requests`: new requests get 503 "envoy overloaded".
pub fn stop_requests() -> bool {
    saturated(ActionKind::StopAcceptingRequests)
}

/// `disable_http_keepalive`: this response closes its connection.
pub fn disable_keepalive() -> bool {
    chance(ActionKind::DisableHttpKeepalive)
}

/// `reject_incoming_connections`: this new connection is closed at once.
pub fn reject_connection() -> bool {
    chance(ActionKind::RejectIncomingConnections)
}

/// Waits while `stop_accepting_connections` is saturated (listeners leave new connections in
/// the kernel's backlog).
pub async fn accept_gate() {
    let mut rx = state().paused.subscribe();
    let _ = rx.wait_for(|paused| !*paused).await;
}

/// Resolves when `stop_accepting_connections` becomes saturated.
pub async fn accept_paused() {
    let mut rx = state().paused.subscribe();
    let _ = rx.wait_for(|paused| *paused).await;
}

/// One downstream connection counted against the global limit, released on drop.
pub struct CxPermit(bool);

impl Drop for CxPermit {
    fn drop(&mut self) {
        if self.0 {
            let s = state();
            let now = s.active_cx.fetch_sub(1, Relaxed).saturating_sub(1);
            publish_cx_pressure(s, now);
        }
    }
}

/// Counts a new downstream connection, or `None` when the global limit is reached (the
/// connection is to be closed). Listeners with `ignore_global_conn_limit` are not counted.
pub fn admit_connection(ignore_limit: bool) -> Option<CxPermit> {
    if ignore_limit {
        return Some(CxPermit(false));
    }
    let s = state();
    let max = s.max_cx.load(Relaxed);
    let now = s.active_cx.fetch_add(1, Relaxed) + 1;
    if now > max {
        s.active_cx.fetch_sub(1, Relaxed);
        if let Some(st) = s.cx_stats.get() {
            st.failed.inc();
        }
        return None;
    }
    publish_cx_pressure(s, now);
    Some(CxPermit(true))
}

fn publish_cx_pressure(s: &State, now: u64) {
    if let Some(st) = s.cx_stats.get() {
        let max = s.max_cx.load(Relaxed).max(1);
        st.pressure.set(now.saturating_mul(100) / max);
    }
}

/// The downstream connection limit when the bootstrap sets none: what the file descriptor
/// limit leaves room for, a tenth of it kept for upstream connections (HTTP ones are pooled
/// and shared), listeners, xDS and logs, so that accepting never runs the process out of
/// descriptors. The soft limit is raised to the hard one first.
fn fd_connection_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct given.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return u64::MAX;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
    }
    if lim.rlim_cur == libc::RLIM_INFINITY {
        return u64::MAX;
    }
    #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 on every target
    let cur = lim.rlim_cur as u64;
    // A tenth (at least 64) is kept for upstream connections, listeners, xDS and logs.
    cur - (cur / 10).max(64).min(cur)
}

/// Starts the overload manager: the bootstrap's, or Ferry's cgroup default.
pub fn start(cfg: Option<&Overload>) {
    let s = state();
    let implicit;
    let cfg = match cfg {
        Some(c) => c,
        None => {
            implicit = Overload::implicit();
            &implicit
        }
    };
    let max = cfg.max_connections.unwrap_or_else(fd_connection_limit);
    s.max_cx.store(max, Relaxed);
    if cfg.max_connections.is_some() {
        let scope = "overload.envoy.resource_monitors.global_downstream_max_connections";
        let r = registry();
        let _ = s.cx_stats.set(CxStats {
            pressure: r.gauge(Scope::Named(scope), "pressure"),
            failed: r.counter(Scope::Named(scope), "failed_updates"),
        });
    } else {
        tracing::debug!(
            limit = max,
            "downstream connections bounded by the fd limit"
        );
    }
    let monitors: Vec<MonitorRt> = cfg
        .monitors
        .iter()
        .map(|m| MonitorRt::new(&m.name, monitor::Reader::new(m.kind), cfg.implicit))
        .collect();
    if monitors.is_empty() {
        return;
    }
    let actions: Vec<ActionRt> = cfg.actions.iter().map(ActionRt::new).collect();
    let refresh = cfg.refresh;
    tokio::spawn(run(monitors, actions, refresh));
}

struct MonitorRt {
    name: String,
    reader: monitor::Reader,
    /// `(pressure, failed_updates)`; Ferry's own default monitor makes them only once it has
    /// a limit to watch, so that a proxy without one shows Envoy's stats and no others.
    stats: Option<(Gauge, Counter)>,
    last: f64,
}

impl MonitorRt {
    fn new(name: &str, reader: monitor::Reader, implicit: bool) -> MonitorRt {
        let mut m = MonitorRt {
            name: name.to_string(),
            reader,
            stats: None,
            last: 0.0,
        };
        if !implicit {
            m.stats();
        }
        m
    }

    fn stats(&mut self) -> &(Gauge, Counter) {
        self.stats.get_or_insert_with(|| {
            let scope = format!("overload.{}", self.name);
            let r = registry();
            (
                r.gauge(Scope::Named(&scope), "pressure"),
                r.counter(Scope::Named(&scope), "failed_updates"),
            )
        })
    }
}

struct ActionRt {
    kind: ActionKind,
    triggers: Vec<(usize, crate::config::overload::Trigger)>,
    /// `(active, scale_percent, shrink_count)`, made once a monitor shows its stats.
    stats: Option<(Gauge, Gauge, Option<Counter>)>,
}

impl ActionRt {
    fn new(a: &crate::config::overload::Action) -> ActionRt {
        ActionRt {
            kind: a.kind,
            triggers: a.triggers.clone(),
            stats: None,
        }
    }

    fn stats(&mut self) -> &(Gauge, Gauge, Option<Counter>) {
        let kind = self.kind;
        self.stats.get_or_insert_with(|| {
            let scope = format!("overload.{}", kind.name());
            let r = registry();
            (
                r.gauge(Scope::Named(&scope), "active"),
                r.gauge(Scope::Named(&scope), "scale_percent"),
                (kind == ActionKind::ShrinkHeap)
                    .then(|| r.counter(Scope::Named(&scope), "shrink_count")),
            )
        })
    }
}

async fn run(mut monitors: Vec<MonitorRt>, mut actions: Vec<ActionRt>, refresh: Duration) {
    let s = state();
    let mut tick = tokio::time::interval(refresh);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        for m in &mut monitors {
            match m.reader.read() {
                monitor::Reading::Pressure(p) => {
                    if m.stats.is_none() {
                        tracing::info!(monitor = %m.name, "memory limit found: shedding load from 90 %");
                    }
                    m.last = p;
                    m.stats().0.set((p * 100.0) as u64);
                }
                monitor::Reading::Unlimited => m.last = 0.0,
                monitor::Reading::Failed => m.stats().1.inc(),
            }
        }
        let visible = monitors.iter().any(|m| m.stats.is_some());
        for a in &mut actions {
            let v = a
                .triggers
                .iter()
                .map(|(i, t)| monitors.get(*i).map_or(0.0, |m| t.state(m.last)))
                .fold(0.0, f64::max);
            let old = f64::from_bits(s.actions[index(a.kind)].swap(v.to_bits(), Relaxed));
            if visible {
                let (active, scale, _) = a.stats();
                active.set(u64::from(v >= 1.0));
                scale.set((v * 100.0) as u64);
            }
            if (old >= 1.0) != (v >= 1.0) {
                tracing::warn!(
                    action = a.kind.name(),
                    "overload action {}",
                    if v >= 1.0 { "saturated" } else { "cleared" }
                );
            }
            match a.kind {
                ActionKind::StopAcceptingConnections => {
                    s.paused.send_if_modified(|p| {
                        let now = v >= 1.0;
                        std::mem::replace(p, now) != now
                    });
                }
                ActionKind::ShrinkHeap if v >= 1.0 => {
                    monitor::shrink_heap();
                    if let Some((_, _, Some(c))) = &a.stats {
                        c.inc();
                    }
                }
                _ => {}
            }
        }
    }
}
