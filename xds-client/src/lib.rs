//! Envoy v3 API plumbing for Ferry: the descriptor pool that reads Envoy's configuration
//! formats, and the ADS client that keeps Ferry's configuration in step with a control plane.
pub use envoy_types;
pub use prost;
pub use prost_reflect;

pub mod ads;
pub mod channel;
mod delta;
pub mod pool;
