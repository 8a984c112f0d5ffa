//! The xDS scale scenario: a minimal ADS server (state of the world, in-process) pushes N EDS
//! clusters and then the N ClusterLoadAssignments the proxy asks for. Measured: the time from
//! the first CDS response sent until the proxy has ACKed both (its requests carry version "1"),
//! and the proxy's peak RSS. A proxy that does not get there in time is reported as not
//! supporting it, and is not tried again at larger N or in later runs.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use envoy_types::pb::envoy::config::cluster::v3::cluster::{
    ClusterDiscoveryType, DiscoveryType, EdsClusterConfig,
};
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::{
    address, config_source::ConfigSourceSpecifier, socket_address::PortSpecifier, Address,
    AggregatedConfigSource, ApiVersion, ConfigSource, SocketAddress,
};
use envoy_types::pb::envoy::config::endpoint::v3::{
    lb_endpoint::HostIdentifier, ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints,
};
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::google::protobuf::{Any, Duration as PbDuration};
use prost::Message;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status, Streaming};

use crate::bootstrap::xds_bootstrap;
use crate::proxy::{free_port, Proxy};
use crate::results::{Recorder, Sample};
use crate::scenarios::Ctx;

const CDS: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
const EDS: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
const VERSION: &str = "1";

/// The resources served: N clusters, and a ClusterLoadAssignment per cluster name.
struct Snapshot {
    clusters: Vec<Any>,
    clas: HashMap<String, Any>,
}

