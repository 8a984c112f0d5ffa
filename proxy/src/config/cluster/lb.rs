//! A cluster's load-balancing policy: the `lb_policy` enum with its `*_lb_config`, or the
//! typed `load_balancing_policy` form (the first policy Ferry implements).

use super::super::{any_to, err, type_name, Result};
use super::{Discovery, LbPolicy};
use envoy_types::pb::envoy::config::cluster::v3 as pb;
use envoy_types::pb::envoy::config::core::v3::RuntimeDouble;
use envoy_types::pb::envoy::extensions::load_balancing_policies as typed;
use envoy_types::pb::envoy::r#type::v3::Percent;
use std::time::Duration;

/// `slow_start_config`: a host's weight ramps up over `window` after it joins (or passes a
/// health check again): `weight × max(min_weight, (t / window)^(1 / aggression))`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SlowStart {
    pub window: Duration,
    pub aggression: f64,
    /// `min_weight_percent` as a fraction (default 0.1).
    pub min_weight: f64,
}

impl SlowStart {
    /// The weight factor `elapsed` after the host joined.
    pub fn factor(&self, elapsed: Duration) -> f64 {
        if elapsed >= self.window || self.window.is_zero() {
            return 1.0;
        }
        let t = elapsed.as_millis().max(1) as f64 / self.window.as_millis() as f64;
        let ramp = if self.aggression == 1.0 {
            t
        } else {
            t.powf(1.0 / self.aggression)
        };
        ramp.max(self.min_weight)
    }
}

const RING_MAX: u64 = 8 * 1024 * 1024;
const CLUSTER_PROVIDED: i32 = 6;

/// The policy and its slow start.
type Policy = (LbPolicy, Option<SlowStart>);

/// `slow_start_config` (either form: the fields are the same).
fn slow_start(
    window: &Option<envoy_types::pb::google::protobuf::Duration>,
    aggression: &Option<RuntimeDouble>,
    min_weight: &Option<Percent>,
    path: &str,
) -> Result<Option<SlowStart>> {
    let window = super::super::opt_duration(window, &format!("{path}.slow_start_window"))?
        .unwrap_or(Duration::ZERO);
    if window.is_zero() {
        return Ok(None);
    }
    let aggression = aggression.as_ref().map_or(1.0, |a| a.default_value);
    if !(aggression > 0.0 && aggression.is_finite()) {
        return err(
            &format!("{path}.aggression.default_value"),
            "aggression must be greater than 0",
        );
    }
    let min_weight = min_weight.as_ref().map_or(10.0, |p| p.value);
    if !(0.0..=100.0).contains(&min_weight) {
        return err(
            &format!("{path}.min_weight_percent.value"),
            "value must be between 0 and 100",
        );
    }
    Ok(Some(SlowStart {
        window,
        aggression,
        min_weight: min_weight / 100.0,
    }))
}

