//! The rules as data: what `layout` builds and what the iptables and nft writers print.
//!
//! A rule keeps its matches in the order the layout gives them, because `iptables-restore`
//! input is compared token for token against Istio's.

use std::fmt;

/// Address family of a rule list (`iptables` vs `ip6tables`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

/// The netfilter tables the capture uses, in the order `iptables-restore` input lists them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    Mangle,
    Nat,
    Raw,
}

impl Table {
    pub const ALL: [Table; 3] = [Table::Mangle, Table::Nat, Table::Raw];

    pub fn name(self) -> &'static str {
        match self {
            Table::Mangle => "mangle",
            Table::Nat => "nat",
            Table::Raw => "raw",
        }
    }
}

/// The chains Istio creates. Their names are the contract: other tools (istio-cni, debug
/// scripts, `istioctl`) look for them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IstioChain {
    Inbound,
    Redirect,
    InRedirect,
    Output,
    OutputDns,
    Divert,
    Tproxy,
    Drop,
}

impl IstioChain {
    pub const ALL: [IstioChain; 8] = [
        IstioChain::Inbound,
        IstioChain::Redirect,
        IstioChain::InRedirect,
        IstioChain::Output,
        IstioChain::OutputDns,
        IstioChain::Divert,
        IstioChain::Tproxy,
        IstioChain::Drop,
    ];

    pub fn name(self) -> &'static str {
        match self {
            IstioChain::Inbound => "ISTIO_INBOUND",
            IstioChain::Redirect => "ISTIO_REDIRECT",
            IstioChain::InRedirect => "ISTIO_IN_REDIRECT",
            IstioChain::Output => "ISTIO_OUTPUT",
            IstioChain::OutputDns => "ISTIO_OUTPUT_DNS",
            IstioChain::Divert => "ISTIO_DIVERT",
            IstioChain::Tproxy => "ISTIO_TPROXY",
            IstioChain::Drop => "ISTIO_DROP",
        }
    }

    pub fn from_name(name: &str) -> Option<IstioChain> {
        IstioChain::ALL.into_iter().find(|c| c.name() == name)
    }
}

/// The built-in chains the capture hooks into.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Hook {
    Prerouting,
    Output,
}

impl Hook {
    pub fn name(self) -> &'static str {
        match self {
            Hook::Prerouting => "PREROUTING",
            Hook::Output => "OUTPUT",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Chain {
    BuiltIn(Hook),
    Istio(IstioChain),
}

impl Chain {
    pub fn name(self) -> &'static str {
        match self {
            Chain::BuiltIn(h) => h.name(),
            Chain::Istio(c) => c.name(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// A port or an inclusive port range (`1000:2000`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortSpec {
    pub first: u16,
    pub last: Option<u16>,
}

impl PortSpec {
    pub fn single(port: u16) -> PortSpec {
        PortSpec {
            first: port,
            last: None,
        }
    }
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.last {
            Some(last) => write!(f, "{}:{}", self.first, last),
            None => write!(f, "{}", self.first),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OwnerKind {
    Uid,
    Gid,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CtState {
    RelatedEstablished,
    Invalid,
}

/// One match, printed in place. `neg` is iptables' `!`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Match {
    Proto(Proto),
    InIface(String),
    OutIface(String),
    /// An address or prefix of the rule's family, as text (`127.0.0.6/32`, `::6/128`).
    Src(String),
    Dst {
        neg: bool,
        addr: String,
    },
    DPort {
        neg: bool,
        port: PortSpec,
    },
    SPort(u16),
    /// `-m multiport [!] --dports a,b`.
    DPorts {
        neg: bool,
        ports: Vec<PortSpec>,
    },
    /// `-m owner [!] --uid-owner X` / `--gid-owner X` (a number or a name).
    Owner {
        neg: bool,
        kind: OwnerKind,
        id: String,
    },
    /// `-m mark [!] --mark N`.
    Mark {
        neg: bool,
        mark: u32,
    },
    /// `-m connmark --mark N`.
    ConnMark(u32),
    /// `-m conntrack --ctstate …`.
    CtState(CtState),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Jump(IstioChain),
    Return,
    Accept,
    Drop,
    /// `REDIRECT --to-ports P`; Istio spells it `--to-port` in some rules, kept as written.
    Redirect {
        port: u16,
        singular: bool,
    },
    /// `TPROXY --tproxy-mark M/0xffffffff --on-port P`.
    Tproxy {
        mark: u32,
        port: u16,
    },
    SetMark(u32),
    SaveMark,
    RestoreMark,
    CtZone(u16),
}

/// Where a rule goes: appended, or inserted at a 1-based position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Append,
    Insert(u32),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub table: Table,
    pub chain: Chain,
    pub op: Op,
    pub matches: Vec<Match>,
    pub target: Target,
}

/// The whole capture for one run: rules per family (`v6` empty when IPv6 is off).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub v4: Vec<Rule>,
    pub v6: Vec<Rule>,
    pub ipv6: bool,
}

impl Plan {
    pub fn rules(&self, family: Family) -> &[Rule] {
        match family {
            Family::V4 => &self.v4,
            Family::V6 => &self.v6,
        }
    }

    /// The families with rules, v4 first.
    pub fn families(&self) -> Vec<Family> {
        let mut f = vec![Family::V4];
        if self.ipv6 {
            f.push(Family::V6);
        }
        f
    }
}