impl Snapshot {
    fn new(n: usize, endpoint: SocketAddr) -> Snapshot {
        let mut clusters = Vec::with_capacity(n);
        let mut clas = HashMap::with_capacity(n);
        for i in 0..n {
            let name = format!("svc-{i}");
            let eds = ConfigSource {
                config_source_specifier: Some(ConfigSourceSpecifier::Ads(
                    AggregatedConfigSource {},
                )),
                resource_api_version: ApiVersion::V3 as i32,
                ..Default::default()
            };
            let c = Cluster {
                name: name.clone(),
                cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32)),
                eds_cluster_config: Some(EdsClusterConfig {
                    eds_config: Some(eds),
                    service_name: String::new(),
                }),
                connect_timeout: Some(PbDuration {
                    seconds: 1,
                    nanos: 0,
                }),
                ..Default::default()
            };
            clusters.push(any(CDS, &c));
            let socket = SocketAddress {
                address: endpoint.ip().to_string(),
                port_specifier: Some(PortSpecifier::PortValue(endpoint.port() as u32)),
                ..Default::default()
            };
            let cla = ClusterLoadAssignment {
                cluster_name: name.clone(),
                endpoints: vec![LocalityLbEndpoints {
                    lb_endpoints: vec![LbEndpoint {
                        host_identifier: Some(HostIdentifier::Endpoint(Endpoint {
                            address: Some(Address {
                                address: Some(address::Address::SocketAddress(socket)),
                            }),
                            ..Default::default()
                        })),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            };
            clas.insert(name, any(EDS, &cla));
        }
        Snapshot { clusters, clas }
    }
}

fn any(type_url: &str, m: &impl Message) -> Any {
    Any {
        type_url: type_url.to_string(),
        value: m.encode_to_vec(),
    }
}

/// What the proxy has done so far (over all its streams).
#[derive(Default, Debug)]
struct Progress {
    cds_sent: Option<Instant>,
    cds_acked: Option<Instant>,
    eds_acked: Option<Instant>,
    nack: Option<String>,
}

#[derive(Clone)]
struct Ads {
    snap: Arc<Snapshot>,
    progress: Arc<Mutex<Progress>>,
}

/// Per-stream state: the last nonce sent per type and the EDS names last answered.
#[derive(Default)]
struct StreamState {
    nonce: u64,
    cds_nonce: Option<String>,
    eds_nonce: Option<String>,
    eds_names: Option<BTreeSet<String>>,
}

impl Ads {
    /// Handles one request; returns the response to send, if any.
    fn handle(&self, st: &mut StreamState, r: DiscoveryRequest) -> Option<DiscoveryResponse> {
        let now = Instant::now();
        let mut p = self.progress.lock().expect("progress lock");
        if let Some(err) = &r.error_detail {
            p.nack
                .get_or_insert_with(|| format!("{} NACK: {}", short(&r.type_url), err.message));
            return None;
        }
        let acks = |nonce: &Option<String>| {
            r.version_info == VERSION && nonce.as_deref() == Some(r.response_nonce.as_str())
        };
        match r.type_url.as_str() {
            CDS if st.cds_nonce.is_none() => {
                st.nonce += 1;
                st.cds_nonce = Some(st.nonce.to_string());
                p.cds_sent.get_or_insert(now);
                Some(self.response(CDS, self.snap.clusters.clone(), st.nonce))
            }
            CDS => {
                if acks(&st.cds_nonce) {
                    p.cds_acked.get_or_insert(now);
                }
                None
            }
            EDS => {
                let names: BTreeSet<String> = r.resource_names.iter().cloned().collect();
                if st.eds_names.as_ref() == Some(&names) {
                    if acks(&st.eds_nonce) && names.len() == self.snap.clas.len() {
                        p.eds_acked.get_or_insert(now);
                    }
                    return None;
                }
                let resources = names
                    .iter()
                    .filter_map(|n| self.snap.clas.get(n).cloned())
                    .collect();
                st.nonce += 1;
                st.eds_nonce = Some(st.nonce.to_string());
                st.eds_names = Some(names);
                Some(self.response(EDS, resources, st.nonce))
            }
            _ => None,
        }
    }

    fn response(&self, type_url: &str, resources: Vec<Any>, nonce: u64) -> DiscoveryResponse {
        DiscoveryResponse {
            version_info: VERSION.to_string(),
            resources,
            type_url: type_url.to_string(),
            nonce: nonce.to_string(),
            ..Default::default()
        }
    }
}

fn short(type_url: &str) -> &str {
    type_url.rsplit('.').next().unwrap_or(type_url)
}

#[tonic::async_trait]
impl AggregatedDiscoveryService for Ads {
    type StreamAggregatedResourcesStream = ReceiverStream<Result<DiscoveryResponse, Status>>;
    type DeltaAggregatedResourcesStream = ReceiverStream<Result<DeltaDiscoveryResponse, Status>>;

    async fn stream_aggregated_resources(
        &self,
        req: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamAggregatedResourcesStream>, Status> {
        let mut inbound = req.into_inner();
        let (tx, rx) = mpsc::channel(4);
        let ads = self.clone();
        // Ends when the proxy closes the stream (or is killed).
        tokio::spawn(async move {
            let mut st = StreamState::default();
            while let Ok(Some(r)) = inbound.message().await {
                if let Some(resp) = ads.handle(&mut st, r) {
                    if tx.send(Ok(resp)).await.is_err() {
                        break;
                    }
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn delta_aggregated_resources(
        &self,
        _req: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        Err(Status::unimplemented(
            "this server speaks state of the world only",
        ))
    }
}

/// Remembers across runs which targets could not do it (at which N).
#[derive(Default)]
pub struct XdsState {
    unsupported: HashSet<String>,
}

/// One run: every size for every proxy target.
pub async fn run(
    ctx: &Ctx,
    sizes: &[usize],
    timeout: Duration,
    run: usize,
    state: &mut XdsState,
    samples: &mut Vec<Sample>,
    notes: &mut Vec<String>,
) {
    for &n in sizes {
        let snap = Arc::new(Snapshot::new(n, ctx.upstream.http));
        for target in &ctx.targets {
            let Some(bin) = &target.bin else { continue };
            if state.unsupported.contains(&target.name) {
                continue;
            }
            eprintln!("  run {run} xds-scale N={n} {}", target.name);
            let mut rec = Recorder {
                samples,
                run,
                scenario: format!("xds-scale-{n}"),
                target: target.name.clone(),
            };
            match measure(ctx, bin, snap.clone(), n, timeout, &mut rec).await {
                Ok(()) => {}
                Err(e) => {
                    let msg = format!("run {run}, xds-scale N={n}, {}: {e:#} (reported as not supported; not tried again)", target.name);
                    eprintln!("  ! {msg}");
                    notes.push(msg);
                    state.unsupported.insert(target.name.clone());
                }
            }
        }
    }
}

async fn measure(
    ctx: &Ctx,
    bin: &std::path::Path,
    snap: Arc<Snapshot>,
    n: usize,
    timeout: Duration,
    rec: &mut Recorder<'_>,
) -> Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let xds = listener.local_addr()?;
    let progress = Arc::new(Mutex::new(Progress::default()));
    let ads = Ads {
        snap,
        progress: progress.clone(),
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let service = AggregatedDiscoveryServiceServer::new(ads).max_decoding_message_size(256 << 20);
    let server = tokio::spawn(
        tonic::transport::Server::builder().serve_with_incoming_shutdown(
            service,
            TcpListenerStream::new(listener),
            async {
                let _ = stopped.await;
            },
        ),
    );
    let result = drive(ctx, bin, xds, &progress, n, timeout, rec).await;
    let _ = stop.send(());
    if tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .is_err()
    {
        eprintln!("  (the ADS server did not stop within 5 s; left to the runtime)");
    }
    result
}

async fn drive(
    ctx: &Ctx,
    bin: &std::path::Path,
    xds: SocketAddr,
    progress: &Mutex<Progress>,
    n: usize,
    timeout: Duration,
    rec: &mut Recorder<'_>,
) -> Result<()> {
    let admin_port = free_port()?;
    let path = ctx
        .tmp
        .join(format!("xds-scale-{n}-{}-run{}.yaml", rec.target, rec.run));
    std::fs::write(&path, xds_bootstrap(admin_port, xds))?;
    let admin = SocketAddr::from(([127, 0, 0, 1], admin_port));
    let mut proxy = Proxy::start(bin, &path, admin, ctx.cpus.map(|c| c.proxy), ctx.nice)?;
    let deadline = Instant::now() + timeout;
    loop {
        {
            let p = progress.lock().expect("progress lock");
            if let Some(nack) = &p.nack {
                bail!("{nack}");
            }
            if let (Some(sent), Some(cds), Some(eds)) = (p.cds_sent, p.cds_acked, p.eds_acked) {
                rec.put("xds_ack_s", (cds.max(eds) - sent).as_secs_f64());
                break;
            }
            if Instant::now() >= deadline {
                bail!(
                    "no ACK of CDS and EDS for {n} clusters within {timeout:?} (CDS sent: {}, CDS ACKed: {}, EDS ACKed: {})",
                    p.cds_sent.is_some(),
                    p.cds_acked.is_some(),
                    p.eds_acked.is_some()
                );
            }
        }
        if let Some(how) = proxy.exited() {
            bail!("the proxy exited: {how}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (_, hwm) = proxy.memory_kib();
    rec.put("rss_peak_mib", hwm as f64 / 1024.0);
    Ok(())
}
