//! An external authorization service (`envoy.service.auth.v3.Authorization`, gRPC) for ext_authz
//! tests. It records every CheckRequest and decides by the request path:
//! - contains `allow`: OK, setting `x-authz-set`, appending to `x-app`, removing `x-drop`,
//!   and adding `x-authz-response` (set) and `x-authz-added` (appended) to the response;
//!   with `query` too, setting the query parameter `qs=v1` and removing `qr` and `b`;
//! - contains `deny`: PERMISSION_DENIED with a 401 `denied by authz` and `x-authz-why: test`;
//! - contains `fail`: a gRPC UNAVAILABLE error;
//! - contains `slow`: OK after 1.5 s;
//! - anything else: PERMISSION_DENIED without a denied response.
//!
//! A check without an HTTP request (the network filter's) is allowed or denied as
//! [`AuthzServer::set_tcp_allow`] says (denied at first).

use envoy_types::pb::envoy::config::core::v3::{HeaderValue, HeaderValueOption};
use envoy_types::pb::envoy::r#type::v3::HttpStatus;
use envoy_types::pb::envoy::service::auth::v3::authorization_server::{
    Authorization, AuthorizationServer,
};
use envoy_types::pb::envoy::service::auth::v3::{
    check_response::HttpResponse, CheckRequest, CheckResponse, DeniedHttpResponse, OkHttpResponse,
};
use envoy_types::pb::google::protobuf::BoolValue;
use envoy_types::pb::google::rpc::Status;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::sync::{Arc, Mutex};
use tonic::codegen::Service;

#[derive(Clone, Default)]
struct Svc(
    Arc<Mutex<Vec<CheckRequest>>>,
    Arc<std::sync::atomic::AtomicBool>,
);

fn header(k: &str, v: &str, append: Option<bool>) -> HeaderValueOption {
    #[allow(deprecated)] // `append` is what ext_authz reads
    HeaderValueOption {
        header: Some(HeaderValue {
            key: k.into(),
            value: v.into(),
            ..Default::default()
        }),
        append: append.map(|value| BoolValue { value }),
        ..Default::default()
    }
}

#[tonic::async_trait]
impl Authorization for Svc {
    async fn check(
        &self,
        req: tonic::Request<CheckRequest>,
    ) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
        let req = req.into_inner();
        let path = req
            .attributes
            .as_ref()
            .and_then(|a| a.request.as_ref())
            .and_then(|r| r.http.as_ref())
            .map(|h| h.path.clone())
            .unwrap_or_default();
        let tcp = req.attributes.as_ref().is_some_and(|a| a.request.is_none());
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(req);
        if tcp {
            let allow = self.1.load(std::sync::atomic::Ordering::Relaxed);
            return Ok(tonic::Response::new(CheckResponse {
                status: Some(Status {
                    code: if allow { 0 } else { 7 },
                    ..Default::default()
                }),
                ..Default::default()
            }));
        }
        if path.contains("fail") {
            return Err(tonic::Status::unavailable("authz is down"));
        }
        if path.contains("slow") {
            tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        }
        let resp = if path.contains("allow") || path.contains("slow") {
            CheckResponse {
                status: Some(Status::default()),
                http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
                    headers: vec![
                        header("x-authz-set", "yes", None),
                        header("x-app", "from-authz", Some(true)),
                        header("x-absent", "dropped", Some(true)),
                    ],
                    headers_to_remove: vec!["x-drop".into()],
                    query_parameters_to_set: if path.contains("query") {
                        vec![envoy_types::pb::envoy::config::core::v3::QueryParameter {
                            key: "qs".into(),
                            value: "v1".into(),
                        }]
                    } else {
                        Vec::new()
                    },
                    query_parameters_to_remove: if path.contains("query") {
                        vec!["qr".into(), "b".into()]
                    } else {
                        Vec::new()
                    },
                    response_headers_to_add: vec![
                        header("x-authz-response", "set", Some(false)),
                        header("x-authz-added", "added", Some(true)),
                    ],
                    ..Default::default()
                })),
                ..Default::default()
            }
        } else if path.contains("deny") {
            CheckResponse {
                status: Some(Status {
                    code: 7,
                    ..Default::default()
                }),
                http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
                    status: Some(HttpStatus { code: 401 }),
                    headers: vec![
                        header("x-authz-why", "test", None),
                        header("x-authz-dropped", "appended", Some(true)),
                    ],
                    body: "denied by authz".into(),
                })),
                ..Default::default()
            }
        } else {
            CheckResponse {
                status: Some(Status {
                    code: 7,
                    ..Default::default()
                }),
                ..Default::default()
            }
        };
        Ok(tonic::Response::new(resp))
    }
}

