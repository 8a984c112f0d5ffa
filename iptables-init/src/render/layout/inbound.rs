//! Inbound capture: which ports reach the proxy, by NAT REDIRECT or by TPROXY.

use super::{append, dport_spec, dst, istio, pre, tcp, Builder};
use crate::options::{InboundPorts, Mode, Options};
use crate::render::model::{CtState, Family, IstioChain, Match, PortSpec, Table, Target};
use IstioChain::{Divert, InRedirect, Inbound};

/// Inbound capture (-b, -d): which ports reach the proxy, by REDIRECT or TPROXY.
pub(super) fn inbound(b: &mut Builder, o: &Options, lo: &dyn Fn(Family) -> String) {
    let tproxy = o.mode == Mode::Tproxy;
    if o.inbound_ports == InboundPorts::None {
        return;
    }
    let table = if tproxy {
        // TPROXY: packets entering ISTIO_DIVERT are marked so that policy routing delivers them
        // locally, where the proxy's transparent socket takes them.
        b.both(|_| {
            append(
                Table::Mangle,
                istio(Divert),
                vec![],
                Target::SetMark(o.tproxy_mark),
            )
        });
        b.both(|_| append(Table::Mangle, istio(Divert), vec![], Target::Accept));
        // New connections not addressed to loopback are handed to the inbound capture port.
        b.both(|f| {
            append(
                Table::Mangle,
                istio(IstioChain::Tproxy),
                vec![dst(true, lo(f)), tcp()],
                Target::Tproxy {
                    mark: o.tproxy_mark,
                    port: o.inbound_capture_port,
                },
            )
        });
        Table::Mangle
    } else {
        Table::Nat
    };
    // Inbound TCP enters ISTIO_INBOUND.
    b.both(|_| append(table, pre(), vec![tcp()], Target::Jump(Inbound)));
    let capture = |b: &mut Builder, port: Option<PortSpec>| {
        let by_port = |m: Vec<Match>| {
            let mut v = vec![tcp()];
            v.extend(port.map(dport_spec));
            v.extend(m);
            v
        };
        if tproxy {
            // Packets of established connections go straight to the proxy's socket…
            b.both(|_| {
                append(
                    Table::Mangle,
                    istio(Inbound),
                    by_port(vec![Match::CtState(CtState::RelatedEstablished)]),
                    Target::Jump(Divert),
                )
            });
            // …new connections are TPROXYed.
            b.both(|_| {
                append(
                    Table::Mangle,
                    istio(Inbound),
                    by_port(vec![]),
                    Target::Jump(IstioChain::Tproxy),
                )
            });
        } else {
            b.both(|_| {
                append(
                    Table::Nat,
                    istio(Inbound),
                    by_port(vec![]),
                    Target::Jump(InRedirect),
                )
            });
        }
    };
    match &o.inbound_ports {
        InboundPorts::None => {}
        InboundPorts::All => {
            // "*": every port except the excluded ones (-d, e.g. 15090,15021,15020).
            for p in &o.inbound_ports_exclude {
                b.both(|_| {
                    append(
                        table,
                        istio(Inbound),
                        vec![tcp(), dport_spec(*p)],
                        Target::Return,
                    )
                });
            }
            capture(b, None);
        }
        InboundPorts::List(ports) => {
            // A port list: only those ports (-d does not apply).
            for p in ports {
                capture(b, Some(*p));
            }
        }
    }
}
