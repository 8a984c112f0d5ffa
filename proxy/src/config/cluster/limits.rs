//! `circuit_breakers`: the per-priority resource limits of a cluster.

use super::super::{err, Result};
use envoy_types::pb::envoy::config::cluster::v3::CircuitBreakers;

/// One priority's thresholds (Envoy's defaults: 1024 connections, pending requests and
/// requests, 3 retries).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    pub max_connections: u64,
    pub max_pending_requests: u64,
    pub max_requests: u64,
    pub max_retries: u64,
    /// `track_remaining`: publish `circuit_breakers.<priority>.remaining_*` gauges.
    pub track_remaining: bool,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            max_connections: 1024,
            max_pending_requests: 1024,
            max_requests: 1024,
            max_retries: 3,
            track_remaining: false,
        }
    }
}

/// The DEFAULT and HIGH priority thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CircuitBreakerCfg {
    pub default: Thresholds,
    pub high: Thresholds,
    /// `per_host_thresholds` (DEFAULT priority): connections to each host.
    pub per_host_max_connections: Option<u64>,
}

pub fn circuit_breakers(cb: &Option<CircuitBreakers>, path: &str) -> Result<CircuitBreakerCfg> {
    let mut out = CircuitBreakerCfg::default();
    let Some(cb) = cb else { return Ok(out) };
    for (i, t) in cb.per_host_thresholds.iter().enumerate() {
        let tp = format!("{path}.per_host_thresholds[{i}]");
        // Per host, only max_connections applies (as in Envoy).
        if t.max_pending_requests.is_some()
            || t.max_requests.is_some()
            || t.max_retries.is_some()
            || t.retry_budget.is_some()
            || t.max_connection_pools.is_some()
            || t.track_remaining
        {
            return err(&tp, "per-host thresholds take max_connections only");
        }
        if t.priority == 0 {
            out.per_host_max_connections = t.max_connections.map(|v| u64::from(v.value));
        } else if t.priority != 1 {
            return err(
                &format!("{tp}.priority"),
                format!("unknown priority {}", t.priority),
            );
        }
    }
    for (i, t) in cb.thresholds.iter().enumerate() {
        let tp = format!("{path}.thresholds[{i}]");
        if t.retry_budget.is_some() {
            return err(
                &format!("{tp}.retry_budget"),
                "retry budgets are not supported by Ferry yet",
            );
        }
        if t.max_connection_pools.is_some() {
            return err(
                &format!("{tp}.max_connection_pools"),
                "max_connection_pools is not supported by Ferry yet",
            );
        }
        let d = Thresholds::default();
        let v = |w: &Option<u32>, dflt: u64| w.map_or(dflt, u64::from);
        let th = Thresholds {
            max_connections: v(&t.max_connections.map(|x| x.value), d.max_connections),
            max_pending_requests: v(
                &t.max_pending_requests.map(|x| x.value),
                d.max_pending_requests,
            ),
            max_requests: v(&t.max_requests.map(|x| x.value), d.max_requests),
            max_retries: v(&t.max_retries.map(|x| x.value), d.max_retries),
            track_remaining: t.track_remaining,
        };
        // RoutingPriority: DEFAULT = 0, HIGH = 1.
        match t.priority {
            0 => out.default = th,
            1 => out.high = th,
            p => return err(&format!("{tp}.priority"), format!("unknown priority {p}")),
        }
    }
    Ok(out)
}
