//! `istio.stats` on a TCP connection: `istio_tcp_connections_opened_total` once the peer is
//! known (from the metadata exchange) or at close, the sent and received byte counters every
//! `tcp_reporting_duration` and at close, and `istio_tcp_connections_closed_total` at close.

use super::mx::PeerSlot;
use super::stats::{IstioStats, Tcp};
use crate::stream_info::StreamInfo;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

/// One connection's reports.
pub struct TcpReport {
    cfg: Arc<IstioStats>,
    info: StreamInfo,
    /// The exchange that names the peer, and whether the peer is downstream.
    peer: Option<(PeerSlot, bool)>,
    /// Bytes moved (downstream→upstream, upstream→downstream) and those reported.
    moved: Arc<[AtomicU64; 2]>,
    reported: [u64; 2],
    labels: Option<Vec<String>>,
}

impl TcpReport {
    pub fn new(
        cfg: Arc<IstioStats>,
        info: StreamInfo,
        peer: Option<(PeerSlot, bool)>,
        moved: Arc<[AtomicU64; 2]>,
    ) -> TcpReport {
        TcpReport {
            cfg,
            info,
            peer,
            moved,
            reported: [0, 0],
            labels: None,
        }
    }

    /// The labels, once the peer is known (or `force`: at close).
    fn labels(&mut self, force: bool) -> Option<&[String]> {
        if self.labels.is_none() {
            let found = match &self.peer {
                None => Some(None),
                Some((slot, _)) => slot.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            };
            let peer = match (found, force) {
                (Some(p), _) => p,
                (None, true) => None,
                (None, false) => return None,
            };
            if let Some((_, downstream)) = &self.peer {
                if *downstream {
                    self.info.downstream_peer = peer;
                } else {
                    self.info.upstream_peer = peer;
                }
            }
            let labels = self.cfg.tcp_labels(&self.info);
            self.cfg.tcp_add(Tcp::Opened, &labels, 1);
            self.labels = Some(labels);
        }
        self.labels.as_deref()
    }

    /// Reports the bytes moved since the last report, once the peer is known.
    pub fn tick(&mut self, force: bool) {
        let moved = [self.moved[0].load(Relaxed), self.moved[1].load(Relaxed)];
        let reported = self.reported;
        let cfg = self.cfg.clone();
        let Some(labels) = self.labels(force) else {
            return;
        };
        cfg.tcp_add(Tcp::Received, labels, moved[0] - reported[0]);
        cfg.tcp_add(Tcp::Sent, labels, moved[1] - reported[1]);
        self.reported = moved;
    }

    /// The connection closed: the last bytes, and the closed counter.
    pub fn close(&mut self, flags: &[crate::stream_info::Flag]) {
        if self.labels.is_none() {
            self.info.flags = flags.to_vec();
        }
        self.tick(true);
        if let Some(labels) = &self.labels {
            self.cfg.tcp_add(Tcp::Closed, labels, 1);
        }
    }
}

/// Runs `report.tick` every interval until the connection's copy is done.
pub fn spawn_ticker(
    report: Arc<Mutex<TcpReport>>,
    every: std::time::Duration,
) -> tokio::task::AbortHandle {
    tokio::spawn(async move {
        if every.is_zero() {
            return;
        }
        loop {
            tokio::time::sleep(every).await;
            report.lock().unwrap_or_else(|p| p.into_inner()).tick(false);
        }
    })
    .abort_handle()
}
