//! One side of a differential xDS environment: a proxy and its own
//! control plane, with the listener ports reserved for it.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{short, XdsRequest, XdsServer};
use crate::normalise::Observation;
use crate::ports;
use crate::proxy::{self, Proxy, ProxyKind, Target};

/// One proxy with its control plane.
pub struct XdsSide {
    pub kind: ProxyKind,
    pub xds: XdsServer,
    pub proxy: Proxy,
    /// Requests before this index were compared already.
    mark: usize,
    /// Listener ports held until first pushed (see [`XdsSide::release_port`]).
    reserved: std::sync::Mutex<BTreeMap<String, tokio::net::TcpSocket>>,
}

impl XdsSide {
    /// This proxy's ports (ADMIN, XDS, listener placeholders) and the
    /// shared upstream ports.
    pub fn target(&self) -> Target {
        self.proxy.target()
    }

    pub fn port(&self, name: &str) -> u16 {
        self.proxy.port(name)
    }

    /// The port of listener placeholder `name`, no longer held by the test
    /// so that the proxy can bind it: call it when building the listener.
    pub fn release_port(&self, name: &str) -> u16 {
        let mut reserved = self.reserved.lock().unwrap_or_else(|e| e.into_inner());
        drop(reserved.remove(name));
        self.port(name)
    }

    /// The requests received since the last comparison.
    pub fn new_requests(&self) -> Vec<XdsRequest> {
        self.xds.requests().split_off(self.mark)
    }

    /// `error_detail.message` of this proxy's NACK of `type_url` at
    /// `version`.
    pub fn nack_message(&self, type_url: &str, version: &str) -> Option<String> {
        self.xds
            .requests()
            .into_iter()
            .find(|r| r.answers(type_url, version, true))
            .and_then(|r| r.error)
    }

    /// Per type (`xds.CDS`, ...): the normalised requests since the mark.
    pub(crate) fn observe_xds(&mut self) -> Observation {
        let requests = self.xds.requests();
        let mut by_type: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for r in &requests[self.mark..] {
            by_type
                .entry(format!("xds.{}", short(&r.type_url)))
                .or_default()
                .push(r.normalised(1));
        }
        self.mark = requests.len();
        by_type
            .into_iter()
            .map(|(k, v)| (k, v.join("\n")))
            .collect()
    }
}

/// Binds (without listening, without SO_REUSEADDR) a free port for a
/// listener that will be pushed over LDS: while held, no other test can
/// pick or bind it, and connections to it are refused.
fn reserve_port() -> tokio::net::TcpSocket {
    for _ in 0..20 {
        let addr = ports::free_port_addr();
        let Ok(socket) = tokio::net::TcpSocket::new_v4() else {
            continue;
        };
        if socket.bind(addr).is_ok() {
            return socket;
        }
    }
    panic!("no free port to reserve for a pushed listener");
}

pub(crate) async fn start_side(
    kind: ProxyKind,
    template: &str,
    shared: &BTreeMap<String, String>,
    listeners: &[&str],
) -> XdsSide {
    let bin = match kind {
        ProxyKind::Envoy => proxy::find_envoy().expect("Envoy binary"),
        ProxyKind::Ferry => proxy::ferry_bin(),
    };
    let xds = XdsServer::start().await;
    let mut values = shared.clone();
    values.insert("XDS".to_string(), xds.port().to_string());
    let mut attempt = 1;
    loop {
        let (yaml, mut ports) = proxy::render_instance(template, &values);
        ports.insert("XDS".to_string(), xds.port());
        let mut reserved = BTreeMap::new();
        for name in listeners {
            let socket = reserve_port();
            let port = socket.local_addr().expect("local_addr").port();
            ports.insert(name.to_string(), port);
            reserved.insert(name.to_string(), socket);
        }
        let mut proxy = Proxy::spawn(kind, &bin, &yaml, ports, &[]);
        // Until the first request (or 3 s): a start that failed because the
        // admin port was taken meanwhile is retried with fresh ports.
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        while xds.requests().is_empty() && std::time::Instant::now() < deadline {
            if proxy.exited().is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if proxy.exited().is_some() && proxy.failed_to_bind() && attempt < 3 {
            eprintln!("retrying {kind} start (attempt {attempt} hit a taken port)");
            attempt += 1;
            continue;
        }
        return XdsSide {
            kind,
            xds,
            proxy,
            mark: 0,
            reserved: std::sync::Mutex::new(reserved),
        };
    }
}
