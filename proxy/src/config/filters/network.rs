//! Network filters before a chain's terminal filter: `envoy.filters.network.rbac` (decided
//! once per connection) and `envoy.filters.network.local_ratelimit` (per new connection).

use super::super::{any_to, duration, err, type_name, Result};
use super::ratelimit::TokenBucket;
use super::{rbac, RbacCfg, RbacStats};
use crate::stats::{registry, Counter, Scope};
use envoy_types::pb::envoy::extensions::filters::network::local_ratelimit::v3::LocalRateLimit;
use envoy_types::pb::envoy::extensions::filters::network::rbac::v3::Rbac;
use envoy_types::pb::google::protobuf::Any;
use std::time::Duration;

#[derive(Debug)]
pub enum NetFilter {
    Rbac(RbacCfg, RbacStats),
    /// A connection over the bucket's limit is closed.
    LocalRateLimit(TokenBucket, Counter),
    /// Istio's `istio_authn`: the TLS peer's and Ferry's SPIFFE identities as the connection's
    /// principals. Ferry's RBAC and `istio.stats` read them from the TLS connection directly,
    /// so the filter has nothing left to do.
    IstioAuthn,
    /// Istio's TCP metadata exchange with the downstream.
    MetadataExchange(crate::istio::mx::MxCfg),
    /// Istio's `istio.stats` for TCP.
    IstioStats(std::sync::Arc<crate::istio::stats::IstioStats>),
    /// `envoy.filters.network.ext_authz`: the authorization service decides each connection.
    ExtAuthz(
        std::sync::Arc<super::ext_authz::ExtAuthzCfg>,
        std::sync::Arc<super::ext_authz::NetExtAuthzStats>,
    ),
    /// `envoy.filters.network.connection_limit`: at most so many connections at once on the
    /// chain; one over is closed (after the configured delay).
    ConnectionLimit(std::sync::Arc<ConnectionLimit>),
}

#[derive(Debug)]
pub struct ConnectionLimit {
    pub max: u64,
    pub delay: Option<Duration>,
    pub active: std::sync::atomic::AtomicU64,
    pub active_gauge: crate::stats::Gauge,
    pub limited: Counter,
}

impl ConnectionLimit {
    /// Counts a new connection, or `None` (counted as limited) when the chain is full.
    pub fn acquire(self: &std::sync::Arc<Self>) -> Option<ConnSlot> {
        use std::sync::atomic::Ordering::Relaxed;
        if self.active.fetch_add(1, Relaxed) >= self.max {
            self.active.fetch_sub(1, Relaxed);
            self.limited.inc();
            return None;
        }
        self.active_gauge.inc();
        Some(ConnSlot(self.clone()))
    }
}

/// A connection counted by a connection limit until it drops.
pub struct ConnSlot(std::sync::Arc<ConnectionLimit>);

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.0
            .active
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        self.0.active_gauge.dec();
    }
}

pub const CONNECTION_LIMIT: &str =
    "envoy.extensions.filters.network.connection_limit.v3.ConnectionLimit";

pub const RBAC: &str = "envoy.extensions.filters.network.rbac.v3.RBAC";
pub const LOCAL_RATE_LIMIT: &str =
    "envoy.extensions.filters.network.local_ratelimit.v3.LocalRateLimit";

