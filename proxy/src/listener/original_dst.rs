//! The destination a connection had before iptables redirected it to the proxy.
//!
//! REDIRECT (nat table) rewrites the destination; the kernel's connection tracking remembers
//! the original and returns it for `SO_ORIGINAL_DST` (IPv4) / `IP6T_SO_ORIGINAL_DST` (IPv6).
//! TPROXY leaves the packet untouched, so on a transparent listener the local address already is
//! the original destination.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;

/// `SO_ORIGINAL_DST` (linux/netfilter_ipv4.h) and `IP6T_SO_ORIGINAL_DST`
/// (linux/netfilter_ipv6/ip6_tables.h) share the value 80.
const SO_ORIGINAL_DST: libc::c_int = 80;

/// The original destination of an accepted connection, or `None` when the kernel has none
/// (no conntrack entry: the connection was not redirected and conntrack is not loaded).
pub fn original_dst(
    stream: &impl AsRawFd,
    local: SocketAddr,
    transparent: bool,
) -> Option<SocketAddr> {
    if transparent {
        return Some(local);
    }
    let fd = stream.as_raw_fd();
    // SAFETY: getsockopt writes at most `len` bytes into storage we own, and `len` tells it how
    // many; the fd is a live socket borrowed for the call.
    unsafe {
        let mut storage: libc::sockaddr_storage = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        let level = if local.is_ipv4() {
            libc::SOL_IP
        } else {
            libc::SOL_IPV6
        };
        let rc = libc::getsockopt(
            fd,
            level,
            SO_ORIGINAL_DST,
            (&mut storage as *mut libc::sockaddr_storage).cast(),
            &mut len,
        );
        if rc != 0 {
            return None;
        }
        match libc::c_int::from(storage.ss_family) {
            libc::AF_INET => {
                let a = &*(&storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>();
                Some(SocketAddr::V4(SocketAddrV4::new(
                    Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                    u16::from_be(a.sin_port),
                )))
            }
            libc::AF_INET6 => {
                let a = &*(&storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>();
                Some(SocketAddr::V6(SocketAddrV6::new(
                    Ipv6Addr::from(a.sin6_addr.s6_addr),
                    u16::from_be(a.sin6_port),
                    a.sin6_flowinfo,
                    a.sin6_scope_id,
                )))
            }
            _ => None,
        }
    }
}
