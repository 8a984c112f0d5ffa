//! Small process-wide helpers.

use std::sync::OnceLock;

/// This machine's host name (for `%HOSTNAME%` and `/server_info`).
pub fn hostname() -> String {
    static H: OnceLock<String> = OnceLock::new();
    H.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    })
    .clone()
}

/// A random version-4 UUID, as Envoy generates for `x-request-id`.
pub fn uuid4() -> String {
    let mut b: [u8; 16] = fastrand::u128(..).to_le_bytes();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = |r: std::ops::Range<usize>| b[r].iter().map(|x| format!("{x:02x}")).collect::<String>();
    format!("{}-{}-{}-{}-{}", h(0..4), h(4..6), h(6..8), h(8..10), h(10..16))
}
