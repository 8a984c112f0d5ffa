//! Istio's sidecar capture layout, as rules: the same chains, the same rules, in the same order
//! as istio-iptables builds them, so that `iptables-save` of a Ferry pod reads like an Istio pod.
//!
//! Each group below names the Istio behaviour it implements. Rules are built per family; a
//! rule added "to both" lands in the IPv6 list only when IPv6 is on.

use super::model::{
    Chain, CtState, Family, Hook, IstioChain, Match, Op, OwnerKind, Plan, PortSpec, Proto, Rule,
    Table, Target,
};
use crate::options::{Mode, Options, OwnerGroups};

use IstioChain::{Drop, InRedirect, Inbound, Output, Redirect};

mod dns;
mod inbound;
mod outbound;
mod tproxy;

const DNS_PORT: u16 = 53;

/// Builds the capture for `o`.
pub fn plan(o: &Options) -> Plan {
    let mut b = Builder {
        plan: Plan {
            v4: Vec::new(),
            v6: Vec::new(),
            ipv6: o.ipv6,
        },
    };
    let dns = o.dns_capture();
    let tproxy = o.mode == Mode::Tproxy;
    // The loopback prefix the pod uses for itself (v4 configurable, v6 fixed).
    let lo = |f: Family| match f {
        Family::V4 => o.host_ipv4_loopback.to_string(),
        Family::V6 => "::1/128".to_string(),
    };
    // The source address of Envoy's inbound passthrough connections to the application.
    let passthrough_src = |f: Family| match f {
        Family::V4 => "127.0.0.6/32".to_string(),
        Family::V6 => "::6/128".to_string(),
    };

    // Excluded interfaces (-c): neither their inbound nor their outbound traffic is captured.
    for nic in &o.exclude_interfaces {
        b.both(|_| append(Table::Nat, pre(), vec![in_if(nic)], Target::Return));
        b.both(|_| append(Table::Nat, out(), vec![out_if(nic)], Target::Return));
    }
    if tproxy {
        for nic in &o.exclude_interfaces {
            b.both(|_| append(Table::Mangle, pre(), vec![in_if(nic)], Target::Return));
            b.both(|_| append(Table::Mangle, out(), vec![out_if(nic)], Target::Return));
        }
    }

    // Kube-virt interfaces (-k): traffic arriving from a VM is not treated as inbound.
    for nic in &o.virt_interfaces {
        b.both(|_| insert(Table::Nat, pre(), 1, vec![in_if(nic)], Target::Return));
    }

    // --drop-invalid: drop out-of-window packets instead of letting them reset connections.
    if o.drop_invalid {
        b.both(|_| {
            append(
                Table::Mangle,
                pre(),
                vec![Match::CtState(CtState::Invalid)],
                Target::Jump(Drop),
            )
        });
        b.both(|_| append(Table::Mangle, istio(Drop), vec![], Target::Drop));
    }

    // The inbound tunnel port (HBONE, 15008) is not redirected. Istio adds this to nat's
    // ISTIO_INBOUND in TPROXY mode too, where that chain is not jumped to.
    b.both(|_| {
        append(
            Table::Nat,
            istio(Inbound),
            vec![tcp(), dport(o.inbound_tunnel_port)],
            Target::Return,
        )
    });
    // ISTIO_REDIRECT sends outbound TCP to the proxy's outbound listener (15001).
    b.both(|_| {
        append(
            Table::Nat,
            istio(Redirect),
            vec![tcp()],
            Target::Redirect {
                port: o.proxy_port,
                singular: false,
            },
        )
    });
    // ISTIO_IN_REDIRECT sends inbound TCP to the inbound capture port (15006).
    b.both(|_| {
        append(
            Table::Nat,
            istio(InRedirect),
            vec![tcp()],
            Target::Redirect {
                port: o.inbound_capture_port,
                singular: false,
            },
        )
    });

    inbound::inbound(&mut b, o, &lo);

    // All locally generated traffic goes through ISTIO_OUTPUT.
    b.both(|_| append(Table::Nat, out(), vec![], Target::Jump(Output)));

    // Excluded outbound ports (-o) bypass the proxy, TCP and UDP alike; before anything else.
    for p in &o.outbound_ports_exclude {
        b.both(|_| {
            append(
                Table::Nat,
                istio(Output),
                vec![tcp(), dport_spec(*p)],
                Target::Return,
            )
        });
        b.both(|_| {
            append(
                Table::Nat,
                istio(Output),
                vec![udp(), dport_spec(*p)],
                Target::Return,
            )
        });
    }

    // Inbound passthrough from 127.0.0.6 / ::6 (the proxy calling the app) skips capture.
    b.both(|f| {
        append(
            Table::Nat,
            istio(Output),
            vec![out_if("lo"), Match::Src(passthrough_src(f))],
            Target::Return,
        )
    });

    let loopback_included = o.outbound_include.has_loopback();
    for (kind, ids) in [
        (OwnerKind::Uid, &o.proxy_uids),
        (OwnerKind::Gid, &o.proxy_gids),
    ] {
        for id in ids {
            outbound::proxy_owner_rules(&mut b, o, kind, id, dns, loopback_included, &lo);
        }
    }

    // Outbound capture by owner group (ISTIO_OUTBOUND_OWNER_GROUPS[_EXCLUDE]).
    match &o.owner_groups {
        OwnerGroups::AllExcept(groups) => {
            for g in groups {
                b.both(|_| {
                    append(
                        Table::Nat,
                        istio(Output),
                        vec![owner(false, OwnerKind::Gid, g)],
                        Target::Return,
                    )
                });
            }
        }
        OwnerGroups::Only(groups) => {
            let none_of: Vec<Match> = groups
                .iter()
                .map(|g| owner(true, OwnerKind::Gid, g))
                .collect();
            b.both(|_| append(Table::Nat, istio(Output), none_of.clone(), Target::Return));
        }
    }

    if dns {
        dns::dns_rules(&mut b, o);
    }

    // Traffic to the pod's own loopback (Envoy-aware apps, container to container) is not
    // captured.
    b.both(|f| {
        append(
            Table::Nat,
            istio(Output),
            vec![dst(false, lo(f))],
            Target::Return,
        )
    });
    // Excluded CIDRs (-x), per family; before the inclusions.
    for c in &o.outbound_exclude.v4 {
        b.push(
            Family::V4,
            append(
                Table::Nat,
                istio(Output),
                vec![dst(false, c.to_string())],
                Target::Return,
            ),
        );
    }
    for c in &o.outbound_exclude.v6 {
        b.push(
            Family::V6,
            append(
                Table::Nat,
                istio(Output),
                vec![dst(false, c.to_string())],
                Target::Return,
            ),
        );
    }
    // Explicitly included outbound ports (-q) go to the proxy whatever the destination.
    for p in &o.outbound_ports_include {
        b.both(|_| {
            append(
                Table::Nat,
                istio(Output),
                vec![tcp(), dport_spec(*p)],
                Target::Jump(Redirect),
            )
        });
    }
    // Included CIDRs (-i): to the proxy, also when they arrive on a kube-virt interface.
    for family in [Family::V4, Family::V6] {
        outbound::outbound_include(&mut b, o, family);
    }

    if tproxy {
        tproxy::tproxy_marks(&mut b, o, &lo);
    }
    b.plan
}

