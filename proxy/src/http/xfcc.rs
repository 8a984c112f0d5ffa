//! `x-forwarded-client-cert`: removed, kept, or given this hop's entry for an mTLS client, as
//! the connection manager's `forward_client_cert_details` says. The entry is the same for
//! every request of a connection, so it is written once, when the connection starts.

use crate::config::xfcc::{Detail, Mode, Xfcc};
use http::{HeaderMap, HeaderValue};
use std::fmt::Write;

static XFCC: http::HeaderName = http::HeaderName::from_static("x-forwarded-client-cert");

/// PEM certificates, URL-encoded as Envoy writes them in `Cert=` and `Chain=`.
pub fn url_encoded_pem(certs: &[&[u8]]) -> String {
    let mut pem = String::new();
    for c in certs {
        pem.push_str("-----BEGIN CERTIFICATE-----\n");
        let b64 = crate::util::base64_encode(c);
        for line in b64.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).unwrap_or_default());
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE-----\n");
    }
    let mut out = String::with_capacity(pem.len() * 5 / 4);
    for b in pem.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// This hop's entry for a client that presented `chain` (its certificate first): `By=` this
/// proxy's identity, `Hash=` the SHA-256 of the client's certificate, then the configured
/// details.
pub fn entry(cfg: &Xfcc, chain: &[&[u8]], local_uri: Option<&str>) -> Option<HeaderValue> {
    let peer_der = *chain.first()?;
    let mut parts: Vec<String> = Vec::new();
    if let Some(by) = local_uri {
        parts.push(format!("By={by}"));
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, peer_der);
    let mut hash = String::with_capacity(64);
    for b in digest.as_ref() {
        let _ = write!(hash, "{b:02x}");
    }
    parts.push(format!("Hash={hash}"));
    let names = crate::tls::san::names(peer_der);
    for d in &cfg.details {
        match d {
            Detail::Cert => parts.push(format!("Cert=\"{}\"", url_encoded_pem(&chain[..1]))),
            Detail::Chain => parts.push(format!("Chain=\"{}\"", url_encoded_pem(chain))),
            Detail::Subject => parts.push(format!(
                "Subject=\"{}\"",
                crate::tls::subject::subject(peer_der)
            )),
            Detail::Uri => {
                let uris: Vec<&str> = names
                    .iter()
                    .filter_map(|n| match n {
                        crate::tls::san::San::Uri(u) => Some(u.as_str()),
                        _ => None,
                    })
                    .collect();
                if uris.is_empty() {
                    parts.push("URI=".to_string());
                }
                parts.extend(uris.iter().map(|u| format!("URI={u}")));
            }
            Detail::Dns => parts.extend(names.iter().filter_map(|n| match n {
                crate::tls::san::San::Dns(d) => Some(format!("DNS={d}")),
                _ => None,
            })),
        }
    }
    HeaderValue::from_str(&parts.join(";")).ok()
}

/// Applies the mode to a request: `mtls` says the client presented a certificate, `entry` is
/// this hop's (see [`entry`]).
pub fn apply(h: &mut HeaderMap, cfg: &Xfcc, mtls: bool, entry: Option<&HeaderValue>) {
    match cfg.mode {
        Mode::AlwaysForwardOnly => {}
        Mode::Sanitize => {
            h.remove(&XFCC);
        }
        _ if !mtls => {
            h.remove(&XFCC);
        }
        Mode::ForwardOnly => {}
        Mode::AppendForward => {
            let Some(entry) = entry else { return };
            let joined = h.get_all(&XFCC).iter().fold(Vec::new(), |mut acc, v| {
                if !acc.is_empty() {
                    acc.push(b',');
                }
                acc.extend_from_slice(v.as_bytes());
                acc
            });
            let value = if joined.is_empty() {
                entry.clone()
            } else {
                let mut v = joined;
                v.push(b',');
                v.extend_from_slice(entry.as_bytes());
                HeaderValue::from_bytes(&v).unwrap_or_else(|_| entry.clone())
            };
            h.insert(&XFCC, value);
        }
        Mode::SanitizeSet => match entry {
            Some(e) => {
                h.insert(&XFCC, e.clone());
            }
            None => {
                h.remove(&XFCC);
            }
        },
    }
}
