//! Cluster fields that each take a small conversion: upstream bind and keepalive, panic
//! threshold, locality weighting and zone-aware routing.

use super::super::listener::socket_address;
use super::super::{err, ConfigError, Result};
use super::{pb, AddrKind, BindCfg, Keepalive, LbPolicy, ZoneAware};
use std::time::Duration;

/// `common_lb_config.zone_aware_lb_config`.
pub(super) fn zone_aware(c: &pb::Cluster) -> ZoneAware {
    use pb::cluster::common_lb_config::LocalityConfigSpecifier;
    match c
        .common_lb_config
        .as_ref()
        .and_then(|l| l.locality_config_specifier.as_ref())
    {
        Some(LocalityConfigSpecifier::ZoneAwareLbConfig(z)) => ZoneAware {
            routing_enabled: z.routing_enabled.as_ref().map_or(100.0, |p| p.value),
            min_cluster_size: z.min_cluster_size.map_or(6, |v| v.value),
            fail_traffic_on_panic: z.fail_traffic_on_panic,
        },
        _ => ZoneAware::default(),
    }
}

/// `upstream_connection_options`: TCP keepalive.
pub(super) fn keepalive(c: &pb::Cluster, path: &str) -> Result<Option<Keepalive>> {
    let Some(o) = &c.upstream_connection_options else {
        return Ok(None);
    };
    let op = format!("{path}.upstream_connection_options");
    if o.happy_eyeballs_config.is_some() {
        return err(
            &format!("{op}.happy_eyeballs_config"),
            "happy eyeballs is not supported by Ferry",
        );
    }
    let Some(k) = &o.tcp_keepalive else {
        return Ok(None);
    };
    let secs = |v: Option<u32>| {
        v.filter(|s| *s > 0)
            .map(|s| Duration::from_secs(u64::from(s)))
    };
    Ok(Some(Keepalive {
        probes: k.keepalive_probes.map(|v| v.value),
        time: secs(k.keepalive_time.map(|v| v.value)),
        interval: secs(k.keepalive_interval.map(|v| v.value)),
    }))
}

/// `common_lb_config.locality_weighted_lb_config` (not with consistent hashing, whose tables
/// would weigh localities differently).
pub(super) fn locality_weighted(c: &pb::Cluster, lb: LbPolicy, path: &str) -> Result<bool> {
    let on = c
        .common_lb_config
        .as_ref()
        .and_then(|l| l.locality_config_specifier.as_ref())
        .is_some_and(|s| {
            matches!(
                s,
                pb::cluster::common_lb_config::LocalityConfigSpecifier::LocalityWeightedLbConfig(_)
            )
        });
    if on && lb.hashes() {
        return err(
            &format!("{path}.common_lb_config.locality_weighted_lb_config"),
            "locality-weighted RING_HASH and MAGLEV are not supported by Ferry yet",
        );
    }
    Ok(on)
}

/// `common_lb_config.healthy_panic_threshold` (default 50%).
pub(super) fn panic_threshold(c: &pb::Cluster, path: &str) -> Result<f64> {
    let Some(t) = c
        .common_lb_config
        .as_ref()
        .and_then(|l| l.healthy_panic_threshold)
    else {
        return Ok(50.0);
    };
    if !(0.0..=100.0).contains(&t.value) {
        return err(
            &format!("{path}.common_lb_config.healthy_panic_threshold.value"),
            "value must be between 0 and 100",
        );
    }
    Ok(t.value)
}

pub(super) fn bind_config(
    b: &envoy_types::pb::envoy::config::core::v3::BindConfig,
    path: &str,
) -> Result<BindCfg> {
    let Some(sa) = &b.source_address else {
        return err(
            &format!("{path}.source_address"),
            "source_address is required",
        );
    };
    let wrapped = Some(envoy_types::pb::envoy::config::core::v3::Address {
        address: Some(AddrKind::SocketAddress(sa.clone())),
    });
    let source =
        socket_address(&wrapped, &format!("{path}.source_address")).map_err(|e| ConfigError {
            path: e
                .path
                .replace(".source_address.socket_address", ".source_address"),
            msg: e.msg,
        })?;
    Ok(BindCfg {
        source,
        freebind: b.freebind.is_some_and(|f| f.value),
    })
}
