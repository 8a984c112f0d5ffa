//! A connection manager's HTTP/2 limits and windows.

use super::super::{err, Result};
use std::time::Duration;

/// A downstream HTTP/2 connection's limits. Ferry's defaults when the config says nothing
/// are Envoy's own recommendation for an edge proxy (100 streams, a 64 KiB stream window and
/// a 1 MiB connection window); Envoy's defaults are 1024 streams, 16 MiB and 24 MiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct H2Limits {
    pub max_concurrent_streams: u32,
    pub initial_stream_window_size: u32,
    pub initial_connection_window_size: u32,
}

impl Default for H2Limits {
    fn default() -> H2Limits {
        H2Limits {
            max_concurrent_streams: 100,
            initial_stream_window_size: 64 * 1024,
            initial_connection_window_size: 1024 * 1024,
        }
    }
}

impl H2Limits {
    pub(super) fn from_proto(
        o: Option<&envoy_types::pb::envoy::config::core::v3::Http2ProtocolOptions>,
        path: &str,
    ) -> Result<H2Limits> {
        let mut l = H2Limits::default();
        let Some(o) = o else { return Ok(l) };
        if let Some(v) = &o.max_concurrent_streams {
            if v.value == 0 {
                return err(
                    &format!("{path}.max_concurrent_streams"),
                    "must be at least 1",
                );
            }
            l.max_concurrent_streams = v.value;
        }
        // Envoy's bounds for the windows: 65535 up to 2^31 - 1.
        for (v, field, slot) in [
            (
                &o.initial_stream_window_size,
                "initial_stream_window_size",
                &mut l.initial_stream_window_size,
            ),
            (
                &o.initial_connection_window_size,
                "initial_connection_window_size",
                &mut l.initial_connection_window_size,
            ),
        ] {
            if let Some(v) = v {
                if !(65_535..=2_147_483_647).contains(&v.value) {
                    return err(
                        &format!("{path}.{field}"),
                        "must be between 65535 and 2147483647",
                    );
                }
                *slot = v.value;
            }
        }
        Ok(l)
    }
}

/// How long a client has for its request headers when the config does not say (Envoy's
/// edge-proxy recommendation; Envoy's own default is no limit).
pub const DEFAULT_REQUEST_HEADERS_TIMEOUT: Duration = Duration::from_secs(10);
