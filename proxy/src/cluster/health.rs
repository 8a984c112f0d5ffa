//! Active health checking: one session per host checks it (HTTP, TCP or gRPC) every interval
//! and moves it between healthy and `failed_active_hc` as Envoy does: hosts start failed, the
//! first success ever makes a host healthy, a non-retriable HTTP failure fails it at once, and
//! other failures count towards `unhealthy_threshold`.

use super::host::{flag, Host};
use super::ClusterRt;
use crate::config::cluster::health::{Check, HealthCheckCfg};
use crate::stats::{registry, Counter, Gauge, Scope};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug)]
pub struct Checker {
    pub cfg: HealthCheckCfg,
    attempt: Counter,
    success: Counter,
    failure: Counter,
    network_failure: Counter,
    pub healthy: Gauge,
    degraded: Gauge,
    /// Wakes the supervisor: the host set changed.
    changed: Arc<tokio::sync::Notify>,
}

/// What one check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Healthy,
    Degraded,
    /// An answer that fails the check at once.
    Failed,
    /// An answer that counts towards `unhealthy_threshold` (a retriable status).
    Retriable,
    /// Connect failure, reset or close.
    Network,
    Timeout,
}

impl Checker {
    pub fn new(cluster: &str, cfg: HealthCheckCfg) -> Checker {
        let r = registry();
        let c = |s: &str| r.counter(Scope::Cluster(cluster), &format!("health_check.{s}"));
        let g = |s: &str| r.gauge(Scope::Cluster(cluster), &format!("health_check.{s}"));
        c("passive_failure");
        c("verify_cluster");
        Checker {
            cfg,
            attempt: c("attempt"),
            success: c("success"),
            failure: c("failure"),
            network_failure: c("network_failure"),
            healthy: g("healthy"),
            degraded: g("degraded"),
            changed: Arc::new(tokio::sync::Notify::new()),
        }
    }

    /// The host set changed: new hosts need sessions.
    pub fn hosts_changed(&self) {
        self.changed.notify_one();
    }

    /// Starts a session for every host, now and as hosts are added.
    pub fn spawn(cluster: &Arc<ClusterRt>) {
        if cluster.health.is_none() {
            return;
        }
        let weak = Arc::downgrade(cluster);
        tokio::spawn(async move {
            loop {
                let Some(c) = weak.upgrade() else { return };
                let Some(hc) = &c.health else { return };
                // A change while this round runs leaves a permit: no wake-up is lost.
                let changed = hc.changed.clone();
                for h in c.hosts().iter() {
                    if !h
                        .hc_session
                        .swap(true, std::sync::atomic::Ordering::Relaxed)
                    {
                        tokio::spawn(session(weak.clone(), h.clone()));
                    }
                }
                drop(c);
                changed.notified().await;
            }
        });
    }

    fn publish(&self, cluster: &ClusterRt) {
        let hosts = cluster.hosts();
        let count =
            |f: u32, set: bool| hosts.iter().filter(|h| (h.flags() & f != 0) == set).count() as u64;
        self.healthy.set(count(flag::FAILED_ACTIVE_HC, false));
        self.degraded.set(count(flag::DEGRADED_ACTIVE_HC, true));
    }
}

/// A connection a session keeps between checks (`reuse_connection`).
enum Conn {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
    Raw(crate::io::Stream),
}

