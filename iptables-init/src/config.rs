//! The raw settings, shaped like istio-iptables' `config.Config`: strings and lists exactly as
//! given on the command line or in the environment, before validation (`options.rs`).
//!
//! The golden tests build this directly from the fixtures' field names, as Istio's own tests do.

/// Which ruleset writer to use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Backend {
    /// `iptables-restore` / `ip6tables-restore`, Istio's rule layout.
    #[default]
    Iptables,
    /// `nft -f -`, one dedicated `inet` table with the same semantics.
    Nft,
}

/// Whether to add IPv6 rules.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Ipv6Mode {
    /// On when the pod has a global IPv6 address (host detection).
    #[default]
    Auto,
    On,
    Off,
}

/// Settings as istio-iptables names them (Go field names in the comments).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// ProxyPort (`-p`).
    pub proxy_port: String,
    /// InboundCapturePort (`-z`).
    pub inbound_capture_port: String,
    /// InboundTunnelPort (`-e`).
    pub inbound_tunnel_port: String,
    /// ProxyUID (`-u`), comma separated.
    pub proxy_uid: String,
    /// ProxyGID (`-g`), comma separated.
    pub proxy_gid: String,
    /// InboundInterceptionMode (`-m`): "", REDIRECT or TPROXY.
    pub inbound_interception_mode: String,
    /// InboundTProxyMark (`-t`).
    pub inbound_tproxy_mark: String,
    /// InboundTProxyRouteTable (`-r`).
    pub inbound_tproxy_route_table: String,
    /// InboundPortsInclude (`-b`): "", "*" or a list.
    pub inbound_ports_include: String,
    /// InboundPortsExclude (`-d`).
    pub inbound_ports_exclude: String,
    /// OwnerGroupsInclude (env ISTIO_OUTBOUND_OWNER_GROUPS).
    pub owner_groups_include: String,
    /// OwnerGroupsExclude (env ISTIO_OUTBOUND_OWNER_GROUPS_EXCLUDE).
    pub owner_groups_exclude: String,
    /// OutboundPortsInclude (`-q`).
    pub outbound_ports_include: String,
    /// OutboundPortsExclude (`-o`).
    pub outbound_ports_exclude: String,
    /// OutboundIPRangesInclude (`-i`): "", "*" or CIDRs of either family.
    pub outbound_ip_ranges_include: String,
    /// OutboundIPRangesExclude (`-x`).
    pub outbound_ip_ranges_exclude: String,
    /// RerouteVirtualInterfaces (`-k`).
    pub reroute_virtual_interfaces: String,
    /// ExcludeInterfaces (`-c`).
    pub exclude_interfaces: String,
    /// HostIPv4LoopbackCidr (env ISTIO_OUTBOUND_IPV4_LOOPBACK_CIDR).
    pub host_ipv4_loopback_cidr: String,
    /// RedirectDNS (`--redirect-dns`).
    pub redirect_dns: bool,
    /// CaptureAllDNS (`--capture-all-dns`).
    pub capture_all_dns: bool,
    /// DropInvalid (`--drop-invalid`).
    pub drop_invalid: bool,
    /// DualStack (`--dual-stack`).
    pub dual_stack: bool,
    /// EnableIPv6 (no flag in Istio: detected from the pod's addresses).
    pub enable_ipv6: bool,
    /// DNSServersV4 / DNSServersV6 (from /etc/resolv.conf).
    pub dns_servers_v4: Vec<String>,
    pub dns_servers_v6: Vec<String>,
    /// DryRun (`-n`).
    pub dry_run: bool,
}

impl Default for Config {
    /// Istio's `DefaultConfig()` plus the env-only defaults. UID/GID stay empty here: the CLI
    /// fills them from `ENVOY_USER` (see `host::proxy_uid`).
    fn default() -> Config {
        Config {
            proxy_port: "15001".into(),
            inbound_capture_port: "15006".into(),
            inbound_tunnel_port: "15008".into(),
            proxy_uid: String::new(),
            proxy_gid: String::new(),
            inbound_interception_mode: String::new(),
            inbound_tproxy_mark: "1337".into(),
            inbound_tproxy_route_table: "133".into(),
            inbound_ports_include: String::new(),
            inbound_ports_exclude: String::new(),
            owner_groups_include: "*".into(),
            owner_groups_exclude: String::new(),
            outbound_ports_include: String::new(),
            outbound_ports_exclude: String::new(),
            outbound_ip_ranges_include: String::new(),
            outbound_ip_ranges_exclude: String::new(),
            reroute_virtual_interfaces: String::new(),
            exclude_interfaces: String::new(),
            host_ipv4_loopback_cidr: "127.0.0.1/32".into(),
            redirect_dns: false,
            capture_all_dns: false,
            drop_invalid: false,
            dual_stack: false,
            enable_ipv6: false,
            dns_servers_v4: Vec::new(),
            dns_servers_v6: Vec::new(),
            dry_run: false,
        }
    }
}

/// Istio's list syntax: comma separated, empty items dropped (`"6000,7000,"` is two ports).
pub fn split(s: &str) -> Vec<&str> {
    s.split(',').filter(|p| !p.is_empty()).collect()
}
