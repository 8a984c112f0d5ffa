//! The set of running listeners: static ones from the bootstrap and dynamic ones from LDS.
//! An update of a listener on the same address swaps its config for new connections only; a
//! listener whose address changes is rebound; a removed one stops accepting.

use super::{bind, spawn};
use crate::config::listener::Listener;
use crate::snapshot::Server;
use arc_swap::ArcSwap;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

struct Running {
    address: SocketAddr,
    cfg: Arc<ArcSwap<Listener>>,
    stop: watch::Sender<bool>,
    /// Asks the listener's connections to drain.
    drain: watch::Sender<bool>,
    dynamic: bool,
}

impl Running {
    /// Stops accepting and drains the connections (Envoy's listener removal).
    fn retire(self) {
        let _ = self.stop.send(true);
        let _ = self.drain.send(true);
    }
}

#[derive(Default)]
pub struct Manager {
    running: Mutex<BTreeMap<String, Running>>,
}

impl Manager {
    /// Makes the running listeners of one kind (static or dynamic) match `desired`. Returns the
    /// listeners that could not be started, with the reason (a bind error).
    pub fn apply(
        &self,
        server: &Arc<Server>,
        desired: &[Arc<Listener>],
        dynamic: bool,
    ) -> Vec<(String, String)> {
        let mut errors = Vec::new();
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let wanted: std::collections::BTreeSet<&str> =
            desired.iter().map(|l| l.name.as_str()).collect();
        let gone: Vec<String> = running
            .iter()
            .filter(|(name, r)| r.dynamic == dynamic && !wanted.contains(name.as_str()))
            .map(|(name, _)| name.clone())
            .collect();
        for name in gone {
            if let Some(r) = running.remove(&name) {
                r.retire();
            }
        }
        for l in desired {
            if let Some(r) = running.get(&l.name) {
                if r.address == l.address && r.dynamic == dynamic {
                    r.cfg.store(l.clone());
                    continue;
                }
                if let Some(old) = running.remove(&l.name) {
                    old.retire();
                }
            }
            match bind(l.address) {
                Ok(sock) => {
                    let cfg = Arc::new(ArcSwap::new(l.clone()));
                    let (stop, removed) = watch::channel(false);
                    let (drain, drain_rx) = watch::channel(false);
                    spawn(server.clone(), cfg.clone(), sock, removed, drain_rx);
                    running.insert(
                        l.name.clone(),
                        Running {
                            address: l.address,
                            cfg,
                            stop,
                            drain,
                            dynamic,
                        },
                    );
                }
                Err(e) => errors.push((l.name.clone(), format!("cannot bind {}: {e}", l.address))),
            }
        }
        errors
    }

    /// `(name, address)` of every running listener.
    pub fn list(&self) -> Vec<(String, SocketAddr)> {
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        running
            .iter()
            .map(|(n, r)| (n.clone(), r.address))
            .collect()
    }
}
