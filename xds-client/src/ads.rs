//! The ADS client (state of the world): one `StreamAggregatedResources` stream to the control
//! plane carrying every resource type, with Envoy's request/ACK/NACK rules — `version_info` of
//! the last accepted response and the `response_nonce` of the latest one, `error_detail` on a
//! NACK, wildcard subscriptions for listeners and clusters, named ones for routes and
//! endpoints — and reconnection with jittered exponential backoff, re-sending the last accepted
//! versions.

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use envoy_types::pb::google::protobuf::Any;
use envoy_types::pb::google::rpc::Status;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;

pub const LISTENER: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
pub const CLUSTER: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
pub const ROUTE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
pub const ENDPOINT: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
pub const SECRET: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";

/// Where the control plane listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Tcp(SocketAddr),
    /// A Unix domain socket (Istio's agent serves xDS on `./etc/istio/proxy/XDS`).
    Unix(PathBuf),
}

/// What the proxy does with the resources of a response.
pub trait Handler: Send + Sync + 'static {
    /// Applies one response. State of the world: the complete set for wildcard types (listeners,
    /// clusters), the subscribed ones otherwise. `Err(message)` NACKs the response; the handler
    /// keeps whatever it could apply and says in the message which resources it rejected.
    fn apply(&self, type_url: &str, version: &str, resources: Vec<Any>) -> Result<(), String>;

    /// The stream went up or down (`control_plane.connected_state`).
    fn connected(&self, _up: bool) {}
}

#[derive(Debug, Clone)]
pub struct AdsConfig {
    pub target: Target,
    pub node: Node,
    /// Send `node` only in the first request of a stream (`set_node_on_first_message_only`).
    pub node_on_first_only: bool,
    /// Types subscribed as wildcards from the start, in the order Envoy asks for them.
    pub wildcard: Vec<&'static str>,
    /// Incremental xDS (`DELTA_GRPC`) instead of state of the world.
    pub delta: bool,
    /// A separate SDS server: the `SecretDiscoveryService/StreamSecrets` RPC (state of the
    /// world) instead of ADS.
    pub sds: bool,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    pub connect_timeout: Duration,
}

pub(crate) enum Cmd {
    Subscribe(String, BTreeSet<String>),
    /// Starts a wildcard subscription (listeners once clusters are in, as Envoy orders them).
    Wildcard(String),
}

/// Changes the named subscriptions of a running client.
#[derive(Clone)]
pub struct AdsHandle {
    tx: mpsc::UnboundedSender<Cmd>,
}

impl AdsHandle {
    /// Subscribes to exactly `names` of `type_url` (routes, endpoints); sends a request when the
    /// set changes.
    pub fn subscribe(&self, type_url: &str, names: BTreeSet<String>) {
        let _ = self.tx.send(Cmd::Subscribe(type_url.to_string(), names));
    }

    /// Starts a wildcard subscription to `type_url`.
    pub fn subscribe_wildcard(&self, type_url: &str) {
        let _ = self.tx.send(Cmd::Wildcard(type_url.to_string()));
    }
}

#[derive(Debug, Default, Clone)]
struct TypeState {
    /// `None`: wildcard.
    names: Option<BTreeSet<String>>,
    /// version_info of the last accepted response.
    version: String,
    /// Nonce of the latest response on the current stream.
    nonce: String,
}

/// Starts the client on the current runtime.
pub fn spawn(cfg: AdsConfig, handler: Arc<dyn Handler>) -> AdsHandle {
    let (handle, stream) = prepare(cfg, handler);
    stream.start();
    handle
}

/// A stream made but not started yet.
pub struct Unstarted(Session, Arc<dyn Handler>, mpsc::UnboundedReceiver<Cmd>);

impl Unstarted {
    pub fn start(self) {
        tokio::spawn(run(self.0, self.1, self.2));
    }
}

/// The handle of a stream and the stream, to be started once the handle is stored where the
/// handler finds it (its first response may arrive at once).
pub fn prepare(cfg: AdsConfig, handler: Arc<dyn Handler>) -> (AdsHandle, Unstarted) {
    let (tx, rx) = mpsc::unbounded_channel();
    let session = if cfg.delta && !cfg.sds {
        Session::Delta(crate::delta::Client::new(cfg))
    } else {
        Session::Sotw(Client::new(cfg))
    };
    (AdsHandle { tx }, Unstarted(session, handler, rx))
}

pub(crate) struct Client {
    cfg: AdsConfig,
    states: BTreeMap<String, TypeState>,
    /// Types in the order their first request is sent.
    order: Vec<String>,
}

