//! Consistent-hash load balancing as pure functions, matching Envoy's RING_HASH and MAGLEV
//! policies: the XXH64 hash, the ketama-style ring, the Maglev lookup table, and the helpers
//! that turn a route's `hash_policy` into one 64-bit request hash.
//!
//! Hosts are given as parallel slices of hash keys and weights. Every pick returns the index of
//! a host in those slices. Nothing here panics, whatever the input.

use std::fmt::{self, Write as _};

const P1: u64 = 0x9E37_79B1_85EB_CA87;
const P2: u64 = 0xC2B2_AE3D_27D4_EB4F;
const P3: u64 = 0x1656_67B1_9E37_79F9;
const P4: u64 = 0x85EB_CA77_C2B2_AE63;
const P5: u64 = 0x27D4_EB2F_1656_67C5;

/// Envoy's largest allowed `minimum_ring_size` and `maximum_ring_size`; larger values are capped.
pub const MAX_RING_SIZE: u64 = 8 * 1024 * 1024;
/// A memory guard: a ring never holds more entries than this, even for weights that sum to
/// far more than 1 (which Envoy never produces).
const ENTRY_LIMIT: usize = 2 * MAX_RING_SIZE as usize;
/// Envoy's largest allowed Maglev `table_size`.
pub const MAX_MAGLEV_TABLE_SIZE: u64 = 5_000_011;

/// The classic 64-bit xxHash (XXH64, not XXH3) of `data` with `seed`.
pub fn xxh64(data: &[u8], seed: u64) -> u64 {
    let stripes = data.chunks_exact(32);
    let words = stripes.remainder().chunks_exact(8);
    let tail = words.remainder();
    let mut h = match data.len() {
        0..32 => seed.wrapping_add(P5),
        _ => xxh64_stripes(stripes, seed),
    };
    h = h.wrapping_add(data.len() as u64);
    for word in words {
        h = mix(h ^ round(0, le(word)), 27, P1, P4);
    }
    let (four, bytes) = tail.split_at(if tail.len() >= 4 { 4 } else { 0 });
    if !four.is_empty() {
        h = mix(h ^ le(four).wrapping_mul(P1), 23, P2, P3);
    }
    for &b in bytes {
        h = mix(h ^ u64::from(b).wrapping_mul(P5), 11, P1, 0);
    }
    h = (h ^ (h >> 33)).wrapping_mul(P2);
    h = (h ^ (h >> 29)).wrapping_mul(P3);
    h ^ (h >> 32)
}

/// Reads up to eight bytes as a little-endian integer.
fn le(bytes: &[u8]) -> u64 {
    let mut buf = [0u8; 8];
    buf.iter_mut().zip(bytes).for_each(|(d, s)| *d = *s);
    u64::from_le_bytes(buf)
}

/// `rotl(h, rot) * mul + add`, all wrapping.
fn mix(h: u64, rot: u32, mul: u64, add: u64) -> u64 {
    h.rotate_left(rot).wrapping_mul(mul).wrapping_add(add)
}

fn round(acc: u64, lane: u64) -> u64 {
    mix(acc.wrapping_add(lane.wrapping_mul(P2)), 31, P1, 0)
}

/// Folds the full 32-byte stripes into four accumulators and merges them.
fn xxh64_stripes(stripes: std::slice::ChunksExact<'_, u8>, seed: u64) -> u64 {
    let mut v = [P1.wrapping_add(P2), P2, 0, P1.wrapping_neg()].map(|p| seed.wrapping_add(p));
    for stripe in stripes {
        for (acc, lane) in v.iter_mut().zip(stripe.chunks_exact(8)) {
            *acc = round(*acc, le(lane));
        }
    }
    let h = v
        .iter()
        .zip([1, 7, 12, 18])
        .fold(0u64, |h, (lane, r)| h.wrapping_add(lane.rotate_left(r)));
    v.iter()
        .fold(h, |h, &lane| mix(h ^ round(0, lane), 0, P1, P4))
}

