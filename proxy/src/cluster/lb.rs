//! Load-balancing policies as pure functions over a host set: (weighted) round robin, random
//! and least request (power of `choice_count` choices), as Envoy's ROUND_ROBIN, RANDOM and
//! LEAST_REQUEST pick.

/// The pick order of smooth weighted round robin over `weights`: one period (the sum of the
/// weights divided by their gcd), each index appearing in proportion to its weight and spread
/// out rather than bunched. Empty when all weights are equal (plain round robin then).
pub fn schedule(weights: &[u32]) -> Vec<u32> {
    if weights.windows(2).all(|w| w[0] == w[1]) {
        return Vec::new();
    }
    let g = weights.iter().fold(0u32, |a, &b| gcd(a, b)).max(1);
    let w: Vec<i64> = weights.iter().map(|&x| i64::from(x / g)).collect();
    let total: i64 = w.iter().sum();
    // A very long period is capped: proportions then hold over the capped cycle only.
    let len = total.min(1 << 16) as usize;
    let mut current = vec![0i64; w.len()];
    let mut out = Vec::with_capacity(len);
    for _ in 0..len {
        for (c, wi) in current.iter_mut().zip(&w) {
            *c += wi;
        }
        let (best, _) = current
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(&a.0)))
            .unwrap_or((0, &0));
        current[best] -= total;
        out.push(best as u32);
    }
    out
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Weighted random: the index whose cumulative weight range holds `r` (`0 <= r < total`).
pub fn weighted_index(cumulative: &[u64], r: u64) -> usize {
    cumulative
        .partition_point(|&c| c <= r)
        .min(cumulative.len().saturating_sub(1))
}

/// Least request among `choices` random candidates: the one with the fewest active requests
/// for its weight (`active / weight`, compared without division); ties keep the earlier draw.
pub fn least_request(
    candidates: impl Iterator<Item = usize>,
    load: impl Fn(usize) -> (u64, u32),
) -> Option<usize> {
    let mut best: Option<(usize, u64, u32)> = None;
    for i in candidates {
        let (active, weight) = load(i);
        let better = match best {
            None => true,
            // active_i / w_i < active_b / w_b
            Some((_, a, w)) => {
                u128::from(active) * u128::from(w) < u128::from(a) * u128::from(weight)
            }
        };
        if better {
            best = Some((i, active, weight));
        }
    }
    best.map(|(i, _, _)| i)
}

/// An earliest-deadline-first schedule with weights that change between picks, as Envoy's
/// LEAST_REQUEST uses when host weights differ: the entry with the earliest deadline is picked
/// and goes back with its deadline moved on by 1 / its weight at that moment.
#[derive(Debug, Default)]
pub struct Edf {
    /// (deadline, insertion order, index)
    entries: Vec<(f64, u64, usize)>,
    now: f64,
    seq: u64,
}

impl Edf {
    /// A schedule over `weights` (indices into them), all starting at time 0.
    pub fn new(weights: impl Iterator<Item = f64>) -> Edf {
        let mut e = Edf::default();
        for (i, w) in weights.enumerate() {
            e.add(i, w);
        }
        e
    }

    fn add(&mut self, index: usize, weight: f64) {
        if weight > 0.0 && weight.is_finite() {
            self.seq += 1;
            self.entries
                .push((self.now + 1.0 / weight, self.seq, index));
        }
    }

    /// The next index; `weight(i)` gives its weight for its next turn.
    pub fn pick(&mut self, weight: impl Fn(usize) -> f64) -> Option<usize> {
        let (at, _) = self
            .entries
            .iter()
            .enumerate()
            .min_by(|a, b| a.1 .0.total_cmp(&b.1 .0).then(a.1 .1.cmp(&b.1 .1)))?;
        let (deadline, _, index) = self.entries.swap_remove(at);
        self.now = deadline;
        self.add(index, weight(index));
        Some(index)
    }
}

/// Envoy's dynamic least-request weight: `weight / (active + 1)^bias`.
pub fn least_request_weight(weight: u32, active: u64, bias: f64) -> f64 {
    if bias == 0.0 {
        return f64::from(weight);
    }
    f64::from(weight) / (active.saturating_add(1) as f64).powf(bias)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weighted_round_robin_keeps_proportions_and_spreads() {
        assert!(schedule(&[1, 1, 1]).is_empty());
        let s = schedule(&[1, 3]);
        assert_eq!(s.len(), 4);
        assert_eq!(s.iter().filter(|&&i| i == 1).count(), 3);
        assert_eq!(schedule(&[2, 6]), schedule(&[1, 3]), "reduced by the gcd");
        let s = schedule(&[5, 1, 1]);
        assert_eq!(
            s,
            vec![0, 0, 1, 0, 2, 0, 0],
            "smooth: the light hosts are spread out"
        );
    }

    #[test]
    fn weighted_random_ranges() {
        let cum = [1, 4]; // weights 1 and 3
        assert_eq!(weighted_index(&cum, 0), 0);
        assert_eq!(weighted_index(&cum, 1), 1);
        assert_eq!(weighted_index(&cum, 3), 1);
    }

    #[test]
    fn edf_follows_weights_and_their_changes() {
        let w = [1.0, 3.0];
        let mut e = Edf::new(w.iter().copied());
        let picks: Vec<usize> = (0..40).filter_map(|_| e.pick(|i| w[i])).collect();
        assert_eq!(picks.iter().filter(|&&i| i == 0).count(), 10);
        // A host whose weight drops (active requests) is picked less from then on.
        let mut e = Edf::new(w.iter().copied());
        let picks: Vec<usize> = (0..40)
            .filter_map(|_| e.pick(|i| if i == 1 { 0.5 } else { 1.0 }))
            .collect();
        assert!(picks.iter().filter(|&&i| i == 1).count() < 20, "{picks:?}");
        assert_eq!(least_request_weight(4, 1, 1.0), 2.0);
        assert_eq!(least_request_weight(4, 3, 0.0), 4.0);
        assert_eq!(least_request_weight(9, 8, 0.5), 3.0);
    }

    #[test]
    fn least_request_prefers_the_less_loaded_per_weight() {
        let load = |i: usize| [(5u64, 1u32), (2, 1), (2, 1), (3, 3)][i];
        assert_eq!(least_request([0, 1].into_iter(), load), Some(1));
        assert_eq!(
            least_request([1, 2].into_iter(), load),
            Some(1),
            "a tie keeps the first"
        );
        assert_eq!(
            least_request([1, 3].into_iter(), load),
            Some(3),
            "3 active over weight 3"
        );
        assert_eq!(least_request(std::iter::empty(), load), None);
    }
}
