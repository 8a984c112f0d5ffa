//! The descriptor pool of Envoy's v3 API, compiled at build time from the protos that ship in
//! `envoy-types`.
//!
//! Decoded it costs several megabytes, and a proxy only needs it while it reads configuration
//! (the bootstrap, an xDS push, an admin `/config_dump`). It is therefore kept only while in
//! use: [`release_if_idle`] drops it after a quiet spell, and the next [`pool`] call decodes it
//! again (a few milliseconds).

use prost_reflect::DescriptorPool;
use std::sync::Mutex;
use std::time::{Duration, Instant};

static DESCRIPTORS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/envoy_descriptors.bin"));

static CACHE: Mutex<Option<(DescriptorPool, Instant)>> = Mutex::new(None);

/// The pool (a cheap handle), decoded on first use after a release.
pub fn pool() -> DescriptorPool {
    let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((pool, used)) = cache.as_mut() {
        *used = Instant::now();
        return pool.clone();
    }
    let pool =
        DescriptorPool::decode(DESCRIPTORS).expect("descriptor set compiled by build.rs is valid");
    *cache = Some((pool.clone(), Instant::now()));
    pool
}

/// Drops the cached pool when it has not been asked for in `idle`. Handles still held elsewhere
/// (a message being decoded) keep it alive until they go. Returns whether it was dropped.
pub fn release_if_idle(idle: Duration) -> bool {
    let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    match cache.as_ref() {
        Some((_, used)) if used.elapsed() >= idle => {
            *cache = None;
            true
        }
        _ => false,
    }
}
