//! An in-memory ADS control plane for the xDS tests: state of the world
//! (`StreamAggregatedResources`) and delta (`DeltaAggregatedResources`) on
//! 127.0.0.1, with a snapshot per type URL, a log of every request, and
//! stop/restart on the same port.
//!
//! ```ignore
//! let xds = XdsServer::start().await;
//! xds.set(CLUSTER, vec![resources::eds_cluster("backend")]); // version "1"
//! xds.wait_ack(CLUSTER, "1", Duration::from_secs(10)).await?;
//! ```
//!
//! Versions: `set` numbers each type's snapshots "1", "2", ...;
//! `set_version` picks the string; in delta, a resource's version is the
//! snapshot version in which its bytes last changed. Nonces are fresh per
//! response. When a request is answered is described in `state.rs`.
//!
//! On top of it: [`XdsEnv`] (one control plane per proxy, Envoy and Ferry,
//! compared step by step), [`resources`] (resource builders) and
//! [`scenario`] (steps shared by `tests/xds*.rs`).

mod admin;
mod env;
mod log;
pub mod resources;
pub mod scenario;
mod service;
mod side;
mod state;
mod uds_proxy;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use envoy_types::pb::google::protobuf::Any;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use admin::{observe_state, STATS};
pub use env::{Step, XdsEnv, XdsSide, QUIET, WAIT};
pub use log::{
    dump, is_wildcard_type, node_summary, short, StreamKind, XdsRequest, XdsResponse, CLUSTER,
    ENDPOINT, LISTENER, ROUTE, SECRET,
};
use service::{Ads, Shared};
pub use uds_proxy::UdsProxy;

/// A running (or stopped) test control plane. Dropping it stops it.
pub struct XdsServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    task: Option<JoinHandle<()>>,
    /// Next automatic version per type URL.
    versions: std::sync::Mutex<BTreeMap<String, u64>>,
}

async fn bind_fresh() -> TcpListener {
    // A port outside the ephemeral range (see `ports`), so that no client
    // connection can take it while the server is stopped.
    for _ in 0..20 {
        let addr = crate::ports::free_port_addr();
        if let Ok(l) = TcpListener::bind(addr).await {
            return l;
        }
    }
    TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the xDS server on 127.0.0.1")
}

impl XdsServer {
    /// Starts an empty control plane on a Unix domain socket at `path` (no restart).
    pub async fn start_unix(path: &std::path::Path) -> XdsServer {
        let listener = tokio::net::UnixListener::bind(path).expect("bind the xDS Unix socket");
        let shared = Arc::new(Shared::default());
        let task = tokio::spawn(service::serve_unix(listener, Ads(shared.clone())));
        XdsServer {
            shared,
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            task: Some(task),
            versions: Default::default(),
        }
    }

    /// Starts an empty control plane on a free 127.0.0.1 port.
    pub async fn start() -> XdsServer {
        let listener = bind_fresh().await;
        let addr = listener.local_addr().expect("local_addr");
        let shared = Arc::new(Shared::default());
        let task = tokio::spawn(service::serve(listener, Ads(shared.clone())));
        XdsServer {
            shared,
            addr,
            task: Some(task),
            versions: Default::default(),
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn is_running(&self) -> bool {
        self.task.is_some()
    }

    /// Closes the listener and every connection. Snapshots and the log are
    /// kept; [`XdsServer::restart`] serves them again on the same port.
    pub fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        let streams = std::mem::take(&mut self.shared.lock().streams);
        for s in streams {
            if let Some(reader) = &s.reader {
                reader.abort();
            }
        }
        self.shared.changed.notify_waiters();
    }

    /// Listens again on the same port (retrying for up to 5 s while the
    /// port is still held).
    pub async fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + Duration::from_secs(5);
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) if Instant::now() > deadline => {
                    panic!("cannot rebind the xDS server on {}: {e}", self.addr)
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        let ads = Ads(self.shared.clone());
        self.task = Some(tokio::spawn(service::serve(listener, ads)));
    }

    /// Replaces `type_url`'s resources under the next automatic version
    /// ("1", "2", ...) and pushes them. Returns the version.
    pub fn set(&self, type_url: &str, resources: Vec<(String, Any)>) -> String {
        let version = {
            let mut versions = self.versions.lock().unwrap_or_else(|e| e.into_inner());
            let n = versions.entry(type_url.to_string()).or_insert(0);
            *n += 1;
            n.to_string()
        };
        self.set_version(type_url, &version, resources);
        version
    }

