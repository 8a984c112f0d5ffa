//! The descriptor pool of Envoy's v3 API, compiled at build time from the protos that ship in
//! `envoy-types`.
use prost_reflect::DescriptorPool;
use std::sync::OnceLock;

static DESCRIPTORS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/envoy_descriptors.bin"));

/// The process-wide pool. Decoded once on first use.
pub fn pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(DESCRIPTORS).expect("descriptor set compiled by build.rs is valid")
    })
}
