//! The access log's downstream TLS operators: the negotiated version and cipher, and the
//! client certificate's subject, issuer, serial number, SHA-256 fingerprint and DNS SANs,
//! Ferry's own URI SAN.

use super::ops::Val;
use crate::stream_info::StreamInfo;
use std::borrow::Cow;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsOp {
    Version,
    Cipher,
    PeerSubject,
    PeerIssuer,
    PeerSerial,
    PeerFingerprint256,
    PeerDnsSan,
    LocalUriSan,
}

impl TlsOp {
    pub fn parse(name: &str) -> Option<TlsOp> {
        Some(match name {
            "DOWNSTREAM_TLS_VERSION" => TlsOp::Version,
            "DOWNSTREAM_TLS_CIPHER" => TlsOp::Cipher,
            "DOWNSTREAM_PEER_SUBJECT" => TlsOp::PeerSubject,
            "DOWNSTREAM_PEER_ISSUER" => TlsOp::PeerIssuer,
            "DOWNSTREAM_PEER_SERIAL" => TlsOp::PeerSerial,
            "DOWNSTREAM_PEER_FINGERPRINT_256" => TlsOp::PeerFingerprint256,
            "DOWNSTREAM_PEER_DNS_SAN" => TlsOp::PeerDnsSan,
            "DOWNSTREAM_LOCAL_URI_SAN" => TlsOp::LocalUriSan,
            _ => return None,
        })
    }

    pub fn eval<'a>(self, s: &'a StreamInfo) -> Val<'a> {
        let Some(p) = s.downstream.peer.as_ref() else {
            return Val::None;
        };
        let owned = |v: String| {
            if v.is_empty() {
                Val::None
            } else {
                Val::Str(Cow::Owned(v))
            }
        };
        let cert = p.cert.as_deref();
        match self {
            TlsOp::Version => p.version.map_or(Val::None, |v| Val::Str(Cow::Borrowed(v))),
            TlsOp::Cipher => p.cipher.map_or(Val::None, |v| Val::Str(Cow::Borrowed(v))),
            TlsOp::PeerSubject => {
                cert.map_or(Val::None, |c| owned(crate::tls::subject::subject(c)))
            }
            TlsOp::PeerIssuer => cert.map_or(Val::None, |c| owned(crate::tls::subject::issuer(c))),
            TlsOp::PeerSerial => cert
                .and_then(crate::tls::san::details)
                .map_or(Val::None, |d| owned(d.serial)),
            TlsOp::PeerFingerprint256 => cert.map_or(Val::None, |c| {
                let d = ring::digest::digest(&ring::digest::SHA256, c);
                owned(d.as_ref().iter().map(|b| format!("{b:02x}")).collect())
            }),
            TlsOp::PeerDnsSan => owned(p.dns.join(",")),
            TlsOp::LocalUriSan => p
                .local_uri
                .as_deref()
                .map_or(Val::None, |u| Val::Str(Cow::Borrowed(u))),
        }
    }
}
