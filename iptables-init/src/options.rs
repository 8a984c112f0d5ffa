//! Validated capture options: every value checked once, here; the renderer trusts them.

use crate::config::{split, Config};
use crate::error::Error;
use crate::render::model::PortSpec;
use std::fmt;
use std::net::IpAddr;

/// How inbound connections reach the proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// NAT `REDIRECT` to the inbound capture port (the source becomes the proxy's view).
    Redirect,
    /// `TPROXY` in mangle plus policy routing, preserving the original destination.
    Tproxy,
}

/// Which inbound ports are captured (`-b`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InboundPorts {
    /// `-b ""`: no inbound capture.
    None,
    /// `-b "*"`: every port except `-d`.
    All,
    List(Vec<PortSpec>),
}

/// An address prefix, printed as given (`127.0.0.1/8` stays `127.0.0.1/8`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub len: u8,
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// Outbound IP ranges (`-i` / `-x`), split by family as Istio does.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ranges {
    pub wildcard: bool,
    pub v4: Vec<Cidr>,
    pub v6: Vec<Cidr>,
}

impl Ranges {
    /// A loopback prefix was named explicitly (then app→lo traffic is not exempted).
    pub fn has_loopback(&self) -> bool {
        self.v4.iter().chain(&self.v6).any(|c| c.addr.is_loopback())
    }
}

/// Outbound capture by the owner group of the sending socket (env-only in Istio).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OwnerGroups {
    /// `ISTIO_OUTBOUND_OWNER_GROUPS=*`: capture every group except these.
    AllExcept(Vec<String>),
    /// Capture only these groups.
    Only(Vec<String>),
}

/// Istio caps the include list: it becomes one rule with one match per group.
const MAX_OWNER_GROUPS_INCLUDE: usize = 64;

/// Everything the renderer needs, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    pub proxy_port: u16,
    pub inbound_capture_port: u16,
    pub inbound_tunnel_port: u16,
    pub proxy_uids: Vec<String>,
    pub proxy_gids: Vec<String>,
    pub mode: Mode,
    pub tproxy_mark: u32,
    pub tproxy_route_table: u32,
    pub inbound_ports: InboundPorts,
    pub inbound_ports_exclude: Vec<PortSpec>,
    pub outbound_ports_include: Vec<PortSpec>,
    pub outbound_ports_exclude: Vec<PortSpec>,
    pub outbound_include: Ranges,
    pub outbound_exclude: Ranges,
    pub virt_interfaces: Vec<String>,
    pub exclude_interfaces: Vec<String>,
    pub owner_groups: OwnerGroups,
    pub host_ipv4_loopback: Cidr,
    pub redirect_dns: bool,
    pub capture_all_dns: bool,
    pub dns_servers_v4: Vec<String>,
    pub dns_servers_v6: Vec<String>,
    pub drop_invalid: bool,
    pub ipv6: bool,
}

impl Options {
    /// DNS capture really happens: `--redirect-dns` alone, with no resolver known and
    /// without `--capture-all-dns`, captures nothing (Istio logs a warning and goes on).
    pub fn dns_capture(&self) -> bool {
        self.redirect_dns
            && (self.capture_all_dns
                || !self.dns_servers_v4.is_empty()
                || !self.dns_servers_v6.is_empty())
    }
}

impl TryFrom<&Config> for Options {
    type Error = Error;

