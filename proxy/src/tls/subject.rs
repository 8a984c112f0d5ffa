//! A certificate's subject as RFC 2253 text, the way BoringSSL prints it for Envoy
//! (`X509_NAME_print_ex` with `XN_FLAG_RFC2253`): RDNs last first, `,` between them, `+`
//! inside one, OpenSSL's short names, RFC 2253 escapes, other bytes as `\XX`, unknown
//! attribute types as their dotted OID with the DER value in hex.

use super::san::{children, tlv};
use std::fmt::Write;

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;

/// The subject of a DER certificate; empty when it has none (or is malformed).
pub fn subject(cert_der: &[u8]) -> String {
    // serial, signature, issuer, validity, subject
    name(cert_der, 4).unwrap_or_default()
}

/// The issuer of a DER certificate, in the same form.
pub fn issuer(cert_der: &[u8]) -> String {
    name(cert_der, 2).unwrap_or_default()
}

fn name(cert_der: &[u8], field: usize) -> Option<String> {
    let (SEQUENCE, subject) = super::san::tbs_fields(cert_der)?.nth(field)? else {
        return None;
    };
    let rdns: Vec<&[u8]> = children(subject)
        .filter(|(t, _)| *t == SET)
        .map(|(_, v)| v)
        .collect();
    let mut out = String::new();
    for (i, rdn) in rdns.iter().rev().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for (j, (tag, atv)) in children(rdn).enumerate() {
            if tag != SEQUENCE {
                continue;
            }
            if j > 0 {
                out.push('+');
            }
            let (OID, oid, rest) = tlv(atv)? else {
                return None;
            };
            let (vtag, value, _) = tlv(rest)?;
            match short_name(oid) {
                Some(n) => {
                    out.push_str(n);
                    out.push('=');
                    escape(vtag, value, &mut out);
                }
                None => {
                    out.push_str(&dotted(oid));
                    out.push_str("=#");
                    for b in rest {
                        let _ = write!(out, "{b:02X}");
                    }
                }
            }
        }
    }
    Some(out)
}

/// OpenSSL's short names for the attribute types certificates carry.
fn short_name(oid: &[u8]) -> Option<&'static str> {
    Some(match oid {
        [0x55, 0x04, 0x03] => "CN",
        [0x55, 0x04, 0x04] => "SN",
        [0x55, 0x04, 0x05] => "serialNumber",
        [0x55, 0x04, 0x06] => "C",
        [0x55, 0x04, 0x07] => "L",
        [0x55, 0x04, 0x08] => "ST",
        [0x55, 0x04, 0x09] => "street",
        [0x55, 0x04, 0x0a] => "O",
        [0x55, 0x04, 0x0b] => "OU",
        [0x55, 0x04, 0x0c] => "title",
        [0x55, 0x04, 0x2a] => "GN",
        [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01] => "emailAddress",
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19] => "DC",
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x01] => "UID",
        _ => return None,
    })
}

fn dotted(oid: &[u8]) -> String {
    let mut out = String::new();
    let mut acc: u64 = 0;
    for b in oid {
        acc = (acc << 7) | u64::from(b & 0x7f);
        if b & 0x80 != 0 {
            continue;
        }
        if out.is_empty() {
            let (a, b) = match acc {
                0..=39 => (0, acc),
                40..=79 => (1, acc - 40),
                _ => (2, acc - 80),
            };
            let _ = write!(out, "{a}.{b}");
        } else {
            let _ = write!(out, ".{acc}");
        }
        acc = 0;
    }
    out
}

/// A string value with RFC 2253's escapes; bytes outside printable ASCII as `\XX` (after
/// converting BMP and universal strings to UTF-8).
fn escape(tag: u8, value: &[u8], out: &mut String) {
    let utf8: Vec<u8> = match tag {
        // BMPString: UTF-16BE; UniversalString: UTF-32BE.
        0x1e => String::from_utf16_lossy(
            &value
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect::<Vec<_>>(),
        )
        .into_bytes(),
        0x1c => value
            .chunks_exact(4)
            .filter_map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
            .collect::<String>()
            .into_bytes(),
        _ => value.to_vec(),
    };
    let last = utf8.len().saturating_sub(1);
    for (i, &b) in utf8.iter().enumerate() {
        let special = matches!(b, b',' | b'+' | b'"' | b'\\' | b'<' | b'>' | b';')
            || (i == 0 && (b == b'#' || b == b' '))
            || (i == last && b == b' ');
        if special {
            out.push('\\');
            out.push(b as char);
        } else if !(0x20..0x7f).contains(&b) {
            let _ = write!(out, "\\{b:02X}");
        } else {
            out.push(b as char);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oids_print_dotted() {
        assert_eq!(dotted(&[0x55, 0x04, 0x03]), "2.5.4.3");
        assert_eq!(
            dotted(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01]),
            "1.2.840.113549.1.9.1"
        );
    }

    #[test]
    fn values_are_escaped() {
        let mut s = String::new();
        escape(0x0c, b" a,b+c\"d\\e<f>g;h ", &mut s);
        assert_eq!(s, r#"\ a\,b\+c\"d\\e\<f\>g\;h\ "#);
        let mut s = String::new();
        escape(0x0c, "é#".as_bytes(), &mut s);
        assert_eq!(s, r"\C3\A9#");
    }
}
