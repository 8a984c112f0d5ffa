//! Outlier detection's rules as pure functions: the ejection kinds and their enforcement
//! settings, Envoy's `max_ejection_percent` rule and the success-rate threshold.

use crate::config::cluster::outlier::OutlierCfg;

/// Why a host is ejected (the suffix of its `ejections_*` stats).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Consecutive5xx,
    ConsecutiveGateway,
    ConsecutiveLocal,
    SuccessRate,
    LocalSuccessRate,
    FailurePercentage,
    LocalFailurePercentage,
}

impl Kind {
    pub(super) const ALL: [Kind; 7] = [
        Kind::Consecutive5xx,
        Kind::ConsecutiveGateway,
        Kind::ConsecutiveLocal,
        Kind::SuccessRate,
        Kind::LocalSuccessRate,
        Kind::FailurePercentage,
        Kind::LocalFailurePercentage,
    ];

    pub(super) fn name(self) -> &'static str {
        match self {
            Kind::Consecutive5xx => "consecutive_5xx",
            Kind::ConsecutiveGateway => "consecutive_gateway_failure",
            Kind::ConsecutiveLocal => "consecutive_local_origin_failure",
            Kind::SuccessRate => "success_rate",
            Kind::LocalSuccessRate => "local_origin_success_rate",
            Kind::FailurePercentage => "failure_percentage",
            Kind::LocalFailurePercentage => "local_origin_failure_percentage",
        }
    }

    pub(super) fn enforcing(self, c: &OutlierCfg) -> u32 {
        match self {
            Kind::Consecutive5xx => c.enforcing_consecutive_5xx,
            Kind::ConsecutiveGateway => c.enforcing_consecutive_gateway_failure,
            Kind::ConsecutiveLocal => c.enforcing_consecutive_local_origin_failure,
            Kind::SuccessRate => c.enforcing_success_rate,
            Kind::LocalSuccessRate => c.enforcing_local_origin_success_rate,
            Kind::FailurePercentage => c.enforcing_failure_percentage,
            Kind::LocalFailurePercentage => c.enforcing_failure_percentage_local_origin,
        }
    }
}

/// Whether one more host may be ejected: the share ejected with it must not exceed
/// `max_percent` (with `always_eject_one_host`, a first host always may be).
pub fn ejection_allowed(ejected: usize, total: usize, max_percent: u32, always_one: bool) -> bool {
    if total == 0 {
        return false;
    }
    if always_one && ejected == 0 {
        return true;
    }
    100 * (ejected + 1) <= (max_percent as usize) * total
}

/// Success-rate outliers: with at least `min_hosts` hosts of enough volume, the mean of their
/// success rates and the threshold `mean - stdev_factor/1000 × stdev` under which a host is an
/// outlier.
pub fn success_rate_threshold(
    rates: &[Option<f64>],
    min_hosts: u32,
    stdev_factor: u32,
) -> Option<(f64, f64)> {
    let v: Vec<f64> = rates.iter().flatten().copied().collect();
    if v.is_empty() || v.len() < min_hosts as usize {
        return None;
    }
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
    Some((mean, mean - f64::from(stdev_factor) / 1000.0 * var.sqrt()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ejection_limit() {
        assert!(
            !ejection_allowed(0, 2, 10, false),
            "one of two is 50% > 10%"
        );
        assert!(ejection_allowed(0, 2, 50, false));
        assert!(!ejection_allowed(1, 2, 50, false));
        assert!(ejection_allowed(1, 20, 10, false), "two of 20 is 10%");
        assert!(!ejection_allowed(2, 20, 10, false), "three of 20 is 15%");
        assert!(!ejection_allowed(0, 2, 0, false));
        assert!(ejection_allowed(0, 2, 0, true));
    }

    #[test]
    fn success_rate_outliers() {
        let rates = [
            Some(100.0),
            Some(100.0),
            Some(100.0),
            Some(100.0),
            Some(50.0),
        ];
        let (mean, t) = success_rate_threshold(&rates, 5, 1900).expect("enough hosts");
        assert!((mean - 90.0).abs() < 1e-9);
        // stdev 20: 90 - 1.9 × 20 = 52.
        assert!((t - 52.0).abs() < 1e-9, "{t}");
        assert!(success_rate_threshold(&rates[..4], 5, 1900).is_none());
        assert!(success_rate_threshold(&[None; 6], 5, 1900).is_none());
    }
}
