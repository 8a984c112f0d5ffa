//! A route's stream timeouts beside its `timeout`: `idle_timeout`, `max_stream_duration`
//! (with the `grpc-timeout` header), and the deprecated `max_grpc_timeout`.

use super::super::{duration, Result};
use envoy_types::pb::envoy::config::route::v3 as pb;
use std::time::Duration;

/// `max_stream_duration`: its presence switches the route to Envoy's "new" timeouts (the
/// route `timeout` no longer applies).
#[derive(Debug, Clone, Copy)]
pub struct MaxStream {
    /// The stream's maximum duration (none: the connection manager's; zero: none at all).
    pub duration: Option<Duration>,
    /// `grpc_timeout_header_max`: the `grpc-timeout` header sets the duration, capped at this
    /// (zero: no cap); none: the header is not read.
    pub grpc_header_max: Option<Duration>,
    pub grpc_header_offset: Duration,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct StreamTimeouts {
    /// `idle_timeout`: `Some(None)` turns the stream idle timeout off for the route.
    pub idle: Option<Option<Duration>>,
    pub max_stream: Option<MaxStream>,
    /// Deprecated `max_grpc_timeout` and `grpc_timeout_offset`.
    pub grpc_legacy: Option<(Duration, Duration)>,
}

impl StreamTimeouts {
    pub fn from_proto(a: &pb::RouteAction, path: &str) -> Result<StreamTimeouts> {
        let d = |v: &Option<envoy_types::pb::google::protobuf::Duration>, f: &str| {
            v.as_ref()
                .map(|v| duration(v, &format!("{path}.{f}")))
                .transpose()
        };
        let max_stream = match &a.max_stream_duration {
            None => None,
            Some(m) => Some(MaxStream {
                duration: d(
                    &m.max_stream_duration,
                    "max_stream_duration.max_stream_duration",
                )?,
                grpc_header_max: d(
                    &m.grpc_timeout_header_max,
                    "max_stream_duration.grpc_timeout_header_max",
                )?,
                grpc_header_offset: d(
                    &m.grpc_timeout_header_offset,
                    "max_stream_duration.grpc_timeout_header_offset",
                )?
                .unwrap_or_default(),
            }),
        };
        #[allow(deprecated)]
        let grpc_legacy = match d(&a.max_grpc_timeout, "max_grpc_timeout")? {
            None => None,
            Some(max) => Some((
                max,
                #[allow(deprecated)]
                d(&a.grpc_timeout_offset, "grpc_timeout_offset")?.unwrap_or_default(),
            )),
        };
        Ok(StreamTimeouts {
            idle: d(&a.idle_timeout, "idle_timeout")?.map(|t| Some(t).filter(|t| !t.is_zero())),
            max_stream,
            grpc_legacy,
        })
    }
}

/// A `grpc-timeout` value: 1 to 8 digits and a unit (H, M, S, m, u, n); u and n round up
/// to whole milliseconds.
pub fn parse_grpc_timeout(v: &str) -> Option<Duration> {
    let (digits, unit) = v.split_at(v.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_millis(n.div_ceil(1000)),
        "n" => Duration::from_millis(n.div_ceil(1_000_000)),
        _ => return None,
    })
}

/// A duration as Envoy writes `grpc-timeout`: milliseconds while they fit in 8 digits.
pub fn format_grpc_timeout(d: Duration) -> String {
    let ms = d.as_millis() as u64;
    if ms <= 99_999_999 {
        format!("{ms}m")
    } else if d.as_secs() <= 99_999_999 {
        format!("{}S", d.as_secs())
    } else if d.as_secs() / 60 <= 99_999_999 {
        format!("{}M", d.as_secs() / 60)
    } else {
        format!("{}H", (d.as_secs() / 3600).min(99_999_999))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts() {
        assert_eq!(parse_grpc_timeout("500m"), Some(Duration::from_millis(500)));
        assert_eq!(parse_grpc_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse_grpc_timeout("1500u"), Some(Duration::from_millis(2)));
        assert_eq!(parse_grpc_timeout("500x"), None);
        assert_eq!(parse_grpc_timeout("123456789m"), None);
        assert_eq!(format_grpc_timeout(Duration::from_millis(400)), "400m");
    }
}
