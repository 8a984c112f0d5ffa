//! The admin API (the bootstrap's `admin` block), with Envoy's endpoints and answers.

mod clusters;
mod dump;
pub use dump::{rfc3339, to_json};

use crate::http::reply::Body;
use crate::snapshot::{Server, ServerState};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use tokio::net::TcpListener;

pub fn spawn(server: Arc<Server>, listener: TcpListener, logs: crate::access_log::AccessLogs) {
    let ignore_limit = server.bootstrap.admin_ignore_conn_limit;
    let overflow = crate::stats::registry().counter(
        crate::stats::Scope::Listener("admin"),
        "downstream_global_cx_overflow",
    );
    tokio::spawn(async move {
        loop {
            let Ok((stream, remote)) = listener.accept().await else {
                continue;
            };
            // Admin connections count against the global limit unless
            // `admin.ignore_global_conn_limit`, as in Envoy.
            let Some(permit) = crate::overload::admit_connection(ignore_limit) else {
                overflow.inc();
                continue;
            };
            let server = server.clone();
            let logs = logs.clone();
            let local = stream.local_addr().unwrap_or(remote);
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let server = server.clone();
                    let logs = logs.clone();
                    async move {
                        Ok::<_, std::convert::Infallible>(if logs.is_empty() {
                            handle(&server, req)
                        } else {
                            logged(&server, req, &logs, local, remote)
                        })
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
                drop(permit);
            });
        }
    });
}

/// Answers a request and writes its access log line (`admin.access_log`).
fn logged(
    server: &Arc<Server>,
    req: Request<Incoming>,
    logs: &[crate::access_log::AccessLog],
    local: std::net::SocketAddr,
    remote: std::net::SocketAddr,
) -> Response<Body> {
    use crate::stream_info::{Downstream, LogType, RequestInfo, StreamInfo};
    use hyper::body::Body as _;
    let mut info = StreamInfo::new(
        LogType::DownstreamEnd,
        Downstream {
            local,
            remote,
            peer: None,
            connection_id: crate::stream_info::next_connection_id(),
            inbound: false,
        },
    );
    info.protocol = Some(if req.version() == http::Version::HTTP_10 {
        "HTTP/1.0"
    } else {
        "HTTP/1.1"
    });
    info.request = Some(RequestInfo::of(&req, "http"));
    info.request_done = Some(info.started);
    let resp = handle(server, req);
    info.code = resp.status().as_u16();
    info.details = Some(std::borrow::Cow::Borrowed("admin_filter_response"));
    info.bytes_sent = resp.body().size_hint().exact().unwrap_or(0);
    info.response_headers = Some(resp.headers().clone());
    info.ended = Some(std::time::Instant::now());
    crate::access_log::log_all(logs, &info);
    resp
}

fn text(status: StatusCode, body: impl Into<String>) -> Response<Body> {
    reply(status, "text/plain; charset=UTF-8", body.into())
}

