//! The secrets TLS contexts name: one slot per secret name, filled from the bootstrap's static
//! secrets, from ADS, or from a separate SDS server. A slot carries a version that moves on
//! every change, so that a TLS context notices a rotation at its next handshake and rebuilds
//! (established connections keep the certificate they started with).

use crate::config::tls::Secret;
use arc_swap::ArcSwapOption;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};

#[derive(Debug, Default)]
pub struct Slot {
    value: ArcSwapOption<Secret>,
    version: AtomicU64,
    /// The control plane's version of the current value (for `/config_dump`).
    pub version_info: Mutex<String>,
    /// When the current value arrived (seconds since the epoch).
    pub updated: AtomicU64,
}

impl Slot {
    pub fn get(&self) -> Option<Arc<Secret>> {
        self.value.load_full()
    }

    pub fn version(&self) -> u64 {
        self.version.load(Relaxed)
    }
}

#[derive(Default)]
pub struct Store {
    slots: Mutex<BTreeMap<String, Arc<Slot>>>,
    /// Moves whenever any slot changes (readiness and warming watch it).
    pub changes: tokio::sync::watch::Sender<u64>,
}

pub fn store() -> &'static Store {
    static STORE: OnceLock<Store> = OnceLock::new();
    STORE.get_or_init(Store::default)
}

impl Store {
    /// The slot of a secret name (created empty on first use).
    pub fn slot(&self, name: &str) -> Arc<Slot> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.entry(name.to_string()).or_default().clone()
    }

    /// Sets (or with `None`, removes) a secret's value.
    pub fn set(&self, name: &str, value: Option<Secret>, version_info: &str) {
        let slot = self.slot(name);
        slot.value.store(value.map(Arc::new));
        *slot.version_info.lock().unwrap_or_else(|p| p.into_inner()) = version_info.to_string();
        slot.updated.store(crate::util::epoch_secs(), Relaxed);
        slot.version.fetch_add(1, Relaxed);
        self.changes.send_modify(|v| *v += 1);
    }

    /// Every named slot, with or without a value.
    pub fn all(&self) -> Vec<(String, Arc<Slot>)> {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.iter().map(|(n, s)| (n.clone(), s.clone())).collect()
    }
}
