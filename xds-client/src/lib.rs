//! Envoy v3 API plumbing shared by the proxy and (later) the ADS client.
pub use envoy_types;
pub use prost;
pub use prost_reflect;

pub mod pool;
