//! TPROXY mode's marks: telling the proxy's lo traffic from the app's, and keeping the
//! inbound mark on connections so that replies follow the policy route.

use super::{append, dst, in_if, insert, istio, out, out_if, owner, pre, tcp, Builder};
use crate::options::Options;
use crate::render::model::{Family, IstioChain, Match, OwnerKind, Table, Target};
use IstioChain::Inbound;

/// Mark of the proxy's own connections back to the pod over `lo`.
const OUTBOUND_MARK: u32 = 1338;

/// TPROXY bookkeeping with marks: the proxy's connections to the pod over lo carry mark 1338
/// so that inbound can tell them from the app's own lo traffic, and the inbound mark is kept
/// on the connection so that replies follow the TPROXY route.
pub(super) fn tproxy_marks(b: &mut Builder, o: &Options, lo: &dyn Fn(Family) -> String) {
    let m = o.tproxy_mark;
    // Save the packet mark (set by TPROXY or original_src) as the connection mark.
    b.both(|_| {
        append(
            Table::Mangle,
            pre(),
            vec![
                tcp(),
                Match::Mark {
                    neg: false,
                    mark: m,
                },
            ],
            Target::SaveMark,
        )
    });
    // Packets already marked for inbound are not marked again (proxy → app).
    b.both(|_| {
        append(
            Table::Mangle,
            out(),
            vec![
                tcp(),
                out_if("lo"),
                Match::Mark {
                    neg: false,
                    mark: m,
                },
            ],
            Target::Return,
        )
    });
    // The proxy's connections to the pod IP over lo: app → VIP → proxy outbound → (1338) →
    // proxy inbound → app.
    for (kind, ids) in [
        (OwnerKind::Uid, &o.proxy_uids),
        (OwnerKind::Gid, &o.proxy_gids),
    ] {
        for id in ids {
            b.both(|f| {
                append(
                    Table::Mangle,
                    out(),
                    vec![
                        dst(true, lo(f)),
                        tcp(),
                        out_if("lo"),
                        owner(false, kind, id),
                    ],
                    Target::SetMark(OUTBOUND_MARK),
                )
            });
        }
    }
    // Replies of TPROXYed connections get the mark back, to match the policy route.
    b.both(|_| {
        append(
            Table::Mangle,
            out(),
            vec![tcp(), Match::ConnMark(m)],
            Target::RestoreMark,
        )
    });
    // At the head of ISTIO_INBOUND: already-marked packets are not diverted again…
    b.both(|_| {
        insert(
            Table::Mangle,
            istio(Inbound),
            1,
            vec![
                tcp(),
                Match::Mark {
                    neg: false,
                    mark: m,
                },
            ],
            Target::Return,
        )
    });
    // …nor the proxy's passthrough connections to the app (127.0.0.6 / ::6 over lo)…
    b.push(
        Family::V4,
        insert(
            Table::Mangle,
            istio(Inbound),
            2,
            vec![tcp(), Match::Src("127.0.0.6/32".into()), in_if("lo")],
            Target::Return,
        ),
    );
    b.push(
        Family::V6,
        insert(
            Table::Mangle,
            istio(Inbound),
            2,
            vec![tcp(), Match::Src("::6/128".into()), in_if("lo")],
            Target::Return,
        ),
    );
    // …nor the app talking to itself by pod IP (lo without the proxy's 1338 mark).
    b.both(|_| {
        insert(
            Table::Mangle,
            istio(Inbound),
            3,
            vec![
                tcp(),
                in_if("lo"),
                Match::Mark {
                    neg: true,
                    mark: OUTBOUND_MARK,
                },
            ],
            Target::Return,
        )
    });
}
