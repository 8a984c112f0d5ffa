//! What the Zipkin and OpenTelemetry reporters share: one reporter per distinct tracer config,
//! spans buffered until five are waiting or the five-second timer fires, as Envoy does.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

pub const MIN_FLUSH_SPANS: usize = 5;
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(5);

/// Spans waiting for their export.
#[derive(Debug)]
pub struct Pending<T> {
    items: Mutex<Vec<T>>,
    /// At most this many wait; more are dropped.
    cap: usize,
}

/// What a push did.
pub enum Pushed<T> {
    Kept,
    /// The batch is full: send these.
    Full(Vec<T>),
    /// No room: the span was dropped, send these.
    Dropped(Vec<T>),
}

impl<T> Pending<T> {
    pub fn new(cap: usize) -> Pending<T> {
        Pending {
            items: Mutex::new(Vec::new()),
            cap: cap.max(1),
        }
    }

    pub fn push(&self, t: T) -> Pushed<T> {
        let mut p = self.items.lock().unwrap_or_else(|e| e.into_inner());
        if p.len() >= self.cap {
            return Pushed::Dropped(std::mem::take(&mut *p));
        }
        p.push(t);
        if p.len() >= MIN_FLUSH_SPANS {
            Pushed::Full(std::mem::take(&mut *p))
        } else {
            Pushed::Kept
        }
    }

    pub fn take(&self) -> Vec<T> {
        std::mem::take(&mut *self.items.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// The reporter in `all` that `matches`, or a new one from `make`, whose `tick` then runs
/// every five seconds for as long as it lives.
pub fn shared<R: Send + Sync + 'static>(
    all: &Mutex<Vec<Arc<R>>>,
    matches: impl Fn(&R) -> bool,
    make: impl FnOnce() -> R,
    tick: fn(&R),
) -> Arc<R> {
    let mut all = all.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(r) = all.iter().find(|r| matches(r)) {
        return r.clone();
    }
    let r = Arc::new(make());
    let weak: Weak<R> = Arc::downgrade(&r);
    crate::util::every(FLUSH_INTERVAL, move || {
        let Some(r) = weak.upgrade() else {
            return false;
        };
        tick(&r);
        true
    });
    all.push(r.clone());
    r
}
