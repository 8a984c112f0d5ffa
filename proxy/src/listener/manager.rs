//! The set of running listeners: static ones from the bootstrap and dynamic ones from LDS.
//! An update of a listener on the same address swaps its config for new connections only; a
//! listener whose address changes is rebound; a removed one stops accepting. The manager also
//! answers which listener a captured connection belongs to (`use_original_dst` hand-off).

use super::{bind_listener, spawn, ListenerStats, Target};
use crate::config::listener::Listener;
use crate::snapshot::Server;
use arc_swap::ArcSwap;
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

struct Running {
    address: SocketAddr,
    target: Arc<Target>,
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
    /// Listeners by address, for the hand-off of captured connections; read lock-free.
    by_addr: ArcSwap<HashMap<SocketAddr, Arc<Target>>>,
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
                let cur = r.target.cfg.load();
                if r.address == l.address
                    && cur.additional == l.additional
                    && r.dynamic == dynamic
                    && cur.bind_to_port == l.bind_to_port
                    && cur.transparent == l.transparent
                    && cur.freebind == l.freebind
                {
                    r.target.cfg.store(l.clone());
                    continue;
                }
                drop(cur);
                if let Some(old) = running.remove(&l.name) {
                    old.retire();
                }
            }
            let socks = if l.bind_to_port {
                match std::iter::once(l.address)
                    .chain(l.additional.iter().copied())
                    .map(|a| bind_listener(l, a).map_err(|e| format!("cannot bind {a}: {e}")))
                    .collect::<Result<Vec<_>, String>>()
                {
                    Ok(s) => s,
                    Err(e) => {
                        errors.push((l.name.clone(), e));
                        continue;
                    }
                }
            } else {
                Vec::new()
            };
            let (stop, removed) = watch::channel(false);
            let (drain, drain_rx) = watch::channel(false);
            let target = Arc::new(Target {
                cfg: Arc::new(ArcSwap::new(l.clone())),
                stats: ListenerStats::new(&l.address, l.chains.iter().any(|c| c.tls.is_some())),
                drain: drain_rx,
            });
            spawn(server.clone(), target.clone(), socks, removed);
            running.insert(
                l.name.clone(),
                Running {
                    address: l.address,
                    target,
                    stop,
                    drain,
                    dynamic,
                },
            );
        }
        self.by_addr.store(Arc::new(
            running
                .values()
                .flat_map(|r| {
                    let extra = r.target.cfg.load().additional.clone();
                    std::iter::once(r.address)
                        .chain(extra)
                        .map(|a| (a, r.target.clone()))
                        .collect::<Vec<_>>()
                })
                .collect(),
        ));
        errors
    }

    /// The listener a connection captured for `dst` belongs to: the one bound to exactly that
    /// address, else the wildcard-address listener of the same port and IP family.
    pub fn handoff(&self, dst: SocketAddr) -> Option<Arc<Target>> {
        let map = self.by_addr.load();
        if let Some(t) = map.get(&dst) {
            return Some(t.clone());
        }
        let any = match dst.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        map.get(&SocketAddr::new(any, dst.port())).cloned()
    }

    /// The current config of every running listener.
    pub fn configs(&self) -> Vec<Arc<Listener>> {
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        running.values().map(|r| r.target.cfg.load_full()).collect()
    }

    /// `(name, address, additional addresses)` of every running listener.
    pub fn list(&self) -> Vec<(String, SocketAddr, Vec<SocketAddr>)> {
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        running
            .iter()
            .map(|(n, r)| (n.clone(), r.address, r.target.cfg.load().additional.clone()))
            .collect()
    }
}