/// Envoy's normalized host weights: `weight * locality_weight / sum`, in input order and with
/// the same f64 operations. Empty when the sum is 0 or exceeds `u32::MAX` (Envoy bails out).
/// For locality-weighted clusters call it once per locality (with that locality's share) and
/// concatenate the results, keeping the key slice aligned.
pub fn normalize_weights(weights: &[u32], locality_weight: f64) -> Vec<f64> {
    let sum: u64 = weights.iter().map(|&w| u64::from(w)).sum();
    if sum == 0 || sum > u64::from(u32::MAX) {
        return Vec::new();
    }
    weights
        .iter()
        .map(|&w| f64::from(w) * locality_weight / sum as f64)
        .collect()
}

/// One host as the table builders see it: its index, hash key and normalized weight.
#[derive(Clone, Copy)]
struct Weighted<'a> {
    index: u32,
    key: &'a str,
    weight: f64,
}

/// Pairs keys with weights, dropping hosts whose weight is not in (0, 1] (Envoy never produces
/// such weights; dropping them keeps tables bounded and free of NaN).
fn weighted<'a>(keys: &[&'a str], weights: &[f64]) -> Vec<Weighted<'a>> {
    keys.iter()
        .zip(weights)
        .zip(0u32..)
        .filter(|((_, &w), _)| w > 0.0 && w <= 1.0)
        .map(|((&key, &weight), index)| Weighted { index, key, weight })
        .collect()
}

/// A ketama-style hash ring: `(hash, host index)` entries sorted by hash.
#[derive(Clone, Debug, Default)]
pub struct Ring {
    entries: Vec<(u64, u32)>,
    size: u64,
    hashes_per_host: (u64, u64),
}

impl Ring {
    /// Builds the ring from normalized weights (see [`normalize_weights`]) in Envoy's order.
    /// Each host gets entries `key_0, key_1, ...` hashed with XXH64 (seed 0), counted by
    /// running totals of `scale * weight`, where
    /// `scale = min(ceil(min_w * min_ring) / min_w, max_ring)`. Sizes above [`MAX_RING_SIZE`]
    /// are capped to it.
    pub fn build(keys: &[&str], weights: &[f64], min_ring_size: u64, max_ring_size: u64) -> Ring {
        let hosts = weighted(keys, weights);
        if hosts.is_empty() {
            return Ring::default();
        }
        let min_w = hosts.iter().fold(1.0, |m: f64, h| m.min(h.weight));
        let [min_ring, max_ring] =
            [min_ring_size, max_ring_size].map(|n| n.min(MAX_RING_SIZE) as f64);
        let scale = ((min_w * min_ring).ceil() / min_w).min(max_ring);
        let size = scale.ceil() as u64;
        let mut ring = Ring {
            entries: Vec::with_capacity(usize::try_from(size).unwrap_or(0)),
            size,
            hashes_per_host: (size, 0),
        };
        let (mut current, mut target) = (0.0f64, 0.0f64);
        for host in &hosts {
            target += scale * host.weight;
            let n = ring.add_host(host, &mut current, target);
            ring.hashes_per_host = (ring.hashes_per_host.0.min(n), ring.hashes_per_host.1.max(n));
        }
        ring.entries.sort_by_key(|e| e.0);
        ring
    }

    /// Pushes entries for one host until the running count reaches `target`; returns how many.
    fn add_host(&mut self, host: &Weighted, current: &mut f64, target: f64) -> u64 {
        let mut key = format!("{}_", host.key);
        let base = key.len();
        let mut i = 0u64;
        while *current < target && self.entries.len() < ENTRY_LIMIT {
            key.truncate(base);
            let _ = write!(key, "{i}");
            self.entries.push((xxh64(key.as_bytes(), 0), host.index));
            i += 1;
            *current += 1.0;
        }
        i
    }

    /// The host of the first entry whose hash is `>= hash`, wrapping to the first entry.
    pub fn pick(&self, hash: u64) -> Option<u32> {
        self.pick_attempt(hash, 0)
    }