/// A running authorization service on 127.0.0.1; stops when dropped.
pub struct AuthzServer {
    port: u16,
    seen: Arc<Mutex<Vec<CheckRequest>>>,
    tcp_allow: Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl AuthzServer {
    pub async fn start() -> AuthzServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the authz server");
        let port = listener.local_addr().expect("local_addr").port();
        let svc = Svc::default();
        let seen = svc.0.clone();
        let tcp_allow = svc.1.clone();
        let server = AuthorizationServer::new(svc);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let server = server.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |req: http::Request<hyper::body::Incoming>| {
                            let mut s = server.clone();
                            async move { s.call(req).await }
                        },
                    );
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        AuthzServer {
            port,
            seen,
            tcp_allow,
            task,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether connections (checks without an HTTP request) are allowed.
    pub fn set_tcp_allow(&self, allow: bool) {
        self.tcp_allow
            .store(allow, std::sync::atomic::Ordering::Relaxed);
    }

    /// The CheckRequests received so far, and forgets them.
    pub fn take(&self) -> Vec<CheckRequest> {
        std::mem::take(&mut *self.seen.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl Drop for AuthzServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The same decisions over HTTP (`http_service`), by the path it is asked for:
/// - `allow`: 200 with `x-authz-set`, `x-app`, `x-client-ok`, `x-other` and
///   `x-envoy-auth-headers-to-remove: x-drop`;
/// - `deny`: 401 `denied by http authz` with `www-authenticate`, `x-authz-why`,
///   `content-type: text/html` and `set-cookie`;
/// - `redirect`: 302 to `/login`, no body; `fail`: 503; anything else: 403.
///
/// It records each request as `METHOD path` and its headers, sorted.
pub struct HttpAuthzServer {
    port: u16,
    seen: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

async fn http_check(
    seen: Arc<Mutex<Vec<String>>>,
    req: http::Request<hyper::body::Incoming>,
) -> Result<http::Response<http_body_util::Full<bytes::Bytes>>, std::convert::Infallible> {
    let path = req.uri().to_string();
    let mut headers: Vec<String> = req
        .headers()
        .iter()
        .map(|(n, v)| format!("{n}={}", v.to_str().unwrap_or("?")))
        .collect();
    headers.sort();
    let method = req.method().to_string();
    let body = http_body_util::BodyExt::collect(req.into_body())
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    seen.lock().unwrap_or_else(|e| e.into_inner()).push(format!(
        "{method} {path} body={:?} headers={headers:?}",
        String::from_utf8_lossy(&body)
    ));
    let r = http::Response::builder();
    let r = if path.contains("allow") {
        r.status(200)
            .header("x-authz-set", "yes")
            .header("x-app", "from-authz")
            .header("x-client-ok", "yes")
            .header("x-other", "no")
            .header("x-envoy-auth-headers-to-remove", "x-drop")
            .body(Default::default())
    } else if path.contains("deny") {
        r.status(401)
            .header("www-authenticate", "Basic realm=\"ferry\"")
            .header("x-authz-why", "test")
            .header("content-type", "text/html")
            .header("set-cookie", "a=b")
            .body(http_body_util::Full::new(bytes::Bytes::from_static(
                b"denied by http authz",
            )))
    } else if path.contains("redirect") {
        r.status(302)
            .header("location", "/login")
            .body(Default::default())
    } else if path.contains("fail") {
        r.status(503).body(Default::default())
    } else {
        r.status(403).body(Default::default())
    };
    Ok(r.unwrap_or_default())
}

impl HttpAuthzServer {
    pub async fn start() -> HttpAuthzServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the HTTP authz server");
        let port = listener.local_addr().expect("local_addr").port();
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let s = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let s = s.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| http_check(s.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        HttpAuthzServer { port, seen, task }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The requests received so far, and forgets them.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.seen.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl Drop for HttpAuthzServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
