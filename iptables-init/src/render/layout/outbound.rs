//! Outbound capture: the proxy's own traffic, traffic over lo, and the included CIDRs.

use super::{append, dst, in_if, insert, istio, out_if, owner, pre, tcp, Builder, DNS_PORT};
use crate::options::Options;
use crate::render::model::{Family, IstioChain, Match, OwnerKind, PortSpec, Table, Target};
use IstioChain::{InRedirect, Output, Redirect};

/// The rules for one proxy UID or GID.
pub(super) fn proxy_owner_rules(
    b: &mut Builder,
    o: &Options,
    kind: OwnerKind,
    id: &str,
    dns: bool,
    loopback_included: bool,
    lo: &dyn Fn(Family) -> String,
) {
    // The proxy calling the pod's own IP over lo (app → proxy → service VIP → this pod) is
    // sent to the inbound side, except to the tunnel port (and, for the UID with DNS capture,
    // except DNS: app → agent → DNS server must not loop through inbound).
    let skip_ports = if dns && kind == OwnerKind::Uid {
        Match::DPorts {
            neg: true,
            ports: vec![
                PortSpec::single(DNS_PORT),
                PortSpec::single(o.inbound_tunnel_port),
            ],
        }
    } else {
        Match::DPort {
            neg: true,
            port: PortSpec::single(o.inbound_tunnel_port),
        }
    };
    b.both(|f| {
        append(
            Table::Nat,
            istio(Output),
            vec![
                out_if("lo"),
                dst(true, lo(f)),
                tcp(),
                skip_ports.clone(),
                owner(false, kind, id),
            ],
            Target::Jump(InRedirect),
        )
    });
    // Other processes talking over lo (app → app by pod IP) are left alone, unless a loopback
    // range was explicitly included with -i. With DNS capture, TCP DNS over lo is still
    // captured (a resolver on localhost).
    if !loopback_included {
        let mut m = vec![out_if("lo")];
        if dns {
            m.extend([
                tcp(),
                Match::DPort {
                    neg: true,
                    port: PortSpec::single(DNS_PORT),
                },
            ]);
        }
        m.push(owner(true, kind, id));
        b.both(|_| append(Table::Nat, istio(Output), m.clone(), Target::Return));
    }
    // The proxy's own traffic is never recaptured (all protocols, any destination).
    b.both(|_| {
        append(
            Table::Nat,
            istio(Output),
            vec![owner(false, kind, id)],
            Target::Return,
        )
    });
}

/// Outbound inclusion (-i) for one family: "*" captures everything left, a list captures
/// those prefixes; kube-virt interfaces (-k) get the same treatment for traffic they bring in.
pub(super) fn outbound_include(b: &mut Builder, o: &Options, f: Family) {
    let r = &o.outbound_include;
    if r.wildcard {
        b.push(
            f,
            append(Table::Nat, istio(Output), vec![], Target::Jump(Redirect)),
        );
        for nic in &o.virt_interfaces {
            b.push(
                f,
                insert(
                    Table::Nat,
                    pre(),
                    1,
                    vec![in_if(nic)],
                    Target::Jump(Redirect),
                ),
            );
        }
        return;
    }
    let cidrs = match f {
        Family::V4 => &r.v4,
        Family::V6 => &r.v6,
    };
    for c in cidrs {
        for nic in &o.virt_interfaces {
            b.push(
                f,
                insert(
                    Table::Nat,
                    pre(),
                    1,
                    vec![in_if(nic), dst(false, c.to_string())],
                    Target::Jump(Redirect),
                ),
            );
        }
        b.push(
            f,
            append(
                Table::Nat,
                istio(Output),
                vec![dst(false, c.to_string())],
                Target::Jump(Redirect),
            ),
        );
    }
}