struct Builder {
    plan: Plan,
}

impl Builder {
    fn push(&mut self, f: Family, r: Rule) {
        match f {
            Family::V4 => self.plan.v4.push(r),
            Family::V6 if self.plan.ipv6 => self.plan.v6.push(r),
            Family::V6 => {}
        }
    }

    /// The same rule (given per family) for IPv4 and, when on, IPv6.
    fn both(&mut self, mut r: impl FnMut(Family) -> Rule) {
        self.push(Family::V4, r(Family::V4));
        if self.plan.ipv6 {
            self.push(Family::V6, r(Family::V6));
        }
    }
}

fn append(table: Table, chain: Chain, matches: Vec<Match>, target: Target) -> Rule {
    Rule {
        table,
        chain,
        op: Op::Append,
        matches,
        target,
    }
}

fn insert(table: Table, chain: Chain, pos: u32, matches: Vec<Match>, target: Target) -> Rule {
    Rule {
        table,
        chain,
        op: Op::Insert(pos),
        matches,
        target,
    }
}

fn pre() -> Chain {
    Chain::BuiltIn(Hook::Prerouting)
}

fn out() -> Chain {
    Chain::BuiltIn(Hook::Output)
}

fn istio(c: IstioChain) -> Chain {
    Chain::Istio(c)
}

fn tcp() -> Match {
    Match::Proto(Proto::Tcp)
}

fn udp() -> Match {
    Match::Proto(Proto::Udp)
}

fn dport(p: u16) -> Match {
    dport_spec(PortSpec::single(p))
}

fn dport_spec(port: PortSpec) -> Match {
    Match::DPort { neg: false, port }
}

fn dst(neg: bool, addr: String) -> Match {
    Match::Dst { neg, addr }
}

fn in_if(nic: &str) -> Match {
    Match::InIface(nic.to_string())
}

fn out_if(nic: &str) -> Match {
    Match::OutIface(nic.to_string())
}

fn owner(neg: bool, kind: OwnerKind, id: &str) -> Match {
    Match::Owner {
        neg,
        kind,
        id: id.to_string(),
    }
}