    /// Like [`Ring::pick`], but retry number `attempt` steps that many entries further on.
    pub fn pick_attempt(&self, hash: u64, attempt: u32) -> Option<u32> {
        let len = self.entries.len().max(1);
        let first = self.entries.partition_point(|e| e.0 < hash) % len;
        let idx = (first as u64 + u64::from(attempt)) % len as u64;
        self.entries.get(idx as usize).map(|e| e.1)
    }

    /// The sorted `(hash, host index)` entries.
    pub fn entries(&self) -> &[(u64, u32)] {
        &self.entries
    }

    /// The `ring_hash_lb.size` gauge: `ceil(scale)`, 0 for an empty ring.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The `ring_hash_lb.{min,max}_hashes_per_host` gauges, `(0, 0)` for an empty ring.
    pub fn hashes_per_host(&self) -> (u64, u64) {
        self.hashes_per_host
    }
}

/// Why a Maglev table size was rejected; the message is Envoy's config error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaglevError {
    /// The size is not a prime number.
    NotPrime(u64),
    /// The size exceeds [`MAX_MAGLEV_TABLE_SIZE`].
    TooLarge(u64),
}

impl fmt::Display for MaglevError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MaglevError::NotPrime(_) => write!(f, "The table size of maglev must be prime number"),
            MaglevError::TooLarge(n) => {
                write!(f, "maglev table_size {n} > {MAX_MAGLEV_TABLE_SIZE}")
            }
        }
    }
}

impl std::error::Error for MaglevError {}

/// A Maglev lookup table of host indices.
#[derive(Clone, Debug, Default)]
pub struct Maglev {
    table: Vec<u32>,
    entries_per_host: (u64, u64),
}

impl Maglev {
    /// Builds the table from normalized weights. Hosts are taken in key order; on each of its
    /// weighted turns a host takes the next free slot of its permutation
    /// `(offset + skip * next) % M`, until all M slots are taken.
    ///
    /// # Errors
    /// When `m` (Envoy's `table_size`) is not prime or exceeds [`MAX_MAGLEV_TABLE_SIZE`].
    pub fn build(keys: &[&str], weights: &[f64], m: u64) -> Result<Maglev, MaglevError> {
        if m > MAX_MAGLEV_TABLE_SIZE {
            return Err(MaglevError::TooLarge(m));
        }
        if m < 2 || (2..=m.isqrt()).any(|d| m.is_multiple_of(d)) {
            return Err(MaglevError::NotPrime(m));
        }
        let mut hosts = weighted(keys, weights);
        if hosts.is_empty() {
            return Ok(Maglev::default());
        }
        hosts.sort_by(|a, b| a.key.cmp(b.key).then(a.index.cmp(&b.index)));
        let max_w = hosts.iter().fold(0.0, |acc: f64, h| acc.max(h.weight));
        let mut slots: Vec<Slot> = hosts.iter().map(|&host| Slot::new(host, m)).collect();
        let table = fill(&mut slots, max_w, m);
        let counts = slots.iter().map(|s| s.count);
        let entries_per_host = (counts.clone().min().unwrap_or(0), counts.max().unwrap_or(0));
        Ok(Maglev {
            table,
            entries_per_host,
        })
    }

    /// The host at `table[hash % M]`; `None` when there are no hosts.
    pub fn pick(&self, hash: u64) -> Option<u32> {
        self.pick_attempt(hash, 0)
    }

    /// Like [`Maglev::pick`], but retry number `attempt` first XORs the hash with `-attempt`.
    pub fn pick_attempt(&self, hash: u64, attempt: u32) -> Option<u32> {
        let h = hash ^ 0u64.wrapping_sub(u64::from(attempt));
        let idx = h % (self.table.len() as u64).max(1);
        self.table.get(idx as usize).copied()
    }

    /// The table of host indices (empty when there are no hosts).
    pub fn table(&self) -> &[u32] {
        &self.table
    }

    /// The `maglev_lb.{min,max}_entries_per_host` gauges, `(0, 0)` when there are no hosts.
    pub fn entries_per_host(&self) -> (u64, u64) {
        self.entries_per_host
    }
}