    /// Replaces `type_url`'s resources under `version` and pushes them.
    pub fn set_version(&self, type_url: &str, version: &str, resources: Vec<(String, Any)>) {
        self.shared.lock().set(type_url, version, resources);
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<XdsRequest> {
        self.shared.lock().requests.clone()
    }

    /// Every response sent so far, in order.
    pub fn responses(&self) -> Vec<XdsResponse> {
        self.shared.lock().responses.clone()
    }

    /// Number of currently open ADS streams.
    pub fn streams(&self) -> usize {
        self.shared.lock().streams.len()
    }

    /// The whole log, readable (for failure messages).
    pub fn dump(&self) -> String {
        let inner = self.shared.lock();
        log::dump(&inner.requests, &inner.responses)
    }

    /// Waits until `pred` holds on the request log, or fails after
    /// `timeout` with `what` and the log.
    pub async fn wait_for<F>(&self, what: &str, timeout: Duration, pred: F) -> Result<(), String>
    where
        F: Fn(&[XdsRequest]) -> bool,
    {
        let deadline = Instant::now() + timeout;
        loop {
            let notified = self.shared.changed.notified();
            if pred(&self.shared.lock().requests) {
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(format!(
                    "timed out after {timeout:?} waiting for {what}; xDS log:\n{}",
                    self.dump()
                ));
            }
            let step = (deadline - now).min(Duration::from_millis(100));
            let _ = tokio::time::timeout(step, notified).await;
        }
    }

    /// Waits for the ACK of `type_url` at `version`.
    pub async fn wait_ack(
        &self,
        type_url: &str,
        version: &str,
        timeout: Duration,
    ) -> Result<(), String> {
        let what = format!("the ACK of {} version {version:?}", short(type_url));
        self.wait_for(&what, timeout, |log| {
            log.iter().any(|r| r.answers(type_url, version, false))
        })
        .await
    }

    /// Waits for the NACK of `type_url` at `version`.
    pub async fn wait_nack(
        &self,
        type_url: &str,
        version: &str,
        timeout: Duration,
    ) -> Result<(), String> {
        let what = format!("the NACK of {} version {version:?}", short(type_url));
        self.wait_for(&what, timeout, |log| {
            log.iter().any(|r| r.answers(type_url, version, true))
        })
        .await
    }

    /// Waits until no request has arrived for `quiet` (at most `timeout`).
    pub async fn settle(&self, quiet: Duration, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut seen = self.shared.lock().requests.len();
        let mut since = Instant::now();
        while Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let now = self.shared.lock().requests.len();
            if now != seen {
                seen = now;
                since = Instant::now();
            } else if since.elapsed() >= quiet {
                return;
            }
        }
    }
}

impl Drop for XdsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A static HTTP/2 cluster `name` (YAML, a `clusters` list entry) whose one endpoint is the
/// Unix socket at `socket`: how Istio's bootstrap reaches its agent (`xds-grpc`, `sds-grpc`).
pub fn pipe_cluster(name: &str, socket: &std::path::Path) -> String {
    format!(
        r#"
  - name: {name}
    type: STATIC
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {{ http2_protocol_options: {{}} }}
    load_assignment:
      cluster_name: {name}
      endpoints: [{{ lb_endpoints: [{{ endpoint: {{ address: {{ pipe: {{ path: "{}" }} }} }} }}] }}]"#,
        socket.display()
    )
}

/// A bootstrap taking listeners and clusters over ADS from a control plane on a Unix socket
/// (the `xds-grpc` pipe cluster of Istio's sidecar bootstrap), admin on 127.0.0.1:`admin`.
pub fn ads_uds_bootstrap(
    socket: &std::path::Path,
    node_id: &str,
    cluster: &str,
    admin: u16,
) -> String {
    format!(
        r#"
node: {{ id: "{node_id}", cluster: "{cluster}" }}
admin: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {admin} }} }} }}
dynamic_resources:
  ads_config:
    api_type: GRPC
    transport_api_version: V3
    grpc_services: [{{ envoy_grpc: {{ cluster_name: xds-grpc }} }}]
  lds_config: {{ ads: {{}}, resource_api_version: V3 }}
  cds_config: {{ ads: {{}}, resource_api_version: V3 }}
static_resources:
  clusters:{}
"#,
        pipe_cluster("xds-grpc", socket)
    )
}