impl Client {
    fn new(cfg: AdsConfig) -> Client {
        let order: Vec<String> = cfg.wildcard.iter().map(|t| t.to_string()).collect();
        let states = order
            .iter()
            .map(|t| (t.clone(), TypeState::default()))
            .collect();
        Client { cfg, states, order }
    }

    fn request(&self, type_url: &str, first: bool, error: Option<String>) -> DiscoveryRequest {
        let st = self.states.get(type_url).cloned().unwrap_or_default();
        DiscoveryRequest {
            version_info: st.version,
            node: (first || !self.cfg.node_on_first_only).then(|| self.cfg.node.clone()),
            resource_names: st
                .names
                .map(|n| n.into_iter().collect())
                .unwrap_or_default(),
            type_url: type_url.to_string(),
            response_nonce: st.nonce,
            error_detail: error.map(|message| Status {
                code: 13, // INTERNAL, as Envoy reports a rejected update
                message,
                details: vec![],
            }),
            ..Default::default()
        }
    }

    fn wildcard(&mut self, type_url: String) -> bool {
        if self.order.contains(&type_url) {
            return false;
        }
        self.order.push(type_url.clone());
        self.states.insert(type_url, TypeState::default());
        true
    }

    fn subscribe(&mut self, type_url: String, names: BTreeSet<String>) -> bool {
        if !self.order.contains(&type_url) {
            self.order.push(type_url.clone());
        }
        let st = self.states.entry(type_url).or_default();
        if st.names.as_ref() == Some(&names) {
            return false;
        }
        st.names = Some(names);
        true
    }
}

/// A stream kind: state of the world or incremental. One reconnect loop serves both.
pub(crate) enum Session {
    Sotw(Client),
    Delta(crate::delta::Client),
}

impl Session {
    fn cfg(&self) -> &AdsConfig {
        match self {
            Session::Sotw(c) => &c.cfg,
            Session::Delta(c) => &c.cfg,
        }
    }

    /// Records a subscription change while no stream is up.
    fn on_cmd(&mut self, cmd: Cmd) {
        match (self, cmd) {
            (Session::Sotw(c), Cmd::Subscribe(t, n)) => {
                c.subscribe(t, n);
            }
            (Session::Sotw(c), Cmd::Wildcard(t)) => {
                c.wildcard(t);
            }
            (Session::Delta(c), Cmd::Subscribe(t, n)) => {
                let _ = c.subscribe(t, n);
            }
            (Session::Delta(c), Cmd::Wildcard(t)) => {
                let _ = c.wildcard(t);
            }
        }
    }

    async fn stream_once(
        &mut self,
        handler: &dyn Handler,
        cmds: &mut mpsc::UnboundedReceiver<Cmd>,
    ) -> Result<(), StreamEnd> {
        match self {
            Session::Sotw(c) => stream_once(c, handler, cmds).await,
            Session::Delta(c) => crate::delta::stream_once(c, handler, cmds).await,
        }
    }
}

/// Streams until the handle is dropped, reconnecting with jittered exponential backoff (reset
/// once a stream had been established) and keeping subscription changes made meanwhile.
async fn run(
    mut session: Session,
    handler: Arc<dyn Handler>,
    mut cmds: mpsc::UnboundedReceiver<Cmd>,
) {
    let (base, max) = (session.cfg().backoff_base, session.cfg().backoff_max);
    let mut backoff = base;
    loop {
        match session.stream_once(handler.as_ref(), &mut cmds).await {
            Ok(()) => return,
            Err(StreamEnd {
                established,
                reason,
            }) => {
                tracing::warn!("xDS stream to {:?}: {reason}", session.cfg().target);
                if established {
                    backoff = base;
                }
            }
        }
        handler.connected(false);
        if !backoff_wait(&mut backoff, max, &mut cmds, |cmd| session.on_cmd(cmd)).await {
            return;
        }
    }
}

/// Waits a jittered exponential backoff, keeping subscription changes for the next stream.
/// Returns false when the handle is gone.
pub(crate) async fn backoff_wait(
    backoff: &mut Duration,
    max: Duration,
    cmds: &mut mpsc::UnboundedReceiver<Cmd>,
    mut on_cmd: impl FnMut(Cmd),
) -> bool {
    let wait = backoff.mul_f64(0.5 + fastrand::f64());
    let sleep = tokio::time::sleep(wait);
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            () = &mut sleep => break,
            cmd = cmds.recv() => match cmd {
                Some(cmd) => on_cmd(cmd),
                None => return false,
            },
        }
    }
    *backoff = (*backoff * 2).min(max);
    true
}