fn reply(status: StatusCode, ctype: &'static str, body: String) -> Response<Body> {
    let mut r = Response::new(Body::full(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(http::header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    r.headers_mut().insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    r.headers_mut().insert(
        "cache-control",
        HeaderValue::from_static("no-cache, max-age=0"),
    );
    r
}

fn query_params(req: &Request<Incoming>) -> Vec<(String, String)> {
    req.uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

const MUTATING: &[&str] = &[
    "/quitquitquit",
    "/healthcheck/fail",
    "/healthcheck/ok",
    "/drain_listeners",
    "/logging",
    "/reset_counters",
];

fn handle(server: &Arc<Server>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let params = query_params(&req);
    let has = |k: &str| params.iter().any(|(n, _)| n == k);
    let param = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    if MUTATING.contains(&path.as_str()) && req.method() != Method::POST {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("Method {} not allowed, POST required.", req.method()),
        );
    }
    match path.as_str() {
        "/ready" => {
            let state = server.effective_state();
            let status = if state == ServerState::Live {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            text(status, format!("{}\n", state.name()))
        }
        "/server_info" => reply(
            StatusCode::OK,
            "application/json",
            dump::server_info(server),
        ),
        "/stats" => {
            let filter = match param("filter")
                .filter(|f| !f.is_empty())
                .map(|f| regex::Regex::new(&f))
            {
                Some(Err(e)) => {
                    return text(StatusCode::BAD_REQUEST, format!("Invalid re2 regex: {e}\n"))
                }
                Some(Ok(r)) => Some(r),
                None => None,
            };
            refresh_server_stats(server);
            let reg = crate::stats::registry();
            match param("format").as_deref() {
                Some("prometheus") => reply(
                    StatusCode::OK,
                    "text/plain; charset=UTF-8",
                    reg.render_prometheus(filter.as_ref(), has("usedonly")),
                ),
                Some("json") => reply(
                    StatusCode::OK,
                    "application/json",
                    reg.render_json(filter.as_ref(), has("usedonly")),
                ),
                _ => text(
                    StatusCode::OK,
                    reg.render_text(filter.as_ref(), has("usedonly")),
                ),
            }
        }
        "/stats/prometheus" => {
            refresh_server_stats(server);
            let filter = param("filter").and_then(|f| regex::Regex::new(&f).ok());
            reply(
                StatusCode::OK,
                "text/plain; charset=UTF-8",
                crate::stats::registry().render_prometheus(filter.as_ref(), has("usedonly")),
            )
        }
        "/config_dump" => reply(
            StatusCode::OK,
            "application/json",
            dump::config_dump(server, param("resource").as_deref(), has("include_eds")),
        ),
        "/clusters" => match param("format").as_deref() {
            Some("json") => reply(StatusCode::OK, "application/json", clusters::json(server)),
            _ => text(StatusCode::OK, clusters::text(server)),
        },
        "/listeners" => match param("format").as_deref() {
            Some("json") => reply(
                StatusCode::OK,
                "application/json",
                dump::listeners_json(server),
            ),
            _ => text(StatusCode::OK, dump::listeners(server)),
        },
        "/memory" => reply(StatusCode::OK, "application/json", dump::memory()),
        "/certs" => reply(
            StatusCode::OK,
            "application/json",
            crate::tls::certs::render(server),
        ),
        "/healthcheck/fail" => {
            server
                .health_failed
                .store(true, std::sync::atomic::Ordering::Relaxed);
            text(StatusCode::OK, "OK\n")
        }
        "/healthcheck/ok" => {
            server
                .health_failed
                .store(false, std::sync::atomic::Ordering::Relaxed);
            text(StatusCode::OK, "OK\n")
        }
        "/drain_listeners" => {
            crate::app::drain_listeners(server, has("graceful"), has("inboundonly"));
            text(StatusCode::OK, "OK\n")
        }
        "/quitquitquit" => {
            server.request_quit();
            text(StatusCode::OK, "OK\n")
        }
        "/logging" => match param("level") {
            Some(level) => match crate::app::set_log_level(&level) {
                Ok(()) => text(StatusCode::OK, crate::app::loggers_text()),
                Err(e) => text(StatusCode::BAD_REQUEST, format!("{e}\n")),
            },
            None if params.is_empty() => text(StatusCode::OK, crate::app::loggers_text()),
            None => text(StatusCode::NOT_FOUND, "usage: /logging?level=<level>\n"),
        },
        "/" | "/help" => text(StatusCode::OK, HELP),
        _ => text(
            StatusCode::NOT_FOUND,
            format!("invalid path. admin commands are:\n{HELP}"),
        ),
    }
}

fn refresh_server_stats(server: &Server) {
    server.stats.uptime.set(server.started.elapsed().as_secs());
    server.stats.memory_allocated.set(dump::rss_bytes());
}

const HELP: &str = "admin commands are:
  /: print out the admin commands
  /certs: print certs on machine
  /clusters: upstream cluster status
  /config_dump: dump current Envoy configs
  /drain_listeners (POST): drain listeners; graceful, inboundonly
  /healthcheck/fail (POST): cause the server to fail health checks
  /healthcheck/ok (POST): cause the server to pass health checks
  /help: print out list of admin commands
  /listeners: print listener info
  /logging (POST): query/change logging levels
  /memory: print current allocation/heap usage
  /quitquitquit (POST): exit the server
  /ready: print server state, return 200 if LIVE, otherwise return 503
  /server_info: print server version/status information
  /stats: print server stats; filter, usedonly, format
  /stats/prometheus: print server stats in prometheus format
";
