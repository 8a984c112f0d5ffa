//! gRPC channels to the control plane over TCP or a Unix domain socket.

use super::ads::Target;
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tonic::transport::{Channel, Endpoint};

pub async fn connect(
    target: &Target,
    timeout: Duration,
) -> Result<Channel, tonic::transport::Error> {
    match target {
        Target::Tcp(addr) => {
            Endpoint::from_shared(format!("http://{addr}"))?
                .connect_timeout(timeout)
                .tcp_nodelay(true)
                .connect()
                .await
        }
        Target::Unix(path) => {
            Endpoint::from_static("http://localhost")
                .connect_timeout(timeout)
                .connect_with_connector(UdsConnector(path.clone()))
                .await
        }
    }
}

/// Connects every request's transport to one Unix socket path.
#[derive(Clone)]
struct UdsConnector(PathBuf);

impl tower_service::Service<http::Uri> for UdsConnector {
    type Response = TokioIo<tokio::net::UnixStream>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Uri) -> Self::Future {
        let path = self.0.clone();
        Box::pin(async move { Ok(TokioIo::new(tokio::net::UnixStream::connect(path).await?)) })
    }
}