pub fn lb_policy(c: &pb::Cluster, discovery: Discovery, path: &str) -> Result<Policy> {
    let lb_name = || {
        pb::cluster::LbPolicy::try_from(c.lb_policy)
            .map(|d| d.as_str_name())
            .unwrap_or("unknown")
    };
    // CLUSTER_PROVIDED is ORIGINAL_DST's own policy and only its own.
    let provided = c.lb_policy == CLUSTER_PROVIDED;
    let original_dst = discovery == Discovery::OriginalDst;
    if original_dst && !provided {
        return err(
            &format!("{path}.lb_policy"),
            format!("LB policy {} is not valid for Cluster type ORIGINAL_DST. Only 'CLUSTER_PROVIDED' is allowed with cluster type 'ORIGINAL_DST'", lb_name()),
        );
    }
    if provided && !original_dst {
        return err(
            &format!("{path}.lb_policy"),
            format!(
                "cluster provided LB specified but cluster '{}' did not provide one",
                c.name
            ),
        );
    }
    let consistent = c
        .common_lb_config
        .as_ref()
        .and_then(|l| l.consistent_hashing_lb_config.as_ref());
    if consistent.is_some_and(|h| h.hash_balance_factor.is_some()) {
        return err(
            &format!("{path}.common_lb_config.consistent_hashing_lb_config.hash_balance_factor"),
            "bounded-load consistent hashing is not supported by Ferry yet",
        );
    }
    let use_hostname = consistent.is_some_and(|h| h.use_hostname_for_hashing);
    if let Some(p) = &c.load_balancing_policy {
        return typed_policy(p, &format!("{path}.load_balancing_policy"));
    }
    let plain = |p: Result<LbPolicy>| p.map(|p| (p, None));
    match c.lb_policy {
        0 => {
            let ss = match &c.lb_config {
                Some(pb::cluster::LbConfig::RoundRobinLbConfig(r)) => match &r.slow_start_config {
                    Some(s) => slow_start(
                        &s.slow_start_window,
                        &s.aggression,
                        &s.min_weight_percent,
                        &format!("{path}.round_robin_lb_config.slow_start_config"),
                    )?,
                    None => None,
                },
                _ => None,
            };
            Ok((LbPolicy::RoundRobin, ss))
        }
        1 => {
            let lp = format!("{path}.least_request_lb_config");
            let (choices, bias, ss) = match &c.lb_config {
                Some(pb::cluster::LbConfig::LeastRequestLbConfig(l)) => (
                    l.choice_count.as_ref().map_or(2, |c| c.value),
                    l.active_request_bias.as_ref().map(|b| b.default_value),
                    match &l.slow_start_config {
                        Some(s) => slow_start(
                            &s.slow_start_window,
                            &s.aggression,
                            &s.min_weight_percent,
                            &format!("{lp}.slow_start_config"),
                        )?,
                        None => None,
                    },
                ),
                _ => (2, None, None),
            };
            Ok((least_request(choices, bias, &lp)?, ss))
        }
        2 => {
            let (min, max) = match &c.lb_config {
                Some(pb::cluster::LbConfig::RingHashLbConfig(r)) => {
                    if r.hash_function == 1 {
                        return err(
                            &format!("{path}.ring_hash_lb_config.hash_function"),
                            "MURMUR_HASH_2 is not supported by Ferry",
                        );
                    }
                    (
                        r.minimum_ring_size.map(|v| v.value),
                        r.maximum_ring_size.map(|v| v.value),
                    )
                }
                _ => (None, None),
            };
            plain(ring_hash(
                min,
                max,
                use_hostname,
                &format!("{path}.ring_hash_lb_config"),
            ))
        }
        3 => Ok((LbPolicy::Random, None)),
        5 => {
            let size = match &c.lb_config {
                Some(pb::cluster::LbConfig::MaglevLbConfig(m)) => m.table_size.map(|v| v.value),
                _ => None,
            };
            plain(maglev(
                size,
                use_hostname,
                &format!("{path}.maglev_lb_config"),
            ))
        }
        CLUSTER_PROVIDED => Ok((LbPolicy::ClusterProvided, None)),
        _ => err(
            &format!("{path}.lb_policy"),
            format!("lb_policy {} is not supported by Ferry", lb_name()),
        ),
    }
}

fn least_request(choices: u32, bias: Option<f64>, path: &str) -> Result<LbPolicy> {
    if choices < 2 {
        return err(
            &format!("{path}.choice_count"),
            "value must be greater than or equal to 2",
        );
    }
    let bias = bias.unwrap_or(1.0);
    if !(bias >= 0.0 && bias.is_finite()) {
        return err(
            &format!("{path}.active_request_bias.default_value"),
            "value must be greater than or equal to 0",
        );
    }
    Ok(LbPolicy::LeastRequest { choices, bias })
}

fn ring_hash(
    min: Option<u64>,
    max: Option<u64>,
    use_hostname: bool,
    path: &str,
) -> Result<LbPolicy> {
    let (min, max) = (min.unwrap_or(1024), max.unwrap_or(RING_MAX));
    for (v, name) in [(min, "minimum_ring_size"), (max, "maximum_ring_size")] {
        if v > RING_MAX {
            return err(
                &format!("{path}.{name}"),
                format!("value must be less than or equal to {RING_MAX}"),
            );
        }
    }
    if min > max {
        return err(
            path,
            format!("ring hash: minimum_ring_size ({min}) > maximum_ring_size ({max})"),
        );
    }
    Ok(LbPolicy::RingHash {
        min,
        max,
        use_hostname,
    })
}

