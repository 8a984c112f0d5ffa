//! `istio.alpn`: the ALPN list an upstream TLS connection offers, by the HTTP version the
//! request goes upstream with (istiod: `istio-http/1.1, istio, http/1.1` and
//! `istio-h2, istio, h2`), in place of the cluster's own list — how an Istio server tells
//! sidecar HTTP traffic from TCP on its inbound filter chains.

use super::proto::AlpnConfig;
use crate::config::{err, Result};
use std::sync::Arc;

/// The lists for HTTP/1.0, HTTP/1.1 and HTTP/2 upstream requests (none: the cluster's).
#[derive(Debug, Default)]
pub struct AlpnOverride(pub [Option<Arc<[Vec<u8>]>>; 3]);

impl AlpnOverride {
    pub fn from_proto(c: &AlpnConfig, path: &str) -> Result<AlpnOverride> {
        let mut o = AlpnOverride::default();
        for (i, a) in c.alpn_override.iter().enumerate() {
            let Some(slot) = usize::try_from(a.upstream_protocol)
                .ok()
                .and_then(|p| o.0.get_mut(p))
            else {
                return err(
                    &format!("{path}.alpn_override[{i}].upstream_protocol"),
                    "unknown protocol",
                );
            };
            if !a.alpn_override.is_empty() {
                *slot = Some(
                    a.alpn_override
                        .iter()
                        .map(|s| s.as_bytes().to_vec())
                        .collect(),
                );
            }
        }
        Ok(o)
    }

    /// The list for a request going upstream as HTTP/2 (`h2`) or HTTP/1 (`http10`: 1.0).
    pub fn for_upstream(&self, h2: bool, http10: bool) -> Option<&[Vec<u8>]> {
        let i = match (h2, http10) {
            (true, _) => 2,
            (false, true) => 0,
            (false, false) => 1,
        };
        self.0[i].as_deref()
    }
}