/// One host's progress through its Maglev permutation while the table fills.
struct Slot<'a> {
    host: Weighted<'a>,
    offset: u64,
    skip: u64,
    next: u64,
    target: f64,
    count: u64,
}

impl<'a> Slot<'a> {
    fn new(host: Weighted<'a>, m: u64) -> Slot<'a> {
        let key = host.key.as_bytes();
        let (offset, skip) = (xxh64(key, 0) % m, xxh64(key, 1) % (m - 1) + 1);
        Slot {
            host,
            offset,
            skip,
            next: 0,
            target: 0.0,
            count: 0,
        }
    }

    fn position(&self, m: u64) -> usize {
        ((self.offset + self.skip * self.next) % m) as usize
    }
}

/// Runs Maglev's weighted rounds over `slots` (at least one) until all `m` cells are taken.
/// A host takes a turn when `iteration * weight >= target`; each turn raises its target by
/// `max_w`. Each turn takes the first free cell along the host's permutation.
fn fill(slots: &mut [Slot], max_w: f64, m: u64) -> Vec<u32> {
    let mut table: Vec<Option<u32>> = vec![None; m as usize];
    let (mut filled, mut iteration) = (0u64, 1u64);
    while filled < m {
        for slot in slots.iter_mut() {
            if filled >= m {
                break;
            }
            if (iteration as f64) * slot.host.weight < slot.target {
                continue;
            }
            slot.target += max_w;
            while table.get(slot.position(m)).is_some_and(Option::is_some) {
                slot.next += 1;
            }
            if let Some(cell) = table.get_mut(slot.position(m)) {
                *cell = Some(slot.host.index);
            }
            (slot.next, slot.count, filled) = (slot.next + 1, slot.count + 1, filled + 1);
        }
        iteration += 1;
    }
    table.into_iter().flatten().collect()
}

/// Folds one policy's hash into the request hash: `rotl(acc, 1) ^ next`, or `next` if first.
pub fn combine(acc: Option<u64>, next: u64) -> u64 {
    acc.map_or(0, |a| a.rotate_left(1)) ^ next
}

/// The hash of a `header` policy: the values sorted byte-wise, then XXH64 chained over them
/// (each hash seeds the next, starting from 0), so the order of repeated headers does not
/// matter. `None` when the header is absent.
pub fn header_hash(values: &[&[u8]]) -> Option<u64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    Some(sorted.iter().fold(0, |seed, value| xxh64(value, seed)))
}