async fn session(cluster: Weak<ClusterRt>, host: Arc<Host>) {
    let jitter = match cluster
        .upgrade()
        .and_then(|c| c.health.as_ref().map(|h| h.cfg.initial_jitter))
    {
        Some(j) if !j.is_zero() => fastrand::u64(0..j.as_millis() as u64),
        _ => 0,
    };
    tokio::time::sleep(Duration::from_millis(jitter)).await;
    let mut conn: Option<Conn> = None;
    let (mut first, mut ok_streak, mut fail_streak) = (true, 0u32, 0u32);
    loop {
        let Some(c) = cluster.upgrade() else { return };
        if !c.hosts().iter().any(|h| Arc::ptr_eq(h, &host)) {
            return;
        }
        let Some(hc) = &c.health else { return };
        let cfg = &hc.cfg;
        hc.attempt.inc();
        let verdict = match tokio::time::timeout(cfg.timeout, check(&c, &host, &mut conn)).await {
            Ok(v) => v,
            Err(_) => Verdict::Timeout,
        };
        if !cfg.reuse_connection || matches!(verdict, Verdict::Network | Verdict::Timeout) {
            conn = None;
        }
        let failed = host.flags() & flag::FAILED_ACTIVE_HC != 0;
        let mut changed = host.set_flag(flag::PENDING_ACTIVE_HC, false);
        match verdict {
            Verdict::Healthy | Verdict::Degraded => {
                hc.success.inc();
                fail_streak = 0;
                if failed {
                    ok_streak += 1;
                    if first || ok_streak >= cfg.healthy_threshold {
                        host.set_flag(flag::FAILED_ACTIVE_HC, false);
                        host.set_flag(flag::ACTIVE_HC_TIMEOUT, false);
                        if !first {
                            host.restart_slow_start();
                        }
                        ok_streak = 0;
                        changed = true;
                    }
                } else if let Some(d) = &c.outlier {
                    changed |= d.health_check_passed(&host);
                }
                changed |= host.set_flag(flag::DEGRADED_ACTIVE_HC, verdict == Verdict::Degraded);
            }
            _ => {
                hc.failure.inc();
                if matches!(verdict, Verdict::Network | Verdict::Timeout) {
                    hc.network_failure.inc();
                }
                ok_streak = 0;
                if failed {
                    host.set_flag(flag::ACTIVE_HC_TIMEOUT, verdict == Verdict::Timeout);
                } else {
                    fail_streak += 1;
                    if verdict == Verdict::Failed || fail_streak >= cfg.unhealthy_threshold {
                        host.set_flag(flag::FAILED_ACTIVE_HC, true);
                        host.pool.drain();
                        fail_streak = 0;
                        changed = true;
                    }
                }
            }
        }
        host.hc_checked
            .store(true, std::sync::atomic::Ordering::Relaxed);
        if changed {
            c.refresh();
        }
        hc.publish(&c);
        let now_failed = host.flags() & flag::FAILED_ACTIVE_HC != 0;
        let pending = if now_failed {
            ok_streak > 0
        } else {
            fail_streak > 0
        };
        let next = next_interval(
            cfg,
            now_failed,
            pending,
            c.stats.upstream_cx_total.get() > 0,
        );
        first = false;
        drop(c);
        tokio::time::sleep(next).await;
    }
}

/// The wait before the next check, with jitter.
fn next_interval(cfg: &HealthCheckCfg, unhealthy: bool, pending: bool, traffic: bool) -> Duration {
    let base = match (traffic, unhealthy, pending) {
        (true, true, true) => cfg.unhealthy_edge_interval,
        (true, true, false) => cfg.unhealthy_interval,
        (true, false, true) => cfg.healthy_edge_interval,
        (true, false, false) => cfg.interval,
        (false, false, false) => cfg.no_traffic_healthy_interval,
        (false, _, _) => cfg.no_traffic_interval,
    };
    let mut ms = base.as_millis() as u64;
    let pct = u64::from(cfg.interval_jitter_percent) * ms / 100;
    if pct > 0 {
        ms += fastrand::u64(0..pct);
    }
    let j = cfg.interval_jitter.as_millis() as u64;
    if j > 0 {
        ms += fastrand::u64(0..j);
    }
    Duration::from_millis(ms.max(1))
}

