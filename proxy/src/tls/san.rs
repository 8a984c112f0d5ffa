//! Subject alternative names of a DER certificate (RFC 5280 §4.2.1.6), read with a small DER
//! walker: only the path to the extension is decoded, nothing else is trusted from it (the
//! certificate has already been verified when its names are matched).

use std::net::IpAddr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum San {
    Email(String),
    Dns(String),
    Uri(String),
    Ip(IpAddr),
}

/// One DER element: (tag, contents, rest).
fn tlv(d: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = d.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |a, b| (a << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

fn children(mut d: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    std::iter::from_fn(move || {
        let (tag, body, rest) = tlv(d)?;
        d = rest;
        Some((tag, body))
    })
}

const SEQUENCE: u8 = 0x30;
const EXTENSIONS: u8 = 0xa3;
const OID: u8 = 0x06;
const OCTET_STRING: u8 = 0x04;
/// 2.5.29.17, subjectAltName.
const SAN_OID: &[u8] = &[0x55, 0x1d, 0x11];

/// The subject alternative names of a certificate; empty when it has none (or is malformed).
pub fn names(cert_der: &[u8]) -> Vec<San> {
    let mut out = Vec::new();
    let Some((SEQUENCE, cert, _)) = tlv(cert_der) else {
        return out;
    };
    let Some((SEQUENCE, tbs, _)) = tlv(cert) else {
        return out;
    };
    let Some((_, exts)) = children(tbs).find(|(t, _)| *t == EXTENSIONS) else {
        return out;
    };
    let Some((SEQUENCE, exts, _)) = tlv(exts) else {
        return out;
    };
    for (tag, ext) in children(exts) {
        if tag != SEQUENCE {
            continue;
        }
        let mut parts = children(ext);
        if parts.next() != Some((OID, SAN_OID)) {
            continue;
        }
        let Some((_, value)) = parts.find(|(t, _)| *t == OCTET_STRING) else {
            continue;
        };
        let Some((SEQUENCE, general_names, _)) = tlv(value) else {
            continue;
        };
        for (tag, v) in children(general_names) {
            let text = || String::from_utf8_lossy(v).into_owned();
            match tag {
                0x81 => out.push(San::Email(text())),
                0x82 => out.push(San::Dns(text())),
                0x86 => out.push(San::Uri(text())),
                0x87 => match v.len() {
                    4 => out.push(San::Ip(IpAddr::from(
                        <[u8; 4]>::try_from(v).unwrap_or_default(),
                    ))),
                    16 => out.push(San::Ip(IpAddr::from(
                        <[u8; 16]>::try_from(v).unwrap_or_default(),
                    ))),
                    _ => {}
                },
                _ => {}
            }
        }
    }
    out
}

/// RFC 6125 §6.4.3 as Envoy applies it to an exact DNS matcher: a `*.` wildcard in the
/// certificate covers exactly one label.
pub fn dns_matches(cert_name: &str, want: &str) -> bool {
    if cert_name.eq_ignore_ascii_case(want) {
        return true;
    }
    let Some(suffix) = cert_name.strip_prefix("*.") else {
        return false;
    };
    match want.split_once('.') {
        Some((label, rest)) => !label.is_empty() && rest.eq_ignore_ascii_case(suffix),
        None => false,
    }
}
