//! Priority levels as Envoy spreads load over them: each level's health score (the share of
//! its hosts that are healthy, times the overprovisioning factor, capped at 100), the
//! priority load that follows from the scores, and panic mode.

/// One level's host counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    pub healthy: u32,
    pub degraded: u32,
    pub total: u32,
}

/// The share of requests (percent) each level's healthy hosts and degraded hosts take, and
/// whether a level is in panic (then it picks among all its hosts).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Loads {
    pub healthy: Vec<u32>,
    pub degraded: Vec<u32>,
    pub panic: Vec<bool>,
}

fn score(n: u32, total: u32, overprovisioning: u32) -> u32 {
    if total == 0 {
        return 0;
    }
    (u64::from(overprovisioning) * u64::from(n) / u64::from(total)).min(100) as u32
}

/// Distributes `share` percent over the levels by their scores, each level taking its score
/// scaled to `normalized` but no more than what is left.
fn spread(scores: &[u32], normalized: u32, left: &mut u32) -> Vec<u32> {
    scores
        .iter()
        .map(|&s| {
            let want = if normalized == 0 {
                0
            } else {
                (u64::from(s) * 100 / u64::from(normalized)) as u32
            };
            let take = want.min(*left);
            *left -= take;
            take
        })
        .collect()
}

/// Envoy's priority load for levels `counts` (P0 first).
pub fn loads(counts: &[Counts], overprovisioning: u32, panic_threshold: f64) -> Loads {
    let n = counts.len();
    if n == 0 {
        return Loads::default();
    }
    let healthy: Vec<u32> = counts
        .iter()
        .map(|c| score(c.healthy, c.total, overprovisioning))
        .collect();
    let degraded: Vec<u32> = counts
        .iter()
        .map(|c| score(c.degraded, c.total, overprovisioning))
        .collect();
    let normalized = healthy.iter().chain(&degraded).sum::<u32>().min(100);
    let in_panic = |c: &Counts| {
        c.total == 0
            || 100.0 * f64::from(c.healthy + c.degraded) / f64::from(c.total) < panic_threshold
    };
    let panic: Vec<bool> = counts
        .iter()
        .map(|c| normalized < 100 && in_panic(c))
        .collect();
    if panic.iter().all(|&p| p) {
        // Total panic: the load follows the host counts of the levels.
        let total: u64 = counts.iter().map(|c| u64::from(c.total)).sum();
        let mut healthy = vec![0u32; n];
        if let Some(total) = std::num::NonZeroU64::new(total) {
            let mut left = 100u32;
            for (h, c) in healthy.iter_mut().zip(counts) {
                *h = ((u64::from(c.total) * 100 / total) as u32).min(left);
                left -= *h;
            }
            if let Some(first) = healthy.iter_mut().zip(counts).find(|(_, c)| c.total > 0) {
                *first.0 += left;
            }
        } else {
            healthy[0] = 100;
        }
        return Loads {
            healthy,
            degraded: vec![0; n],
            panic,
        };
    }
    let mut left = 100u32;
    let mut h = spread(&healthy, normalized, &mut left);
    let mut d = spread(&degraded, normalized, &mut left);
    // Rounding leaves a remainder: it goes to the first level with healthy, else degraded,
    // capacity.
    if left > 0 {
        if let Some(i) = healthy.iter().position(|&s| s > 0) {
            h[i] += left;
        } else if let Some(i) = degraded.iter().position(|&s| s > 0) {
            d[i] += left;
        }
    }
    Loads {
        healthy: h,
        degraded: d,
        panic,
    }
}

/// The level (and whether its degraded hosts) for `r` in 0..100.
pub fn choose(loads: &Loads, r: u32) -> (usize, bool) {
    let mut acc = 0;
    for (i, l) in loads.healthy.iter().enumerate() {
        acc += l;
        if r < acc {
            return (i, false);
        }
    }
    for (i, l) in loads.degraded.iter().enumerate() {
        acc += l;
        if r < acc {
            return (i, true);
        }
    }
    (0, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(healthy: u32, total: u32) -> Counts {
        Counts {
            healthy,
            degraded: 0,
            total,
        }
    }

    #[test]
    fn documented_examples() {
        // Envoy's table (P1 fully healthy): P0 healthy share → traffic to P0.
        for (healthy, p0) in [(100, 100), (72, 100), (71, 99), (50, 70), (25, 35), (0, 0)] {
            let l = loads(&[c(healthy, 100), c(10, 10)], 140, 50.0);
            assert_eq!(l.healthy, vec![p0, 100 - p0], "{healthy}% healthy");
            assert_eq!(l.panic, vec![false, false]);
        }
    }

    #[test]
    fn normalised_when_total_health_is_short() {
        // P0 20% healthy (score 28), P1 20% healthy (28): 56 normalised to 100.
        let l = loads(&[c(2, 10), c(2, 10)], 140, 50.0);
        assert_eq!(l.healthy, vec![50, 50]);
        assert_eq!(l.panic, vec![true, true]);
        // Both in panic: the load follows host counts.
        let l = loads(&[c(1, 10), c(1, 30)], 140, 50.0);
        assert_eq!(l.healthy, vec![25, 75]);
    }

    #[test]
    fn single_level_panic() {
        let l = loads(&[c(1, 3)], 140, 50.0);
        assert_eq!(l.healthy, vec![100]);
        assert_eq!(l.panic, vec![true], "33% healthy is under 50%");
        let l = loads(&[c(1, 2)], 140, 50.0);
        assert_eq!(
            l.panic,
            vec![false],
            "50% is not under 50%; score 70 → all of it"
        );
        assert_eq!(l.healthy, vec![100]);
        let l = loads(&[c(0, 2)], 140, 0.0);
        assert_eq!(l.panic, vec![false], "threshold 0 disables panic");
        assert_eq!(l.healthy, vec![0]);
    }

    #[test]
    fn degraded_hosts_take_what_healthy_ones_cannot() {
        let l = loads(
            &[Counts {
                healthy: 1,
                degraded: 1,
                total: 2,
            }],
            140,
            50.0,
        );
        assert_eq!(
            (l.healthy.clone(), l.degraded.clone()),
            (vec![70], vec![30])
        );
        assert_eq!(choose(&l, 69), (0, false));
        assert_eq!(choose(&l, 70), (0, true));
    }
}
