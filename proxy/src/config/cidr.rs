//! CIDR ranges (`envoy.config.core.v3.CidrRange`) and membership.

use super::{err, ConfigError, Result};
use envoy_types::pb::envoy::config::core::v3::CidrRange;
use std::net::IpAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub len: u8,
}

impl Cidr {
    pub fn from_proto(c: &CidrRange, path: &str) -> Result<Cidr> {
        let addr: IpAddr = c.address_prefix.parse().map_err(|_| ConfigError {
            path: format!("{path}.address_prefix"),
            msg: format!("malformed IP address: {}", c.address_prefix),
        })?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = c.prefix_len.as_ref().map_or(max, |l| l.value);
        if len > max {
            return err(
                &format!("{path}.prefix_len"),
                format!("prefix length {len} exceeds {max}"),
            );
        }
        Ok(Cidr {
            addr,
            len: len as u8,
        })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match (self.addr, ip) {
            (IpAddr::V4(_), IpAddr::V6(v6)) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            _ => ip,
        };
        match (self.addr, ip) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                let mask = if self.len == 0 {
                    0
                } else {
                    u32::MAX << (32 - u32::from(self.len))
                };
                (u32::from(a) & mask) == (u32::from(b) & mask)
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => {
                let mask = if self.len == 0 {
                    0
                } else {
                    u128::MAX << (128 - u32::from(self.len))
                };
                (u128::from(a) & mask) == (u128::from(b) & mask)
            }
            _ => false,
        }
    }
}