/// Why a stream ended, and whether it had been established (which resets the backoff).
pub(crate) struct StreamEnd {
    pub established: bool,
    pub reason: String,
}

pub(crate) fn before(reason: String) -> StreamEnd {
    StreamEnd {
        established: false,
        reason,
    }
}

pub(crate) fn after(reason: String) -> StreamEnd {
    StreamEnd {
        established: true,
        reason,
    }
}

/// The ADS gRPC client on a fresh channel to the control plane.
pub(crate) async fn connect(
    cfg: &AdsConfig,
) -> Result<AggregatedDiscoveryServiceClient<tonic::transport::Channel>, StreamEnd> {
    let channel = crate::channel::connect(&cfg.target, cfg.connect_timeout)
        .await
        .map_err(|e| before(format!("connect: {e}")))?;
    Ok(AggregatedDiscoveryServiceClient::new(channel).max_decoding_message_size(usize::MAX))
}

type SdsClient = envoy_types::pb::envoy::service::secret::v3::secret_discovery_service_client::SecretDiscoveryServiceClient<tonic::transport::Channel>;

/// The state-of-the-world client of either service.
enum Grpc {
    Ads(AggregatedDiscoveryServiceClient<tonic::transport::Channel>),
    Sds(SdsClient),
}

async fn connect_sotw(cfg: &AdsConfig) -> Result<Grpc, StreamEnd> {
    if !cfg.sds {
        return Ok(Grpc::Ads(connect(cfg).await?));
    }
    let channel = crate::channel::connect(&cfg.target, cfg.connect_timeout)
        .await
        .map_err(|e| before(format!("connect: {e}")))?;
    Ok(Grpc::Sds(
        SdsClient::new(channel).max_decoding_message_size(usize::MAX),
    ))
}

/// One stream: connect, (re)send every subscription with the last accepted versions, then
/// answer responses and subscription changes until the stream ends.
async fn stream_once(
    client: &mut Client,
    handler: &dyn Handler,
    cmds: &mut mpsc::UnboundedReceiver<Cmd>,
) -> Result<(), StreamEnd> {
    let mut grpc = connect_sotw(&client.cfg).await?;
    let (tx, rx) = mpsc::unbounded_channel::<DiscoveryRequest>();
    let mut first = true;
    for t in client.order.clone() {
        if let Some(st) = client.states.get_mut(&t) {
            st.nonce.clear();
        }
        let _ = tx.send(client.request(&t, first, None));
        first = false;
    }
    let requests = UnboundedReceiverStream::new(rx);
    let opened = match &mut grpc {
        Grpc::Ads(c) => c.stream_aggregated_resources(requests).await,
        Grpc::Sds(c) => c.stream_secrets(requests).await,
    };
    let mut inbound = opened
        .map_err(|s| before(format!("open stream: {s}")))?
        .into_inner();
    handler.connected(true);
    loop {
        tokio::select! {
            msg = inbound.message() => match msg {
                Ok(Some(resp)) => on_response(client, handler, &tx, resp),
                Ok(None) => return Err(after("closed by the control plane".into())),
                Err(s) => return Err(after(format!("stream error: {s}"))),
            },
            cmd = cmds.recv() => match cmd {
                Some(Cmd::Subscribe(t, names)) => {
                    if client.subscribe(t.clone(), names) {
                        let _ = tx.send(client.request(&t, false, None));
                    }
                }
                Some(Cmd::Wildcard(t)) => {
                    if client.wildcard(t.clone()) {
                        let _ = tx.send(client.request(&t, false, None));
                    }
                }
                None => return Ok(()),
            },
        }
    }
}

fn on_response(
    client: &mut Client,
    handler: &dyn Handler,
    tx: &mpsc::UnboundedSender<DiscoveryRequest>,
    resp: DiscoveryResponse,
) {
    let t = resp.type_url.clone();
    if !client.order.contains(&t) {
        client.order.push(t.clone());
    }
    let result = handler.apply(&t, &resp.version_info, resp.resources);
    let st = client.states.entry(t.clone()).or_default();
    st.nonce = resp.nonce;
    let error = match result {
        Ok(()) => {
            st.version = resp.version_info;
            None
        }
        Err(message) => {
            tracing::warn!(type_url = %t, version = %resp.version_info, "xDS update rejected: {message}");
            Some(message)
        }
    };
    let _ = tx.send(client.request(&t, false, error));
}