/// The network filter of `any` at `path` (not a terminal one).
pub fn net_filter(any: &Any, path: &str) -> Result<NetFilter> {
    match type_name(any) {
        super::ext_authz::NETWORK => {
            let cfg = super::ext_authz::network(any, path)?;
            let stats = super::ext_authz::NetExtAuthzStats::new(&cfg.stat_prefix);
            Ok(NetFilter::ExtAuthz(
                std::sync::Arc::new(cfg),
                std::sync::Arc::new(stats),
            ))
        }
        RBAC => {
            let r: Rbac = any_to(any, path)?;
            if r.stat_prefix.is_empty() {
                return err(&format!("{path}.stat_prefix"), "stat_prefix is required");
            }
            if r.matcher.is_some() || r.shadow_matcher.is_some() {
                return err(path, "RBAC matchers are not supported by Ferry (use rules)");
            }
            if r.delay_deny.is_some() {
                return err(
                    &format!("{path}.delay_deny"),
                    "delay_deny is not supported by Ferry",
                );
            }
            let engine = |e: &Option<_>, f: &str| {
                e.as_ref()
                    .map(|e| rbac::Engine::from_proto(e, &format!("{path}.{f}")))
                    .transpose()
            };
            let scope = r.stat_prefix.trim_end_matches('.').to_string();
            Ok(NetFilter::Rbac(
                RbacCfg {
                    shadow_prefix: r.shadow_rules_stat_prefix.clone(),
                    rules: engine(&r.rules, "rules")?,
                    shadow: engine(&r.shadow_rules, "shadow_rules")?,
                },
                RbacStats::new(Scope::Named(&scope), "", &r.shadow_rules_stat_prefix),
            ))
        }
        LOCAL_RATE_LIMIT => {
            let l: LocalRateLimit = any_to(any, path)?;
            if l.stat_prefix.is_empty() {
                return err(&format!("{path}.stat_prefix"), "stat_prefix is required");
            }
            if l.runtime_enabled
                .as_ref()
                .is_some_and(|f| f.default_value.as_ref().is_some_and(|b| !b.value))
            {
                return err(
                    &format!("{path}.runtime_enabled"),
                    "a disabled network rate limit is not supported by Ferry (remove the filter)",
                );
            }
            let tp = format!("{path}.token_bucket");
            let Some(tb) = &l.token_bucket else {
                return err(&tp, "token_bucket is required");
            };
            let Some(fi) = &tb.fill_interval else {
                return err(&format!("{tp}.fill_interval"), "fill_interval is required");
            };
            let interval = duration(fi, &format!("{tp}.fill_interval"))?;
            if interval < Duration::from_millis(50) {
                return err(&format!("{tp}.fill_interval"), "must be at least 50ms");
            }
            let per_fill = tb.tokens_per_fill.as_ref().map_or(1, |v| v.value);
            Ok(NetFilter::LocalRateLimit(
                TokenBucket::new(tb.max_tokens, per_fill, interval),
                registry().counter(
                    Scope::Named(&format!("local_rate_limit.{}", l.stat_prefix)),
                    "rate_limited",
                ),
            ))
        }
        CONNECTION_LIMIT => {
            use envoy_types::pb::envoy::extensions::filters::network::connection_limit::v3 as cl;
            let c: cl::ConnectionLimit = any_to(any, path)?;
            if c.stat_prefix.is_empty() {
                return err(&format!("{path}.stat_prefix"), "stat_prefix is required");
            }
            let max = c.max_connections.as_ref().map_or(0, |v| v.value);
            if max == 0 {
                return err(
                    &format!("{path}.max_connections"),
                    "max_connections must be at least 1",
                );
            }
            if c.runtime_enabled
                .as_ref()
                .is_some_and(|f| f.default_value.as_ref().is_some_and(|b| !b.value))
            {
                return err(
                    &format!("{path}.runtime_enabled"),
                    "a disabled connection limit is not supported by Ferry (remove the filter)",
                );
            }
            let delay = c
                .delay
                .as_ref()
                .map(|d| duration(d, &format!("{path}.delay")))
                .transpose()?;
            let scope = format!("connection_limit.{}", c.stat_prefix);
            let r = registry();
            Ok(NetFilter::ConnectionLimit(std::sync::Arc::new(
                ConnectionLimit {
                    max,
                    delay: delay.filter(|d| !d.is_zero()),
                    active: Default::default(),
                    active_gauge: r.gauge(Scope::Named(&scope), "active_connections"),
                    limited: r.counter(Scope::Named(&scope), "limited_connections"),
                },
            )))
        }
        crate::istio::wasm::NETWORK_WASM => {
            let w: envoy_types::pb::envoy::extensions::filters::network::wasm::v3::Wasm =
                any_to(any, path)?;
            match crate::istio::wasm::plugin(&w.config, path)? {
                crate::istio::wasm::Plugin::Stats(s) => {
                    Ok(NetFilter::IstioStats(std::sync::Arc::new(*s)))
                }
                crate::istio::wasm::Plugin::MetadataExchange => err(
                    path,
                    "the metadata exchange plugin is an HTTP filter; TCP uses envoy.filters.network.metadata_exchange",
                ),
            }
        }
        "io.istio.network.authn.Config" => Ok(NetFilter::IstioAuthn),
        crate::istio::mx::TYPE => Ok(NetFilter::MetadataExchange(
            crate::istio::mx::MxCfg::from_any(any, path)?,
        )),
        "stats.PluginConfig" => Ok(NetFilter::IstioStats(std::sync::Arc::new(
            crate::istio::stats::IstioStats::from_proto(&any_to(any, path)?, path)?,
        ))),
        other => err(
            path,
            format!("network filter {other} is not supported by Ferry"),
        ),
    }
}
