//! Free-port allocation and `{{NAME}}` placeholder templating.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// The kernel's ephemeral port range (source ports of outgoing connections
/// and `bind(0)` results).
fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|n| n.parse::<u16>().ok());
            Some((it.next()??, it.next()??))
        })
        .unwrap_or((32768, 60999))
}

/// A cheap pseudo-random number (no RNG crate needed for picking ports).
fn pseudo_random(salt: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut x =
        nanos ^ (u64::from(std::process::id()) << 32) ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x
}

/// Returns an address on 127.0.0.1 whose port was free a moment ago.
///
/// Ports are picked at random *outside* the kernel's ephemeral range, so
/// that the many short-lived client connections of parallel tests (whose
/// source ports come from that range) cannot take a port between the check
/// and the proxy's bind. A port is never handed out twice per process.
pub fn free_port_addr() -> SocketAddr {
    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let (lo, hi) = ephemeral_range();
    let (start, end) = if lo > 12000 {
        (10000u16, lo - 1)
    } else {
        (hi.saturating_add(1), 65535)
    };
    let span = u64::from(end.saturating_sub(start)).max(1);
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..1000 {
        let r = pseudo_random(CALLS.fetch_add(1, Ordering::Relaxed));
        let port = start + (r % span) as u16;
        if handed_out.contains(&port) {
            continue;
        }
        if let Ok(listener) = TcpListener::bind(("127.0.0.1", port)) {
            handed_out.insert(port);
            return listener.local_addr().expect("local_addr");
        }
    }
    // Fall back to whatever the kernel hands out.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr")
}

/// Returns a port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    free_port_addr().port()
}

/// Names of all `{{NAME}}` placeholders in `template`, in sorted order.
pub fn placeholders(template: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else { break };
        let name = after[..end].trim();
        if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            out.insert(name.to_string());
        }
        rest = &after[end + 2..];
    }
    out
}

/// Replaces every `{{NAME}}` with its value. Panics on a placeholder that
/// has no value, so a typo in a template is caught immediately.
pub fn render(template: &str, values: &BTreeMap<String, String>) -> String {
    let mut out = template.to_string();
    for name in placeholders(template) {
        let value = values
            .get(&name)
            .unwrap_or_else(|| panic!("template placeholder {{{{{name}}}}} has no value"));
        out = out.replace(&format!("{{{{{name}}}}}", name = name), value);
    }
    out
}

/// Replaces each occurrence of a port number (as a whole digit run) in `s`
/// with its placeholder name, e.g. `127.0.0.1:41234` -> `127.0.0.1:{{L1}}`.
pub fn unrender_ports(s: &str, ports: &BTreeMap<u16, String>) -> String {
    if ports.is_empty() || !s.bytes().any(|b| b.is_ascii_digit()) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_digit() {
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            let digits = &s[start..i];
            match digits.parse::<u16>().ok().and_then(|p| ports.get(&p)) {
                Some(name) => {
                    out.push_str("{{");
                    out.push_str(name);
                    out.push_str("}}");
                }
                None => out.push_str(digits),
            }
        } else {
            let ch = s[i..].chars().next().expect("char boundary");
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn placeholders_and_render() {
        let t = "a: {{ADMIN}}\nb: {{L1}} {{L1}} {x}";
        let names: Vec<_> = placeholders(t).into_iter().collect();
        assert_eq!(names, vec!["ADMIN", "L1"]);
        let mut v = BTreeMap::new();
        v.insert("ADMIN".to_string(), "1".to_string());
        v.insert("L1".to_string(), "2".to_string());
        assert_eq!(render(t, &v), "a: 1\nb: 2 2 {x}");
    }

    #[test]
    fn free_ports_are_distinct_and_bindable() {
        let ports: BTreeSet<u16> = (0..50).map(|_| free_port()).collect();
        assert_eq!(ports.len(), 50);
        for p in ports.iter().take(5) {
            TcpListener::bind(("127.0.0.1", *p)).expect("free port is bindable");
        }
    }

    #[test]
    fn unrender() {
        let mut p = BTreeMap::new();
        p.insert(4123u16, "L1".to_string());
        assert_eq!(
            unrender_ports("127.0.0.1:4123 41234 4123x", &p),
            "127.0.0.1:{{L1}} 41234 {{L1}}x"
        );
    }
}
