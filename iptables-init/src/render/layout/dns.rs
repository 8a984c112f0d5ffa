//! DNS capture to the istio-agent DNS proxy.

use super::{append, dport, dst, istio, out, owner, pre, udp, Builder, DNS_PORT};
use crate::options::Options;
use crate::render::model::{Family, IstioChain, Match, OwnerKind, Proto, Table, Target};
use IstioChain::{Inbound, Output, OutputDns};

/// The istio-agent DNS proxy listens here.
const DNS_PROXY_PORT: u16 = 15053;

/// DNS capture: queries to the resolvers (or to any :53 with --capture-all-dns) go to the
/// istio-agent DNS proxy on 15053; UDP DNS is split into two conntrack zones so that the
/// app↔agent and agent↔resolver flows do not collide.
pub(super) fn dns_rules(b: &mut Builder, o: &Options) {
    let all = o.capture_all_dns;
    b.both(|_| append(Table::Raw, out(), vec![], Target::Jump(OutputDns)));
    // Jump only for a family that has something to capture.
    if all || !o.dns_servers_v4.is_empty() {
        b.push(
            Family::V4,
            append(Table::Nat, istio(Output), vec![], Target::Jump(OutputDns)),
        );
    }
    if all || !o.dns_servers_v6.is_empty() {
        b.push(
            Family::V6,
            append(Table::Nat, istio(Output), vec![], Target::Jump(OutputDns)),
        );
    }
    let servers = |f: Family| -> Vec<String> {
        match f {
            Family::V4 => o.dns_servers_v4.iter().map(|s| format!("{s}/32")).collect(),
            Family::V6 => o
                .dns_servers_v6
                .iter()
                .map(|s| format!("{s}/128"))
                .collect(),
        }
    };
    for (proto, singular) in [(Proto::Tcp, false), (Proto::Udp, true)] {
        let to_agent = Target::Redirect {
            port: DNS_PROXY_PORT,
            singular,
        };
        if all {
            b.both(|_| {
                append(
                    Table::Nat,
                    istio(OutputDns),
                    vec![Match::Proto(proto), dport(DNS_PORT)],
                    to_agent.clone(),
                )
            });
        } else {
            for f in [Family::V4, Family::V6] {
                for s in servers(f) {
                    b.push(
                        f,
                        append(
                            Table::Nat,
                            istio(OutputDns),
                            vec![Match::Proto(proto), dport(DNS_PORT), dst(false, s)],
                            to_agent.clone(),
                        ),
                    );
                }
            }
        }
    }
    // Zone 1: the agent's queries to upstream resolvers; zone 2: its answers to the apps.
    for (kind, ids) in [
        (OwnerKind::Uid, &o.proxy_uids),
        (OwnerKind::Gid, &o.proxy_gids),
    ] {
        for id in ids {
            b.both(|_| {
                append(
                    Table::Raw,
                    istio(OutputDns),
                    vec![udp(), dport(DNS_PORT), owner(false, kind, id)],
                    Target::CtZone(1),
                )
            });
            b.both(|_| {
                append(
                    Table::Raw,
                    istio(OutputDns),
                    vec![udp(), Match::SPort(DNS_PROXY_PORT), owner(false, kind, id)],
                    Target::CtZone(2),
                )
            });
        }
    }
    // Apps' queries are zone 2, resolvers' answers zone 1 (for the resolvers' addresses, or
    // for all of :53).
    if all {
        b.both(|_| append(Table::Raw, pre(), vec![], Target::Jump(Inbound)));
        b.both(|_| {
            append(
                Table::Raw,
                istio(OutputDns),
                vec![udp(), dport(DNS_PORT)],
                Target::CtZone(2),
            )
        });
        b.both(|_| {
            append(
                Table::Raw,
                istio(Inbound),
                vec![udp(), Match::SPort(DNS_PORT)],
                Target::CtZone(1),
            )
        });
        return;
    }
    for f in [Family::V4, Family::V6] {
        let list = servers(f);
        if !list.is_empty() {
            b.push(f, append(Table::Raw, pre(), vec![], Target::Jump(Inbound)));
        }
        for s in list {
            b.push(
                f,
                append(
                    Table::Raw,
                    istio(OutputDns),
                    vec![udp(), dport(DNS_PORT), dst(false, s.clone())],
                    Target::CtZone(2),
                ),
            );
            b.push(
                f,
                append(
                    Table::Raw,
                    istio(Inbound),
                    vec![udp(), Match::SPort(DNS_PORT), Match::Src(s)],
                    Target::CtZone(1),
                ),
            );
        }
    }
}
