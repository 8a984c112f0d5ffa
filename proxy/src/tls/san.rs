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
pub(crate) fn tlv(d: &[u8]) -> Option<(u8, &[u8], &[u8])> {
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

pub(crate) fn children(mut d: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
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

/// What `/certs` shows of a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Details {
    /// The serial number in lowercase hex.
    pub serial: String,
    /// Validity bounds, seconds since the epoch.
    pub not_before: i64,
    pub not_after: i64,
    pub names: Vec<San>,
}

/// The fields of a DER certificate's `tbsCertificate` after its version: serial, signature,
/// issuer, validity, subject, ...
pub(crate) fn tbs_fields(cert_der: &[u8]) -> Option<impl Iterator<Item = (u8, &[u8])>> {
    let (SEQUENCE, cert, _) = tlv(cert_der)? else {
        return None;
    };
    let (SEQUENCE, tbs, _) = tlv(cert)? else {
        return None;
    };
    let mut parts = children(tbs).peekable();
    // [0] EXPLICIT version, when present.
    if parts.peek().is_some_and(|(t, _)| *t == 0xa0) {
        parts.next();
    }
    Some(parts)
}

/// Serial number, validity and names of a DER certificate.
pub fn details(cert_der: &[u8]) -> Option<Details> {
    let mut parts = tbs_fields(cert_der)?;
    let (0x02, serial) = parts.next()? else {
        return None;
    };
    let _signature = parts.next()?;
    let _issuer = parts.next()?;
    let (SEQUENCE, validity) = parts.next()? else {
        return None;
    };
    let mut times = children(validity).map(|(t, v)| time(t, v));
    let not_before = times.next()??;
    let not_after = times.next()??;
    let serial = serial
        .iter()
        .skip_while(|b| **b == 0 && serial.len() > 1)
        .map(|b| format!("{b:02x}"))
        .collect();
    Some(Details {
        serial,
        not_before,
        not_after,
        names: names(cert_der),
    })
}

/// UTCTime (`YYMMDDHHMMSSZ`) or GeneralizedTime (`YYYYMMDDHHMMSSZ`) as epoch seconds.
fn time(tag: u8, v: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(v).ok()?.strip_suffix('Z')?;
    let (year, rest) = match tag {
        0x17 => {
            let yy: i64 = s.get(..2)?.parse().ok()?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, s.get(2..)?)
        }
        0x18 => (s.get(..4)?.parse().ok()?, s.get(4..)?),
        _ => return None,
    };
    let n = |i: usize| -> Option<i64> { rest.get(i..i + 2)?.parse().ok() };
    let days = days_from_civil(year, n(0)?, n(2)?);
    Some(days * 86_400 + n(4)? * 3600 + n(6)? * 60 + n(8)?)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Epoch seconds as RFC 3339 (`2026-11-24T10:00:00Z`), as Envoy's JSON shows timestamps.
pub fn rfc3339(secs: i64) -> String {
    let c = crate::clock::Civil::from_epoch(secs, 0);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        c.year, c.month, c.day, c.hour, c.min, c.sec
    )
}

/// The first URI SAN of a DER certificate.
pub fn first_uri(der: &[u8]) -> Option<String> {
    names(der).into_iter().find_map(|n| match n {
        San::Uri(u) => Some(u),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_round_trip() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        let t = days_from_civil(2026, 11, 24) * 86_400 + 3661;
        assert_eq!(rfc3339(t), "2026-11-24T01:01:01Z");
        assert_eq!(time(0x17, b"261124010101Z"), Some(t));
        assert_eq!(time(0x18, b"20261124010101Z"), Some(t));
        assert!(dns_matches("*.example.com", "a.example.com"));
        assert!(!dns_matches("*.example.com", "a.b.example.com"));
    }
}
