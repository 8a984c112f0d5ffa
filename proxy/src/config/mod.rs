//! Ferry's validated configuration: Envoy v3 protos are checked against the set of fields Ferry
//! implements ([`support`]) and converted once into the plain types of this module tree. Past
//! this point nothing re-parses or re-checks configuration.

pub mod bootstrap;
pub mod cidr;
pub mod cluster;
pub mod filters;
pub mod hcm;
pub mod headers;
pub mod listener;
pub mod listener_filters;
pub mod load;
pub mod matcher;
pub mod overload;
pub mod route;
pub mod server;
pub mod sinks;
pub mod stats;
pub mod support;
pub mod tcp_proxy;
#[cfg(test)]
mod tests;
pub mod tls;
pub mod trace;
pub mod typed_struct;
pub mod xds;
pub mod xfcc;

use envoy_types::pb::google::protobuf::{Any, Duration as PbDuration};
use std::time::Duration;

/// A configuration error: the full field path and what is wrong there.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{path}: {msg}")]
pub struct ConfigError {
    pub path: String,
    pub msg: String,
}

pub type Result<T> = std::result::Result<T, ConfigError>;

pub fn err<T>(path: &str, msg: impl Into<String>) -> Result<T> {
    Err(ConfigError {
        path: path.to_string(),
        msg: msg.into(),
    })
}

/// Converts a proto Duration; negative or out-of-range values are errors.
pub fn duration(d: &PbDuration, path: &str) -> Result<Duration> {
    if d.seconds < 0 || d.nanos < 0 || d.nanos >= 1_000_000_000 {
        return err(path, "duration must be non-negative");
    }
    Ok(Duration::new(d.seconds as u64, d.nanos as u32))
}

pub fn opt_duration(d: &Option<PbDuration>, path: &str) -> Result<Option<Duration>> {
    d.as_ref().map(|d| duration(d, path)).transpose()
}

/// Decodes a `typed_config` Any into the message its `@type` names.
pub fn any_to<M: prost::Message + prost::Name + Default>(any: &Any, path: &str) -> Result<M> {
    let want = M::type_url();
    if any.type_url != want {
        return err(path, format!("expected {want}, got {}", any.type_url));
    }
    M::decode(any.value.as_slice()).map_err(|e| ConfigError {
        path: path.to_string(),
        msg: format!("cannot decode {}: {e}", any.type_url),
    })
}

/// The message name of an Any's type URL (`type.googleapis.com/a.b.C` → `a.b.C`).
pub fn type_name(any: &Any) -> &str {
    any.type_url.rsplit('/').next().unwrap_or("")
}