fn maglev(size: Option<u64>, use_hostname: bool, path: &str) -> Result<LbPolicy> {
    let table_size = size.unwrap_or(65537);
    if let Err(e) = crate::cluster::hash::Maglev::build(&[], &[], table_size) {
        return err(&format!("{path}.table_size"), e.to_string());
    }
    Ok(LbPolicy::Maglev {
        table_size,
        use_hostname,
    })
}

/// The typed form: the first listed policy Ferry implements.
#[allow(deprecated)] // RingHash.use_hostname_for_hashing and hash_balance_factor are still sent
fn typed_policy(p: &pb::LoadBalancingPolicy, path: &str) -> Result<Policy> {
    for (i, pol) in p.policies.iter().enumerate() {
        let pp = format!("{path}.policies[{i}].typed_extension_config.typed_config");
        let Some(any) = pol
            .typed_extension_config
            .as_ref()
            .and_then(|t| t.typed_config.as_ref())
        else {
            continue;
        };
        let typed_slow_start = |s: &Option<typed::common::v3::SlowStartConfig>| match s {
            Some(s) => slow_start(
                &s.slow_start_window,
                &s.aggression,
                &s.min_weight_percent,
                &format!("{pp}.slow_start_config"),
            ),
            None => Ok(None),
        };
        let mut ss = None;
        let lb = match type_name(any) {
            "envoy.extensions.load_balancing_policies.round_robin.v3.RoundRobin" => {
                let r: typed::round_robin::v3::RoundRobin = any_to(any, &pp)?;
                ss = typed_slow_start(&r.slow_start_config)?;
                LbPolicy::RoundRobin
            }
            "envoy.extensions.load_balancing_policies.random.v3.Random" => {
                any_to::<typed::random::v3::Random>(any, &pp)?;
                LbPolicy::Random
            }
            "envoy.extensions.load_balancing_policies.least_request.v3.LeastRequest" => {
                let l: typed::least_request::v3::LeastRequest = any_to(any, &pp)?;
                if l.selection_method != 0 {
                    return err(
                        &format!("{pp}.selection_method"),
                        "only the N_CHOICES selection method is supported by Ferry",
                    );
                }
                ss = typed_slow_start(&l.slow_start_config)?;
                least_request(
                    l.choice_count.map_or(2, |c| c.value),
                    l.active_request_bias.as_ref().map(|b| b.default_value),
                    &pp,
                )?
            }
            "envoy.extensions.load_balancing_policies.ring_hash.v3.RingHash" => {
                let r: typed::ring_hash::v3::RingHash = any_to(any, &pp)?;
                if r.hash_function == 2 {
                    return err(
                        &format!("{pp}.hash_function"),
                        "MURMUR_HASH_2 is not supported by Ferry",
                    );
                }
                let consistent = r.consistent_hashing_lb_config.as_ref();
                if r.hash_balance_factor.is_some()
                    || consistent.is_some_and(|c| c.hash_balance_factor.is_some())
                {
                    return err(
                        &format!("{pp}.hash_balance_factor"),
                        "bounded-load consistent hashing is not supported by Ferry yet",
                    );
                }
                let use_hostname =
                    consistent.map_or(r.use_hostname_for_hashing, |c| c.use_hostname_for_hashing);
                ring_hash(
                    r.minimum_ring_size.map(|v| v.value),
                    r.maximum_ring_size.map(|v| v.value),
                    use_hostname,
                    &pp,
                )?
            }
            "envoy.extensions.load_balancing_policies.maglev.v3.Maglev" => {
                let m: typed::maglev::v3::Maglev = any_to(any, &pp)?;
                let consistent = m.consistent_hashing_lb_config.as_ref();
                if consistent.is_some_and(|c| c.hash_balance_factor.is_some()) {
                    return err(
                        &format!("{pp}.consistent_hashing_lb_config.hash_balance_factor"),
                        "bounded-load consistent hashing is not supported by Ferry yet",
                    );
                }
                maglev(
                    m.table_size.map(|v| v.value),
                    consistent.is_some_and(|c| c.use_hostname_for_hashing),
                    &pp,
                )?
            }
            _ => continue,
        };
        return Ok((lb, ss));
    }
    err(
        &format!("{path}.policies"),
        "none of the listed load balancing policies is supported by Ferry (round_robin, least_request, random, ring_hash, maglev are)",
    )
}
