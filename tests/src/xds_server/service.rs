//! The gRPC side: the `AggregatedDiscoveryService` implementation and the
//! HTTP/2 accept loop (hand-rolled so that stopping the server really
//! closes every connection, which is what a control-plane restart means to
//! the proxy).

use std::sync::{Arc, Mutex};

use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::envoy::service::secret::v3::secret_discovery_service_server::{
    SecretDiscoveryService, SecretDiscoveryServiceServer,
};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinSet;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::codegen::Service;
use tonic::{Request, Response, Status, Streaming};

use super::state::{Inner, Sender};

/// State shared by the test API, the streams and the accept loop.
#[derive(Default)]
pub(crate) struct Shared {
    pub inner: Mutex<Inner>,
    /// Woken on every request received.
    pub changed: Notify,
}

impl Shared {
    pub fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Clone)]
pub(crate) struct Ads(pub Arc<Shared>);

/// Reads one stream's requests until it ends, handing each to `handle`.
async fn read_stream<T>(
    shared: Arc<Shared>,
    id: u64,
    mut requests: Streaming<T>,
    handle: fn(&mut Inner, u64, T),
) {
    while let Ok(Some(req)) = requests.message().await {
        {
            let mut inner = shared.lock();
            if !inner.has_stream(id) {
                return;
            }
            handle(&mut inner, id, req);
        }
        shared.changed.notify_waiters();
    }
    shared.lock().remove_stream(id);
    shared.changed.notify_waiters();
}

type SotwStream = UnboundedReceiverStream<Result<DiscoveryResponse, Status>>;
type DeltaStream = UnboundedReceiverStream<Result<DeltaDiscoveryResponse, Status>>;

impl Ads {
    /// A state-of-the-world stream (ADS or SDS).
    fn sotw(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<SotwStream>, Status> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.open(Sender::Sotw(tx), request.into_inner(), Inner::on_sotw);
        Ok(Response::new(UnboundedReceiverStream::new(rx)))
    }

    /// An incremental stream (ADS or SDS).
    fn delta(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<DeltaStream>, Status> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.open(Sender::Delta(tx), request.into_inner(), Inner::on_delta);
        Ok(Response::new(UnboundedReceiverStream::new(rx)))
    }

    fn open<T: Send + 'static>(
        &self,
        sender: Sender,
        requests: Streaming<T>,
        handle: fn(&mut Inner, u64, T),
    ) {
        let shared = self.0.clone();
        let mut inner = self.0.lock();
        let id = inner.add_stream(sender);
        let task = tokio::spawn(read_stream(shared, id, requests, handle));
        if let Some(s) = inner.streams.iter_mut().find(|s| s.id == id) {
            s.reader = Some(task.abort_handle());
        }
    }
}

#[tonic::async_trait]
impl AggregatedDiscoveryService for Ads {
    type StreamAggregatedResourcesStream =
        UnboundedReceiverStream<Result<DiscoveryResponse, Status>>;
    type DeltaAggregatedResourcesStream =
        UnboundedReceiverStream<Result<DeltaDiscoveryResponse, Status>>;

    async fn stream_aggregated_resources(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamAggregatedResourcesStream>, Status> {
        self.sotw(request)
    }

    async fn delta_aggregated_resources(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        self.delta(request)
    }
}

/// The same state of the world streams for secrets: a separate SDS server (Istio's agent
/// serves `StreamSecrets` on its Unix socket).
#[tonic::async_trait]
impl SecretDiscoveryService for Ads {
    type StreamSecretsStream = UnboundedReceiverStream<Result<DiscoveryResponse, Status>>;
    type DeltaSecretsStream = UnboundedReceiverStream<Result<DeltaDiscoveryResponse, Status>>;

    async fn stream_secrets(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamSecretsStream>, Status> {
        self.sotw(request)
    }

    async fn delta_secrets(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaSecretsStream>, Status> {
        self.delta(request)
    }

    async fn fetch_secrets(
        &self,
        _request: Request<DiscoveryRequest>,
    ) -> Result<Response<DiscoveryResponse>, Status> {
        Err(Status::unimplemented("fetch_secrets"))
    }
}

/// Both services on one connection, by path.
#[derive(Clone)]
pub(crate) struct Services {
    ads: AggregatedDiscoveryServiceServer<Ads>,
    sds: SecretDiscoveryServiceServer<Ads>,
}

impl Services {
    fn new(ads: Ads) -> Services {
        Services {
            ads: AggregatedDiscoveryServiceServer::new(ads.clone()),
            sds: SecretDiscoveryServiceServer::new(ads),
        }
    }
}

/// Accepts HTTP/2 connections on `listener` until the task is aborted;
/// aborting drops every connection (the `JoinSet` aborts its tasks).
pub(crate) async fn serve(listener: TcpListener, ads: Ads) {
    let svc = Services::new(ads);
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                serve_conn(&mut conns, svc.clone(), stream);
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

/// The same service on a Unix domain socket (Istio's agent serves xDS this way).
pub(crate) async fn serve_unix(listener: tokio::net::UnixListener, ads: Ads) {
    let svc = Services::new(ads);
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                serve_conn(&mut conns, svc.clone(), stream);
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

fn serve_conn<S>(conns: &mut JoinSet<()>, svc: Services, stream: S)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    conns.spawn(async move {
        let service =
            hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let mut svc = svc.clone();
                async move {
                    if req
                        .uri()
                        .path()
                        .starts_with("/envoy.service.secret.v3.SecretDiscoveryService/")
                    {
                        svc.sds.call(req).await
                    } else {
                        svc.ads.call(req).await
                    }
                }
            });
        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .serve_connection(TokioIo::new(stream), service)
            .await;
    });
}