    fn try_from(c: &Config) -> Result<Options, Error> {
        let outbound_exclude = ranges(
            "-x/--istio-service-exclude-cidr",
            &c.outbound_ip_ranges_exclude,
        )?;
        if outbound_exclude.wildcard {
            return Err(Error::invalid(
                "-x/--istio-service-exclude-cidr",
                "*",
                "a wildcard cannot be excluded (Istio refuses it too)",
            ));
        }
        Ok(Options {
            proxy_port: port("-p/--envoy-port", &c.proxy_port)?,
            inbound_capture_port: port("-z/--inbound-capture-port", &c.inbound_capture_port)?,
            inbound_tunnel_port: port("-e/--inbound-tunnel-port", &c.inbound_tunnel_port)?,
            proxy_uids: owners("-u/--proxy-uid", &c.proxy_uid)?,
            proxy_gids: owners("-g/--proxy-gid", &c.proxy_gid)?,
            mode: mode(&c.inbound_interception_mode)?,
            tproxy_mark: mark(&c.inbound_tproxy_mark)?,
            tproxy_route_table: route_table(&c.inbound_tproxy_route_table)?,
            inbound_ports: inbound_ports(&c.inbound_ports_include)?,
            inbound_ports_exclude: ports(
                "-d/--istio-local-exclude-ports",
                &c.inbound_ports_exclude,
            )?,
            outbound_ports_include: ports("-q/--istio-outbound-ports", &c.outbound_ports_include)?,
            outbound_ports_exclude: ports(
                "-o/--istio-local-outbound-ports-exclude",
                &c.outbound_ports_exclude,
            )?,
            outbound_include: ranges("-i/--istio-service-cidr", &c.outbound_ip_ranges_include)?,
            outbound_exclude,
            virt_interfaces: interfaces(
                "-k/--kube-virt-interfaces",
                &c.reroute_virtual_interfaces,
            )?,
            exclude_interfaces: interfaces("-c/--istio-exclude-interfaces", &c.exclude_interfaces)?,
            owner_groups: owner_groups(&c.owner_groups_include, &c.owner_groups_exclude)?,
            host_ipv4_loopback: loopback_cidr(&c.host_ipv4_loopback_cidr)?,
            redirect_dns: c.redirect_dns,
            capture_all_dns: c.capture_all_dns,
            dns_servers_v4: dns_servers(&c.dns_servers_v4, false)?,
            dns_servers_v6: dns_servers(&c.dns_servers_v6, true)?,
            drop_invalid: c.drop_invalid,
            ipv6: c.enable_ipv6,
        })
    }
}

fn port(what: &'static str, s: &str) -> Result<u16, Error> {
    match s.parse::<u16>() {
        Ok(p) if p > 0 && s.bytes().all(|b| b.is_ascii_digit()) => Ok(p),
        _ => Err(Error::invalid(what, s, "expected a port number 1-65535")),
    }
}

fn port_spec(what: &'static str, s: &str) -> Result<PortSpec, Error> {
    let bad = || {
        Error::invalid(
            what,
            s,
            "expected comma-separated ports 1-65535 or ranges FIRST:LAST",
        )
    };
    let one = |p: &str| port(what, p).map_err(|_| bad());
    match s.split_once(':') {
        None => Ok(PortSpec::single(one(s)?)),
        Some((a, b)) => {
            let (first, last) = (one(a)?, one(b)?);
            if first > last {
                return Err(bad());
            }
            Ok(PortSpec {
                first,
                last: Some(last),
            })
        }
    }
}

fn ports(what: &'static str, s: &str) -> Result<Vec<PortSpec>, Error> {
    split(s).into_iter().map(|p| port_spec(what, p)).collect()
}

fn inbound_ports(s: &str) -> Result<InboundPorts, Error> {
    const WHAT: &str = "-b/--istio-inbound-ports";
    Ok(match s {
        "" => InboundPorts::None,
        "*" => InboundPorts::All,
        _ => InboundPorts::List(ports(WHAT, s)?),
    })
}

/// A user or group for `-m owner`: a number or a name (iptables resolves names; so does nft).
fn owner_id(what: &'static str, s: &str) -> Result<String, Error> {
    let ok = !s.starts_with('-')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(s.to_string())
    } else {
        Err(Error::invalid(
            what,
            s,
            "expected a numeric id or a user/group name",
        ))
    }
}

fn owners(what: &'static str, s: &str) -> Result<Vec<String>, Error> {
    split(s).into_iter().map(|u| owner_id(what, u)).collect()
}

fn owner_groups(include: &str, exclude: &str) -> Result<OwnerGroups, Error> {
    const INC: &str = "ISTIO_OUTBOUND_OWNER_GROUPS";
    const EXC: &str = "ISTIO_OUTBOUND_OWNER_GROUPS_EXCLUDE";
    if include == "*" {
        return Ok(OwnerGroups::AllExcept(owners(EXC, exclude)?));
    }
    let only = owners(INC, include)?;
    if only.len() > MAX_OWNER_GROUPS_INCLUDE {
        return Err(Error::invalid(
            INC,
            include,
            format!(
                "at most {MAX_OWNER_GROUPS_INCLUDE} groups (they become one rule), got {}",
                only.len()
            ),
        ));
    }
    Ok(OwnerGroups::Only(only))
}

