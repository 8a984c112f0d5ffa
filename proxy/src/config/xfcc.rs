//! `forward_client_cert_details` and `set_current_client_cert_details`: what the connection
//! manager does with `x-forwarded-client-cert` (Istio's inbound listeners append the mTLS
//! client's identity to it).

use super::{err, Result};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3 as pb;
use pb::http_connection_manager::ForwardClientCertDetails as Pb;

/// `forward_client_cert_details`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// The header is removed (Envoy's default).
    #[default]
    Sanitize,
    /// Kept as it came, on mTLS connections only.
    ForwardOnly,
    /// This hop's entry appended, on mTLS connections only.
    AppendForward,
    /// Replaced by this hop's entry, on mTLS connections only.
    SanitizeSet,
    /// Kept as it came, whatever the connection.
    AlwaysForwardOnly,
}

/// One field `set_current_client_cert_details` adds to this hop's entry, in Envoy's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    /// The client certificate, PEM, URL-encoded.
    Cert,
    /// The client's whole chain, likewise.
    Chain,
    Subject,
    Uri,
    Dns,
}

#[derive(Debug, Clone, Default)]
pub struct Xfcc {
    pub mode: Mode,
    pub details: Vec<Detail>,
}

impl Xfcc {
    /// Whether this hop writes an entry of its own.
    pub fn sets(&self) -> bool {
        matches!(self.mode, Mode::AppendForward | Mode::SanitizeSet)
    }

    pub fn from_proto(h: &pb::HttpConnectionManager, path: &str) -> Result<Xfcc> {
        let mode = match Pb::try_from(h.forward_client_cert_details) {
            Ok(Pb::Sanitize) => Mode::Sanitize,
            Ok(Pb::ForwardOnly) => Mode::ForwardOnly,
            Ok(Pb::AppendForward) => Mode::AppendForward,
            Ok(Pb::SanitizeSet) => Mode::SanitizeSet,
            Ok(Pb::AlwaysForwardOnly) => Mode::AlwaysForwardOnly,
            Err(_) => {
                return err(
                    &format!("{path}.forward_client_cert_details"),
                    format!("unknown value {}", h.forward_client_cert_details),
                )
            }
        };
        let mut details = Vec::new();
        if let Some(s) = &h.set_current_client_cert_details {
            let sp = format!("{path}.set_current_client_cert_details");
            for (set, field) in [(s.issuer, "issuer"), (s.format != 0, "format")] {
                if set {
                    return err(
                        &format!("{sp}.{field}"),
                        format!("{field} is not supported by Ferry yet"),
                    );
                }
            }
            if s.cert {
                details.push(Detail::Cert);
            }
            if s.chain {
                details.push(Detail::Chain);
            }
            if s.subject.is_some_and(|b| b.value) {
                details.push(Detail::Subject);
            }
            if s.uri {
                details.push(Detail::Uri);
            }
            if s.dns {
                details.push(Detail::Dns);
            }
        }
        Ok(Xfcc { mode, details })
    }
}
