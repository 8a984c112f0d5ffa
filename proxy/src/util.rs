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
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut b: [u8; 16] = fastrand::u128(..).to_le_bytes();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let mut out = [0u8; 36];
    let mut o = 0;
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out[o] = b'-';
            o += 1;
        }
        out[o] = HEX[usize::from(byte >> 4)];
        out[o + 1] = HEX[usize::from(byte & 0x0f)];
        o += 2;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Milliseconds on a coarse monotonic clock (the kernel's tick, read from the vDSO without a
/// timestamp-counter read): cheap enough to call on every read and write.
pub fn coarse_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we pass; CLOCK_MONOTONIC_COARSE always exists on Linux.
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts);
    }
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

/// This host's first non-loopback IPv4 address (IPv6 if there is none), as Envoy's local
/// address; `None` on a host with only loopback.
pub fn local_address() -> Option<std::net::IpAddr> {
    static A: OnceLock<Option<std::net::IpAddr>> = OnceLock::new();
    *A.get_or_init(|| {
        let mut found_v4 = None;
        let mut found_v6 = None;
        let mut ifap: *mut libc::ifaddrs = std::ptr::null_mut();
        // SAFETY: getifaddrs fills a linked list we only read and then free with freeifaddrs.
        unsafe {
            if libc::getifaddrs(&mut ifap) != 0 {
                return None;
            }
            let mut cur = ifap;
            while !cur.is_null() {
                let ifa = &*cur;
                let up = ifa.ifa_flags & (libc::IFF_UP as u32) != 0;
                let loopback = ifa.ifa_flags & (libc::IFF_LOOPBACK as u32) != 0;
                if up && !loopback && !ifa.ifa_addr.is_null() {
                    match i32::from((*ifa.ifa_addr).sa_family) {
                        libc::AF_INET if found_v4.is_none() => {
                            let sin = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                            found_v4 = Some(std::net::IpAddr::V4(std::net::Ipv4Addr::from(
                                u32::from_be(sin.sin_addr.s_addr),
                            )));
                        }
                        libc::AF_INET6 if found_v6.is_none() => {
                            let sin6 = &*(ifa.ifa_addr as *const libc::sockaddr_in6);
                            found_v6 = Some(std::net::IpAddr::V6(std::net::Ipv6Addr::from(
                                sin6.sin6_addr.s6_addr,
                            )));
                        }
                        _ => {}
                    }
                }
                cur = ifa.ifa_next;
            }
            libc::freeifaddrs(ifap);
        }
        found_v4.or(found_v6)
    })
}

/// IPV6_TRANSPARENT: the IPv6 counterpart of IP_TRANSPARENT, for TPROXY listeners.
pub fn set_ipv6_transparent(socket: &socket2::Socket) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    // SAFETY: setsockopt reads `size_of::<c_int>()` bytes from a live local; the fd is a socket
    // borrowed for the duration of the call.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_IPV6,
            libc::IPV6_TRANSPARENT,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Seconds since the Unix epoch.
pub fn epoch_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding.
pub fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Standard base64, padded or not; `None` on any other character.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// Runs `f` every `interval` (the first time one interval from now) until it returns `false`.
pub fn every(interval: std::time::Duration, mut f: impl FnMut() -> bool + Send + 'static) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval_at(
            tokio::time::Instant::now() + interval,
            interval.max(std::time::Duration::from_millis(1)),
        );
        loop {
            tick.tick().await;
            if !f() {
                return;
            }
        }
    });
}

#[cfg(test)]
mod base64_tests {
    #[test]
    fn round_trips() {
        for s in ["", "f", "fo", "foo", "foob", "fooba", "foobar"] {
            let e = super::base64_encode(s.as_bytes());
            assert_eq!(
                super::base64_decode(&e).as_deref(),
                Some(s.as_bytes()),
                "{e}"
            );
        }
        assert_eq!(super::base64_encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(super::base64_encode(b"fo"), "Zm8=");
    }
}