async fn check(c: &ClusterRt, host: &Host, conn: &mut Option<Conn>) -> Verdict {
    let Some(hc) = &c.health else {
        return Verdict::Healthy;
    };
    match &hc.cfg.check {
        Check::Http {
            host: authority,
            path,
            method,
            expected,
            retriable,
            http2,
        } => {
            let authority = authority.clone().unwrap_or_else(|| c.cfg.name.clone());
            let scheme = if c.tls.is_some() { "https" } else { "http" };
            let mut req = http::Request::builder()
                .method(method.clone())
                .header(http::header::USER_AGENT, "Envoy/HC");
            req = if *http2 {
                req.uri(format!("{scheme}://{authority}{path}"))
            } else {
                req.uri(path.as_str())
                    .header(http::header::HOST, &authority)
            };
            let Ok(req) = req.body(Full::new(Bytes::new())) else {
                return Verdict::Failed;
            };
            let resp = match send(c, host, conn, *http2, req).await {
                Ok(r) => r,
                Err(v) => return v,
            };
            let close = resp
                .headers()
                .get(http::header::CONNECTION)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
            let degraded = resp.headers().contains_key("x-envoy-degraded");
            let status = resp.status().as_u16();
            // The body is read so that the connection can take the next check.
            if resp.into_body().collect().await.is_err() || close {
                *conn = None;
            }
            let within = |r: &[(u16, u16)]| r.iter().any(|&(a, b)| (a..b).contains(&status));
            if within(expected) {
                if degraded {
                    Verdict::Degraded
                } else {
                    Verdict::Healthy
                }
            } else if within(retriable) {
                Verdict::Retriable
            } else {
                Verdict::Failed
            }
        }
        Check::Grpc { service, authority } => {
            let authority = authority.clone().unwrap_or_else(|| c.cfg.name.clone());
            let scheme = if c.tls.is_some() { "https" } else { "http" };
            // grpc.health.v1.HealthCheckRequest { service = 1 } in one gRPC frame.
            let mut msg = Vec::with_capacity(service.len() + 8);
            if !service.is_empty() {
                msg.push(0x0a);
                push_varint(&mut msg, service.len() as u64);
                msg.extend_from_slice(service.as_bytes());
            }
            let mut frame = vec![0u8];
            frame.extend_from_slice(&(msg.len() as u32).to_be_bytes());
            frame.extend_from_slice(&msg);
            let req = http::Request::post(format!(
                "{scheme}://{authority}/grpc.health.v1.Health/Check"
            ))
            .header(http::header::CONTENT_TYPE, "application/grpc")
            .header("te", "trailers")
            .header(http::header::USER_AGENT, "Envoy/HC")
            .body(Full::new(Bytes::from(frame)));
            let Ok(req) = req else {
                return Verdict::Failed;
            };
            let resp = match send(c, host, conn, true, req).await {
                Ok(r) => r,
                Err(v) => return v,
            };
            if resp.status() != http::StatusCode::OK {
                return Verdict::Failed;
            }
            let grpc_status =
                |h: &http::HeaderMap| h.get("grpc-status").map(|v| v.as_bytes().to_vec());
            let early = grpc_status(resp.headers());
            let Ok(body) = resp.into_body().collect().await else {
                return Verdict::Network;
            };
            let trailer = body.trailers().and_then(grpc_status);
            if early.or(trailer).as_deref() != Some(b"0") {
                return Verdict::Failed;
            }
            // HealthCheckResponse { status = 1 }: SERVING is 1.
            match body.to_bytes().get(5..) {
                Some([0x08, 1, ..]) => Verdict::Healthy,
                _ => Verdict::Failed,
            }
        }
        Check::Tcp { send, receive } => {
            let mut stream = match conn.take() {
                Some(Conn::Raw(s)) => s,
                _ => match super::connect::open(host.addr, c.cfg.dial(), c.tls.as_deref()).await {
                    Ok(s) => s,
                    Err(_) => return Verdict::Network,
                },
            };
            if receive.is_empty() {
                // Connecting is the check.
                return Verdict::Healthy;
            }
            if !send.is_empty() && stream.write_all(send).await.is_err() {
                return Verdict::Network;
            }
            let mut got = Vec::new();
            let mut buf = [0u8; 1024];
            loop {
                if contains_in_order(&got, receive) {
                    *conn = Some(Conn::Raw(stream));
                    return Verdict::Healthy;
                }
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return Verdict::Network,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
        }
    }
}

/// Sends a check request over the kept connection, or a new one.
async fn send(
    c: &ClusterRt,
    host: &Host,
    conn: &mut Option<Conn>,
    http2: bool,
    req: http::Request<Full<Bytes>>,
) -> Result<http::Response<hyper::body::Incoming>, Verdict> {
    let usable = match conn {
        Some(Conn::H1(s)) => !http2 && s.ready().await.is_ok(),
        Some(Conn::H2(s)) => http2 && s.ready().await.is_ok(),
        _ => false,
    };
    if !usable {
        let stream = super::connect::open(host.addr, c.cfg.dial(), c.tls.as_deref())
            .await
            .map_err(|_| Verdict::Network)?;
        let io = TokioIo::new(stream);
        *conn = Some(if http2 {
            let (s, driver) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
                .handshake(io)
                .await
                .map_err(|_| Verdict::Network)?;
            tokio::spawn(driver);
            Conn::H2(s)
        } else {
            let (s, driver) = hyper::client::conn::http1::handshake(io)
                .await
                .map_err(|_| Verdict::Network)?;
            tokio::spawn(driver);
            Conn::H1(s)
        });
    }
    let sent = match conn {
        Some(Conn::H1(s)) => s.send_request(req).await,
        Some(Conn::H2(s)) => s.send_request(req).await,
        _ => return Err(Verdict::Network),
    };
    sent.map_err(|_| {
        *conn = None;
        Verdict::Network
    })
}

fn push_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Whether each of `parts` appears in `data`, in order (a loose sequence match).
fn contains_in_order(data: &[u8], parts: &[Vec<u8>]) -> bool {
    let mut at = 0;
    for p in parts {
        match data[at..]
            .windows(p.len().max(1))
            .position(|w| w == p.as_slice())
        {
            Some(i) => at += i + p.len(),
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loose_sequence_match() {
        let parts = vec![b"PO".to_vec(), b"NG".to_vec()];
        assert!(contains_in_order(b"xxPOyyNG", &parts));
        assert!(!contains_in_order(b"NGPO", &parts));
        assert!(!contains_in_order(b"PO", &parts));
    }
}