/// The value of a generated hash cookie: 16 lowercase hex digits of XXH64 over the remote
/// then local address strings (e.g. `"10.0.0.5:43210"` and `"10.0.0.1:8080"`).
pub fn cookie_value(remote: &str, local: &str) -> String {
    format!("{:016x}", xxh64(format!("{remote}{local}").as_bytes(), 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYS: [&str; 3] = ["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"];
    const BIG: u64 = MAX_RING_SIZE;

    fn ring(keys: &[&str], weights: &[u32], min: u64, max: u64) -> Ring {
        Ring::build(keys, &normalize_weights(weights, 1.0), min, max)
    }

    fn maglev(keys: &[&str], weights: &[u32], size: u64) -> Result<Maglev, MaglevError> {
        Maglev::build(keys, &normalize_weights(weights, 1.0), size)
    }

    fn table(keys: &[&str], weights: &[u32]) -> Maglev {
        maglev(keys, weights, 65537).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Pseudo-random request hashes.
    fn hashes() -> impl Iterator<Item = u64> {
        (0..30_000u64).map(|i| xxh64(&i.to_le_bytes(), 7))
    }

    /// Whether each host's share of the hashes is within 3 points of `want`.
    fn shares_near(pick: impl Fn(u64) -> Option<u32>, want: &[f64]) -> bool {
        let mut got = vec![0.0; want.len()];
        for i in hashes().filter_map(&pick) {
            if let Some(c) = got.get_mut(i as usize) {
                *c += 1.0 / 30_000.0;
            }
        }
        got.iter().zip(want).all(|(g, w)| (g - w).abs() <= 0.03)
    }

    /// Of the hashes `before` sends to hosts other than 2: how many `after` moves, out of how many.
    fn moved(before: impl Fn(u64) -> Option<u32>, after: impl Fn(u64) -> Option<u32>) -> [u32; 2] {
        let kept = hashes().filter(|&h| before(h) != Some(2));
        kept.fold([0, 0], |[m, n], h| {
            [m + u32::from(before(h) != after(h)), n + 1]
        })
    }

    #[test]
    fn hash_vectors() {
        let long = b"Nobody inspects the spammish repetition";
        let mut big: Vec<u8> = (0..=255u8).cycle().take(768).collect();
        big.extend_from_slice(b"xyz");
        let cases: [(&[u8], u64, u64); 10] = [
            (b"", 0, 0xEF46_DB37_51D8_E999),
            (b"abc", 0, 0x44BC_2CF5_AD77_0999),
            (b"127.0.0.1:8080", 0, 0xc65e_86b0_00fb_3cbf),
            (b"127.0.0.1:8080", 1, 0xa5d6_dc00_53ab_4ed8),
            (b"127.0.0.1:8080_0", 0, 0xf673_a43b_9624_fa24),
            (b"127.0.0.1:8080_1", 0, 0x6cd1_dda6_65bf_7561),
            (b"10.0.0.1", 0, 0xed16_cb68_c786_e3d7),
            (long, 0, 0xfbce_a83c_8a37_8bf1),
            (long, 0x9e37_79b9_7f4a_7c15, 0xeb8b_157c_a26c_bf34),
            (&big, 12345, 0x6b1b_5d67_1fb9_3b43),
        ];
        for (data, seed, want) in cases {
            assert_eq!(xxh64(data, seed), want, "{seed}");
        }
    }

    #[test]
    fn request_hash_helpers() {
        assert_eq!(header_hash(&[b"foo", b"bar"]), Some(0x5c44_1824_061e_14ff));
        assert_eq!(header_hash(&[b"bar", b"foo"]), Some(0x5c44_1824_061e_14ff));
        assert_eq!(header_hash(&[b"10.0.0.1"]), Some(0xed16_cb68_c786_e3d7));
        assert_eq!(header_hash(&[]), None);
        assert_eq!(combine(None, 42), 42);
        assert_eq!(combine(Some(0x8000_0000_0000_0001), 1), 2);
        let want = format!("{:016x}", xxh64(b"10.0.0.5:4321010.0.0.1:8080", 0));
        assert_eq!(cookie_value("10.0.0.5:43210", "10.0.0.1:8080"), want);
        assert_eq!(cookie_value("", "").len(), 16);
    }

    #[test]
    fn ring_entry_counts_follow_running_totals() {
        for (n, each) in [1, 2, 3, 5, 7, 10]
            .into_iter()
            .zip([1024, 512, 342, 205, 147, 103])
        {
            let keys: Vec<String> = (0..n).map(|i| format!("h{i}")).collect();
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            let r = ring(&keys, &vec![1; n], 1024, BIG);
            assert_eq!(
                (r.entries().len(), r.hashes_per_host()),
                (n * each as usize, (each, each))
            );
        }
        assert_eq!(ring(&KEYS, &[1; 3], 1024, BIG).size(), 1026);
        let one = ring(&["127.0.0.1:8080"], &[1], 1024, BIG);
        assert!(one.entries().contains(&(0xf673_a43b_9624_fa24, 0)));
        let capped = ring(&KEYS, &[1; 3], 1024, 100);
        assert_eq!((capped.size(), capped.entries().len()), (100, 100));
    }

    #[test]
    fn ring_pick_is_lower_bound_with_wrap() {
        let r = ring(&KEYS, &[1, 2, 3], 64, 1024);
        let e = r.entries();
        assert!(e.windows(2).all(|w| w[0].0 <= w[1].0));
        let (first, last) = (e[0], e[e.len() - 1]);
        assert_eq!(r.pick(0), Some(first.1));
        assert_eq!(
            (r.pick(e[5].0), r.pick(e[5].0 + 1)),
            (Some(e[5].1), Some(e[6].1))
        );
        assert_eq!(r.pick(last.0 + 1), Some(first.1));
        assert_eq!(r.pick_attempt(e[5].0, 2), Some(e[7].1));
        assert_eq!(r.pick_attempt(last.0, 1), Some(first.1));
    }

    #[test]
    fn distribution_within_three_percent() {
        let (even, skewed) = (
            ring(&KEYS, &[1; 3], 1024, BIG),
            ring(&KEYS[..2], &[1, 3], 1024, BIG),
        );
        assert!(shares_near(|h| even.pick(h), &[1.0 / 3.0; 3]));
        assert!(shares_near(|h| skewed.pick(h), &[0.25, 0.75]));
        let (even, skewed) = (table(&KEYS, &[1; 3]), table(&KEYS[..2], &[1, 3]));
        assert!(shares_near(|h| even.pick(h), &[1.0 / 3.0; 3]));
        assert!(shares_near(|h| skewed.pick(h), &[0.25, 0.75]));
    }

    #[test]
    fn removing_a_host_keeps_other_keys() {
        // Survivors grow from 342 to 512 entries each; keys move only to the added entries.
        let (before, after) = (
            ring(&KEYS, &[1; 3], 1024, BIG),
            ring(&KEYS[..2], &[1; 2], 1024, BIG),
        );
        let kept = before.entries().iter().filter(|e| e.1 != 2);
        assert!(kept.clone().all(|e| after.entries().contains(e)));
        let [m, n] = moved(|h| before.pick(h), |h| after.pick(h));
        assert!(m * 5 < n, "ring moved {m} of {n}");
        // With one entry per host either way, surviving keys keep their host exactly.
        let (before, after) = (
            ring(&KEYS, &[1; 3], 1, BIG),
            ring(&KEYS[..2], &[1; 2], 1, BIG),
        );
        assert_eq!(moved(|h| before.pick(h), |h| after.pick(h))[0], 0);
        let (before, after) = (table(&KEYS, &[1; 3]), table(&KEYS[..2], &[1; 2]));
        let [m, n] = moved(|h| before.pick(h), |h| after.pick(h));
        assert!(m * 10 < n, "maglev moved {m} of {n}");
    }

    #[test]
    fn maglev_table_is_full() {
        let m = table(&KEYS, &[1; 3]);
        assert_eq!(m.table().len(), 65537);
        assert!(m.table().iter().all(|&i| i < 3));
        assert_eq!(m.entries_per_host(), (21845, 21846));
        let w = table(&KEYS[..2], &[1, 3]);
        assert_eq!(w.pick(7), w.table().get(7).copied());
        let retry = w.table().get((!7u64 % 65537) as usize).copied();
        assert_eq!(w.pick_attempt(7, 1), retry);
    }

    #[test]
    fn bad_input_is_rejected_or_ignored_without_panics() {
        let err = |size| maglev(&KEYS, &[1; 3], size).err();
        assert_eq!(err(65536), Some(MaglevError::NotPrime(65536)));
        assert_eq!(err(1), Some(MaglevError::NotPrime(1)));
        assert_eq!(err(5_000_013), Some(MaglevError::TooLarge(5_000_013)));
        assert_eq!(maglev(&KEYS, &[1; 3], 2).map(|m| m.table().len()), Ok(2));
        let empty = maglev(&[], &[], 7).map(|m| (m.pick(1), m.entries_per_host()));
        assert_eq!(empty, Ok((None, (0, 0))));
        assert_eq!(ring(&[], &[], 1024, 1024).pick(1), None);
        assert_eq!(ring(&KEYS, &[0; 3], 1024, 1024).pick(1), None);
        assert_eq!(ring(&KEYS, &[1], 16, 16).entries().len(), 16);
        let nan = Ring::build(&KEYS, &[f64::NAN, 2.0, 0.5], 16, 16);
        assert!(nan.entries().iter().all(|e| e.1 == 2));
        assert_eq!(
            ring(&KEYS, &[1, 0, 1], u64::MAX, 64).hashes_per_host(),
            (32, 32)
        );
    }
}
