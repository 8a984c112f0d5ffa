//! `outlier_detection`: when a host is ejected for its errors, with Envoy's defaults.

use super::super::{err, opt_duration, Result};
use envoy_types::pb::envoy::config::cluster::v3::OutlierDetection;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct OutlierCfg {
    /// 0 disables the detector.
    pub consecutive_5xx: u32,
    pub consecutive_gateway_failure: u32,
    pub consecutive_local_origin_failure: u32,
    pub interval: Duration,
    pub base_ejection_time: Duration,
    pub max_ejection_time: Duration,
    pub max_ejection_time_jitter: Duration,
    pub max_ejection_percent: u32,
    pub always_eject_one_host: bool,
    /// Percent chances that a detected outlier is ejected.
    pub enforcing_consecutive_5xx: u32,
    pub enforcing_consecutive_gateway_failure: u32,
    pub enforcing_consecutive_local_origin_failure: u32,
    pub enforcing_success_rate: u32,
    pub enforcing_local_origin_success_rate: u32,
    pub enforcing_failure_percentage: u32,
    pub enforcing_failure_percentage_local_origin: u32,
    pub success_rate_minimum_hosts: u32,
    pub success_rate_request_volume: u32,
    pub success_rate_stdev_factor: u32,
    pub failure_percentage_threshold: u32,
    pub failure_percentage_minimum_hosts: u32,
    pub failure_percentage_request_volume: u32,
    /// Local-origin errors (connect failures, timeouts, resets) are counted apart from the
    /// upstream's own 5xx answers.
    pub split_external_local_origin_errors: bool,
    pub successful_active_health_check_uneject_host: bool,
}

pub fn outlier_detection(o: &Option<OutlierDetection>, path: &str) -> Result<Option<OutlierCfg>> {
    let Some(o) = o else { return Ok(None) };
    if !o.monitors.is_empty() {
        return err(
            &format!("{path}.monitors"),
            "outlier detection monitors are not supported by Ferry",
        );
    }
    if o.detect_degraded_hosts.is_some_and(|b| b.value) {
        return err(
            &format!("{path}.detect_degraded_hosts"),
            "detect_degraded_hosts is not supported by Ferry yet",
        );
    }
    let u = |v: Option<u32>, d: u32| v.unwrap_or(d);
    let pct = |v: Option<u32>, d: u32, name: &str| -> Result<u32> {
        let v = v.unwrap_or(d);
        if v > 100 {
            return err(
                &format!("{path}.{name}"),
                "value must be less than or equal to 100",
            );
        }
        Ok(v)
    };
    let dur = |v, name: &str, d: u64| -> Result<Duration> {
        Ok(opt_duration(v, &format!("{path}.{name}"))?.unwrap_or(Duration::from_millis(d)))
    };
    let interval = dur(&o.interval, "interval", 10_000)?;
    if interval.is_zero() {
        return err(&format!("{path}.interval"), "value must be greater than 0");
    }
    let base_ejection_time = dur(&o.base_ejection_time, "base_ejection_time", 30_000)?;
    if base_ejection_time.is_zero() {
        return err(
            &format!("{path}.base_ejection_time"),
            "value must be greater than 0",
        );
    }
    let max_ejection_time = dur(&o.max_ejection_time, "max_ejection_time", 300_000)?;
    if max_ejection_time < base_ejection_time {
        return err(
            &format!("{path}.max_ejection_time"),
            "max_ejection_time must be greater than or equal to base_ejection_time",
        );
    }
    Ok(Some(OutlierCfg {
        consecutive_5xx: u(o.consecutive_5xx.map(|v| v.value), 5),
        consecutive_gateway_failure: u(o.consecutive_gateway_failure.map(|v| v.value), 5),
        consecutive_local_origin_failure: u(o.consecutive_local_origin_failure.map(|v| v.value), 5),
        interval,
        base_ejection_time,
        max_ejection_time,
        max_ejection_time_jitter: dur(&o.max_ejection_time_jitter, "max_ejection_time_jitter", 0)?,
        max_ejection_percent: pct(
            o.max_ejection_percent.map(|v| v.value),
            10,
            "max_ejection_percent",
        )?,
        always_eject_one_host: o.always_eject_one_host.is_some_and(|b| b.value),
        enforcing_consecutive_5xx: pct(
            o.enforcing_consecutive_5xx.map(|v| v.value),
            100,
            "enforcing_consecutive_5xx",
        )?,
        enforcing_consecutive_gateway_failure: pct(
            o.enforcing_consecutive_gateway_failure.map(|v| v.value),
            0,
            "enforcing_consecutive_gateway_failure",
        )?,
        enforcing_consecutive_local_origin_failure: pct(
            o.enforcing_consecutive_local_origin_failure
                .map(|v| v.value),
            100,
            "enforcing_consecutive_local_origin_failure",
        )?,
        enforcing_success_rate: pct(
            o.enforcing_success_rate.map(|v| v.value),
            100,
            "enforcing_success_rate",
        )?,
        enforcing_local_origin_success_rate: pct(
            o.enforcing_local_origin_success_rate.map(|v| v.value),
            100,
            "enforcing_local_origin_success_rate",
        )?,
        enforcing_failure_percentage: pct(
            o.enforcing_failure_percentage.map(|v| v.value),
            0,
            "enforcing_failure_percentage",
        )?,
        enforcing_failure_percentage_local_origin: pct(
            o.enforcing_failure_percentage_local_origin.map(|v| v.value),
            0,
            "enforcing_failure_percentage_local_origin",
        )?,
        success_rate_minimum_hosts: u(o.success_rate_minimum_hosts.map(|v| v.value), 5),
        success_rate_request_volume: u(o.success_rate_request_volume.map(|v| v.value), 100),
        success_rate_stdev_factor: u(o.success_rate_stdev_factor.map(|v| v.value), 1900),
        failure_percentage_threshold: pct(
            o.failure_percentage_threshold.map(|v| v.value),
            85,
            "failure_percentage_threshold",
        )?,
        failure_percentage_minimum_hosts: u(o.failure_percentage_minimum_hosts.map(|v| v.value), 5),
        failure_percentage_request_volume: u(
            o.failure_percentage_request_volume.map(|v| v.value),
            50,
        ),
        split_external_local_origin_errors: o.split_external_local_origin_errors,
        successful_active_health_check_uneject_host: o
            .successful_active_health_check_uneject_host
            .is_none_or(|b| b.value),
    }))
}