fn mode(s: &str) -> Result<Mode, Error> {
    match s {
        "" | "REDIRECT" => Ok(Mode::Redirect),
        "TPROXY" => Ok(Mode::Tproxy),
        _ => Err(Error::invalid(
            "-m/--istio-inbound-interception-mode",
            s,
            "expected REDIRECT or TPROXY",
        )),
    }
}

fn decimal_u32(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn mark(s: &str) -> Result<u32, Error> {
    match decimal_u32(s) {
        Some(m) if m > 0 => Ok(m),
        _ => Err(Error::invalid(
            "-t/--istio-inbound-tproxy-mark",
            s,
            "expected a decimal packet mark 1-4294967295",
        )),
    }
}

fn route_table(s: &str) -> Result<u32, Error> {
    match decimal_u32(s) {
        Some(t) if t > 0 && !(253..=255).contains(&t) => Ok(t),
        _ => Err(Error::invalid(
            "-r/--istio-inbound-tproxy-route-table",
            s,
            "expected a decimal routing table id other than 0 and 253-255 (default/main/local)",
        )),
    }
}

/// `ADDR/LEN` of either family. A bare address is refused, as Go's `netip.ParsePrefix` does.
pub fn cidr(what: &'static str, s: &str) -> Result<Cidr, Error> {
    let bad = |why: &str| Error::invalid(what, s, why.to_string());
    let (a, l) = s
        .split_once('/')
        .ok_or_else(|| bad("expected a CIDR (ADDRESS/LENGTH)"))?;
    let addr: IpAddr = a.parse().map_err(|_| bad("not an IPv4 or IPv6 address"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len = match decimal_u32(l) {
        Some(n) if n <= max => n as u8,
        _ => return Err(bad("prefix length out of range")),
    };
    Ok(Cidr { addr, len })
}

fn ranges(what: &'static str, s: &str) -> Result<Ranges, Error> {
    if s == "*" {
        return Ok(Ranges {
            wildcard: true,
            ..Ranges::default()
        });
    }
    let mut r = Ranges::default();
    for item in split(s) {
        let c = cidr(what, item)?;
        match c.addr {
            IpAddr::V4(_) => r.v4.push(c),
            IpAddr::V6(_) => r.v6.push(c),
        }
    }
    Ok(r)
}

fn loopback_cidr(s: &str) -> Result<Cidr, Error> {
    const WHAT: &str = "ISTIO_OUTBOUND_IPV4_LOOPBACK_CIDR";
    let c = cidr(WHAT, s)?;
    if !c.addr.is_ipv4() || !c.addr.is_loopback() {
        return Err(Error::invalid(WHAT, s, "expected an IPv4 loopback prefix"));
    }
    if !(8..=32).contains(&c.len) {
        return Err(Error::invalid(WHAT, s, "expected a prefix length 8-32"));
    }
    Ok(c)
}

fn interfaces(what: &'static str, s: &str) -> Result<Vec<String>, Error> {
    split(s)
        .into_iter()
        .map(|i| {
            let ok = i.len() <= 15
                && !i.starts_with('-')
                && i.bytes()
                    .all(|b| b.is_ascii_graphic() && !matches!(b, b'/' | b'"' | b'\'' | b','));
            if ok {
                Ok(i.to_string())
            } else {
                Err(Error::invalid(
                    what,
                    i,
                    "expected interface names (at most 15 characters)",
                ))
            }
        })
        .collect()
}

/// Resolver addresses, kept as written (`::127.0.0.53` stays so, as in Istio's rules).
fn dns_servers(list: &[String], v6: bool) -> Result<Vec<String>, Error> {
    const WHAT: &str = "DNS server";
    list.iter()
        .map(|s| match s.parse::<IpAddr>() {
            Ok(a) if a.is_ipv6() == v6 => Ok(s.clone()),
            _ => Err(Error::invalid(
                WHAT,
                s,
                if v6 {
                    "expected an IPv6 address"
                } else {
                    "expected an IPv4 address"
                },
            )),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Config {
        Config {
            proxy_uid: "1337".into(),
            proxy_gid: "1337".into(),
            ..Config::default()
        }
    }

    fn with(f: impl FnOnce(&mut Config)) -> Result<Options, Error> {
        let mut c = base();
        f(&mut c);
        Options::try_from(&c)
    }

    #[test]
    fn defaults_are_istios() {
        let o = with(|_| {}).expect("defaults are valid");
        assert_eq!(
            (o.proxy_port, o.inbound_capture_port, o.inbound_tunnel_port),
            (15001, 15006, 15008)
        );
        assert_eq!((o.tproxy_mark, o.tproxy_route_table), (1337, 133));
        assert_eq!(o.mode, Mode::Redirect);
        assert_eq!(o.inbound_ports, InboundPorts::None);
        assert_eq!(o.owner_groups, OwnerGroups::AllExcept(vec![]));
        assert_eq!(o.host_ipv4_loopback.to_string(), "127.0.0.1/32");
    }

    #[test]
    fn lists_drop_empty_items() {
        let o = with(|c| c.inbound_ports_exclude = "6000,7000,".into()).expect("valid");
        assert_eq!(o.inbound_ports_exclude.len(), 2);
        let o = with(|c| c.proxy_uid = "3,4".into()).expect("valid");
        assert_eq!(o.proxy_uids, vec!["3", "4"]);
    }

    #[test]
    fn ranges_split_by_family() {
        let o = with(|c| c.outbound_ip_ranges_include = "10.0.0.0/8,2001:DB8::/32".into())
            .expect("valid");
        assert_eq!(o.outbound_include.v4[0].to_string(), "10.0.0.0/8");
        assert_eq!(o.outbound_include.v6[0].to_string(), "2001:db8::/32");
        assert!(!o.outbound_include.has_loopback());
        let o = with(|c| c.outbound_ip_ranges_include = "127.1.2.3/32".into()).expect("valid");
        assert!(o.outbound_include.has_loopback());
    }

    #[test]
    fn bad_values_are_refused() {
        type Case = (&'static str, fn(&mut Config));
        let cases: Vec<Case> = vec![
            ("port 0", |c| c.proxy_port = "0".into()),
            ("port text", |c| c.inbound_capture_port = "http".into()),
            ("port big", |c| c.inbound_tunnel_port = "65536".into()),
            ("port sign", |c| c.proxy_port = "+80".into()),
            ("range reversed", |c| {
                c.inbound_ports_include = "90:80".into()
            }),
            ("star in list", |c| c.inbound_ports_include = "80,*".into()),
            ("mode", |c| c.inbound_interception_mode = "tproxy".into()),
            ("mark", |c| c.inbound_tproxy_mark = "0x539".into()),
            ("table main", |c| {
                c.inbound_tproxy_route_table = "254".into()
            }),
            ("cidr bare", |c| {
                c.outbound_ip_ranges_include = "10.0.0.1".into()
            }),
            ("cidr len", |c| {
                c.outbound_ip_ranges_include = "10.0.0.0/33".into()
            }),
            ("cidr addr", |c| {
                c.outbound_ip_ranges_exclude = "10.0.0/8".into()
            }),
            ("exclude *", |c| c.outbound_ip_ranges_exclude = "*".into()),
            ("loopback", |c| {
                c.host_ipv4_loopback_cidr = "10.0.0.1/8".into()
            }),
            ("loopback len", |c| {
                c.host_ipv4_loopback_cidr = "127.0.0.1/7".into()
            }),
            ("uid", |c| c.proxy_uid = "13 37".into()),
            ("iface", |c| {
                c.exclude_interfaces = "a-very-long-interface".into()
            }),
            ("dns family", |c| c.dns_servers_v4 = vec!["::1".into()]),
            ("groups", |c| {
                c.owner_groups_include =
                    (0..65).map(|i| i.to_string()).collect::<Vec<_>>().join(",")
            }),
        ];
        for (name, f) in cases {
            match with(f) {
                Err(e) => assert_eq!(e.exit_code(), 2, "{name}: {e}"),
                Ok(_) => panic!("{name}: accepted"),
            }
        }
    }

    #[test]
    fn dns_capture_needs_a_target() {
        let o = with(|c| c.redirect_dns = true).expect("valid");
        assert!(!o.dns_capture());
        let o = with(|c| {
            c.redirect_dns = true;
            c.capture_all_dns = true
        })
        .expect("valid");
        assert!(o.dns_capture());
    }
}
