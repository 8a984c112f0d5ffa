//! Facts about the pod that istio-iptables reads from the host rather than from flags: the
//! proxy's UID (`ENVOY_USER` in /etc/passwd), whether IPv6 is in use, the DNS resolvers, and
//! the network namespace to work in.

use crate::cli::Invocation;
use crate::config::Ipv6Mode;
use crate::error::Error;
use std::net::{IpAddr, Ipv6Addr};

/// Istio's fallback when `ENVOY_USER` does not exist.
const DEFAULT_PROXY_UID: &str = "1337";

/// Completes the raw settings from the host, as istio-iptables' `FillConfigFromEnvironment`.
pub fn fill(inv: &mut Invocation) -> Result<(), Error> {
    let c = &mut inv.config;
    if c.proxy_uid.is_empty() {
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        c.proxy_uid = uid_of(&passwd, &inv.envoy_user).unwrap_or_else(|| DEFAULT_PROXY_UID.into());
    }
    if c.proxy_gid.is_empty() {
        c.proxy_gid = c.proxy_uid.clone();
    }
    c.enable_ipv6 = match inv.ipv6 {
        Ipv6Mode::On => true,
        Ipv6Mode::Off => false,
        Ipv6Mode::Auto => has_global_ipv6()?,
    };
    // Removal finds the rules by name: the resolvers do not matter then.
    if c.redirect_dns && !c.capture_all_dns && !inv.clean {
        let text = std::fs::read_to_string("/etc/resolv.conf").map_err(|e| {
            Error::Host(format!(
                "cannot read /etc/resolv.conf for --redirect-dns: {e}"
            ))
        })?;
        (c.dns_servers_v4, c.dns_servers_v6) = nameservers(&text);
    }
    Ok(())
}

/// The UID of `user` in passwd-format `text`.
pub fn uid_of(text: &str, user: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next()? == user).then_some(())?;
        let uid = f.nth(1)?;
        (!uid.is_empty() && uid.bytes().all(|b| b.is_ascii_digit())).then(|| uid.to_string())
    })
}

/// `nameserver` addresses of a resolv.conf, split by family. Addresses with a zone
/// (`fe80::1%eth0`) cannot be matched by a rule and are left out.
pub fn nameservers(text: &str) -> (Vec<String>, Vec<String>) {
    let (mut v4, mut v6) = (Vec::new(), Vec::new());
    for line in text.lines() {
        let mut f = line.split_whitespace();
        if f.next() != Some("nameserver") {
            continue;
        }
        let Some(addr) = f.next() else { continue };
        match addr.parse::<IpAddr>() {
            Ok(IpAddr::V4(_)) => v4.push(addr.to_string()),
            Ok(IpAddr::V6(_)) => v6.push(addr.to_string()),
            Err(_) => {}
        }
    }
    (v4, v6)
}

/// An address that makes the pod an IPv6 pod: not loopback, link-local or multicast.
fn is_global_v6(a: &Ipv6Addr) -> bool {
    let link_local = (a.segments()[0] & 0xffc0) == 0xfe80;
    !(a.is_loopback() || a.is_unspecified() || a.is_multicast() || link_local)
}

/// True when a non-loopback interface carries a global IPv6 address.
///
/// Istio looks only at the first address found (IPv4 comes first, so a dual-stack pod gets no
/// IPv6 rules unless `--dual-stack`); Ferry turns IPv6 on whenever the pod has an IPv6 address.
pub fn has_global_ipv6() -> Result<bool, Error> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(Error::Host(format!(
            "cannot list the pod's addresses: {}",
            std::io::Error::last_os_error()
        )));
    }
    let mut found = false;
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, not yet freed.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        let loopback_if = ifa.ifa_flags & (libc::IFF_LOOPBACK as u32) != 0;
        if ifa.ifa_addr.is_null() || loopback_if {
            continue;
        }
        // SAFETY: ifa_addr is non-null and points to a sockaddr of the family it names.
        let family = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
        if family != libc::AF_INET6 {
            continue;
        }
        // SAFETY: an AF_INET6 address is a sockaddr_in6.
        let sin6 = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
        if is_global_v6(&Ipv6Addr::from(sin6.sin6_addr.s6_addr)) {
            found = true;
            break;
        }
    }
    // SAFETY: `head` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    Ok(found)
}

/// Moves this (single-threaded) process into the network namespace at `path`; the commands it
/// starts afterwards run there too.
pub fn enter_netns(path: &str) -> Result<(), Error> {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(path)
        .map_err(|e| Error::Host(format!("cannot open network namespace {path}: {e}")))?;
    // SAFETY: setns on a namespace fd we hold open; it changes only this thread's namespace,
    // and this is called before any other thread exists.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(Error::Host(format!(
            "cannot enter network namespace {path}: {}",
            std::io::Error::last_os_error()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwd_lookup() {
        let p = "root:x:0:0:root:/root:/bin/sh\nistio-proxy:x:1337:1337::/home:/bin/false\n";
        assert_eq!(uid_of(p, "istio-proxy").as_deref(), Some("1337"));
        assert_eq!(uid_of(p, "root").as_deref(), Some("0"));
        assert_eq!(uid_of(p, "nobody"), None);
    }

    #[test]
    fn resolv_conf() {
        let (v4, v6) = nameservers(
            "# c\nsearch x.svc\nnameserver 10.96.0.10\nnameserver fd00::a\nnameserver fe80::1%eth0\n\
             nameserver bogus\noptions ndots:5\n",
        );
        assert_eq!(v4, vec!["10.96.0.10"]);
        assert_eq!(v6, vec!["fd00::a"]);
    }

    #[test]
    fn global_v6() {
        let g = |s: &str| is_global_v6(&s.parse().expect("address"));
        assert!(g("fd00:77::1") && g("2001:db8::1"));
        assert!(!g("::1") && !g("fe80::1") && !g("ff02::1") && !g("::"));
    }
}
