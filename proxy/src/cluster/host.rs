//! One upstream host: its address and what EDS says of it, the health flags that active
//! health checking and outlier detection set, its stats and its connection pool. A host that
//! stays in the host set across an update keeps all of it.

use super::pool::HostPool;
use crate::config::cluster::{EdsHealth, EndpointCfg, Locality};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::Arc;

/// Milliseconds on a monotonic clock that starts with the process.
pub fn now_ms() -> u64 {
    static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    EPOCH
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as u64
}

#[derive(Debug, Default)]
pub struct HostStats {
    pub cx_total: AtomicU64,
    pub cx_active: AtomicU64,
    pub cx_connect_fail: AtomicU64,
    pub rq_total: AtomicU64,
    pub rq_active: AtomicU64,
    pub rq_success: AtomicU64,
    pub rq_error: AtomicU64,
    pub rq_timeout: AtomicU64,
    pub rq_pending_active: AtomicU64,
}

/// Health flags, as Envoy names them in `/clusters`.
pub mod flag {
    pub const FAILED_ACTIVE_HC: u32 = 1;
    pub const FAILED_OUTLIER_CHECK: u32 = 1 << 1;
    pub const DEGRADED_ACTIVE_HC: u32 = 1 << 2;
    pub const PENDING_ACTIVE_HC: u32 = 1 << 3;
    pub const ACTIVE_HC_TIMEOUT: u32 = 1 << 4;
}

/// How a host takes traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Healthy,
    Degraded,
    Unhealthy,
}

#[derive(Debug)]
pub struct Host {
    pub addr: SocketAddr,
    pub hostname: String,
    /// The key on a hash ring: `envoy.lb` `hash_key`, else the address.
    pub hash_key: Option<String>,
    eds: AtomicU8,
    /// `load_balancing_weight`.
    weight: AtomicU32,
    priority: AtomicU32,
    locality: arc_swap::ArcSwap<Locality>,
    /// Its locality's weight (0: none given).
    locality_weight: AtomicU32,
    flags: AtomicU32,
    pub stats: HostStats,
    pub pool: Arc<HostPool>,
    /// Outlier detection's record of this host.
    pub outlier: super::outlier::HostRecord,
    /// ORIGINAL_DST: picked since the last cleanup sweep.
    pub(super) used: AtomicBool,
    /// When it joined, or last became healthy again by an active check (ms, [`now_ms`]):
    /// where slow start counts from.
    since: AtomicU64,
    /// Active health checking: a session checks this host; it had its first result.
    pub(super) hc_session: AtomicBool,
    pub hc_checked: AtomicBool,
    /// Which of its cluster's transport sockets its connections use.
    pub socket: usize,
}

impl Host {
    pub fn new(addr: SocketAddr, e: &EndpointCfg, pool: Arc<HostPool>, socket: usize) -> Host {
        let h = Host {
            addr,
            hostname: e.hostname.clone(),
            hash_key: e.hash_key.clone(),
            eds: AtomicU8::new(0),
            weight: AtomicU32::new(1),
            priority: AtomicU32::new(0),
            locality: arc_swap::ArcSwap::from_pointee(Locality::default()),
            locality_weight: AtomicU32::new(0),
            flags: AtomicU32::new(0),
            stats: HostStats::default(),
            pool,
            outlier: super::outlier::HostRecord::default(),
            used: AtomicBool::new(false),
            since: AtomicU64::new(now_ms()),
            hc_session: AtomicBool::new(false),
            hc_checked: AtomicBool::new(false),
            socket,
        };
        h.update(e);
        h
    }

    /// Takes what a new load assignment says of this host.
    pub fn update(&self, e: &EndpointCfg) {
        self.eds.store(e.health as u8, Relaxed);
        self.weight.store(e.weight, Relaxed);
        self.priority.store(e.priority, Relaxed);
        self.locality_weight
            .store(e.locality_weight.unwrap_or(0), Relaxed);
        if **self.locality.load() != e.locality {
            self.locality.store(Arc::new(e.locality.clone()));
        }
    }

    /// How long it has been in service (slow start's clock).
    pub fn in_service(&self) -> std::time::Duration {
        std::time::Duration::from_millis(now_ms().saturating_sub(self.since.load(Relaxed)))
    }

    /// It passed an active health check after failing: slow start begins again.
    pub fn restart_slow_start(&self) {
        self.since.store(now_ms(), Relaxed);
    }

    pub fn weight(&self) -> u32 {
        self.weight.load(Relaxed)
    }

    pub fn priority(&self) -> u32 {
        self.priority.load(Relaxed)
    }

    pub fn locality(&self) -> Arc<Locality> {
        self.locality.load_full()
    }

    pub fn locality_weight(&self) -> u32 {
        self.locality_weight.load(Relaxed)
    }

    pub fn eds_health(&self) -> EdsHealth {
        EdsHealth::from_u8(self.eds.load(Relaxed))
    }

    pub fn flags(&self) -> u32 {
        self.flags.load(Relaxed)
    }

    /// Sets or clears `f`; true when that changed the flags.
    pub fn set_flag(&self, f: u32, on: bool) -> bool {
        let before = if on {
            self.flags.fetch_or(f, Relaxed)
        } else {
            self.flags.fetch_and(!f, Relaxed)
        };
        (before & f != 0) != on
    }

    /// Envoy's combination: any failure flag (or an EDS status of UNHEALTHY, DRAINING or
    /// TIMEOUT) makes the host unhealthy; else a degraded EDS status or active check degrades it.
    pub fn health(&self) -> Health {
        let f = self.flags();
        let failed = flag::FAILED_ACTIVE_HC | flag::FAILED_OUTLIER_CHECK;
        let eds = self.eds_health();
        if f & failed != 0
            || matches!(
                eds,
                EdsHealth::Unhealthy | EdsHealth::Draining | EdsHealth::Timeout
            )
        {
            Health::Unhealthy
        } else if f & flag::DEGRADED_ACTIVE_HC != 0 || eds == EdsHealth::Degraded {
            Health::Degraded
        } else {
            Health::Healthy
        }
    }

    /// Left out of the health percentages (still picked from in panic): waiting for a first
    /// health check, or draining.
    pub fn excluded(&self) -> bool {
        self.flags() & flag::PENDING_ACTIVE_HC != 0 || self.eds_health() == EdsHealth::Draining
    }

    /// The `health_flags` of `/clusters`: `healthy`, or each set flag as `/name`.
    pub fn health_flags(&self) -> String {
        let f = self.flags();
        let eds = self.eds_health();
        let mut out = String::new();
        for (on, name) in [
            (f & flag::FAILED_ACTIVE_HC != 0, "failed_active_hc"),
            (f & flag::FAILED_OUTLIER_CHECK != 0, "failed_outlier_check"),
            (
                matches!(eds, EdsHealth::Unhealthy | EdsHealth::Timeout),
                "failed_eds_health",
            ),
            (f & flag::DEGRADED_ACTIVE_HC != 0, "degraded_active_hc"),
            (eds == EdsHealth::Degraded, "degraded_eds_health"),
            (f & flag::PENDING_ACTIVE_HC != 0, "pending_active_hc"),
            (f & flag::ACTIVE_HC_TIMEOUT != 0, "active_hc_timeout"),
            (eds == EdsHealth::Draining, "eds_status_draining"),
        ] {
            if on {
                out.push('/');
                out.push_str(name);
            }
        }
        if out.is_empty() {
            out.push_str("healthy");
        }
        out
    }
}
