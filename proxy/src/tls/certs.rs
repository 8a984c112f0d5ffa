//! `/certs`: the certificates of every TLS context (listener filter chains and clusters) in
//! Envoy's JSON shape — the CA and the leaf certificate, with serial, names and validity.

use super::san::{details, rfc3339, San};
use crate::config::tls::CommonTls;
use crate::snapshot::Server;
use serde_json::{json, Value};

fn cert_json(der: &[u8], path: &str, now: i64) -> Option<Value> {
    let d = details(der)?;
    let names: Vec<Value> = d
        .names
        .iter()
        .map(|n| match n {
            San::Uri(u) => json!({ "uri": u }),
            San::Dns(n) => json!({ "dns": n }),
            San::Ip(ip) => json!({ "ip_address": ip.to_string() }),
            San::Email(e) => json!({ "email": e }),
        })
        .collect();
    let days = (d.not_after - now).max(0) / 86_400;
    Some(json!({
        "path": path,
        "serial_number": d.serial,
        "subject_alt_names": names,
        "days_until_expiration": days.to_string(),
        "valid_from": rfc3339(d.not_before),
        "expiration_time": rfc3339(d.not_after),
    }))
}

/// One context's entry: its trusted CA and its certificate (secrets not yet delivered show
/// as empty lists).
fn context(c: &CommonTls, now: i64) -> Value {
    let mut seen = Vec::new();
    let ca: Vec<Value> = super::validation(c, &mut seen)
        .ok()
        .flatten()
        .and_then(|v| {
            v.trusted_ca
                .first()
                .and_then(|ca| cert_json(ca, &v.ca_path, now))
        })
        .into_iter()
        .collect();
    let chain: Vec<Value> = super::certificates(c, &mut seen)
        .unwrap_or_default()
        .iter()
        .filter_map(|cert| {
            cert.chain
                .first()
                .and_then(|leaf| cert_json(leaf, &cert.path, now))
        })
        .collect();
    json!({ "ca_cert": ca, "cert_chain": chain })
}

pub fn render(server: &Server) -> String {
    let now = crate::util::epoch_secs() as i64;
    let mut out = Vec::new();
    for l in server.listeners.configs() {
        for chain in l.chains.iter().chain(l.default_chain.iter()) {
            if let Some(t) = &chain.tls {
                out.push(context(&t.cfg.common, now));
            }
        }
    }
    for c in server.snapshot.load().clusters.values() {
        for t in c.cfg.tls_contexts() {
            out.push(context(&t.common, now));
        }
    }
    serde_json::to_string_pretty(&json!({ "certificates": out })).unwrap_or_default()
}
