//! `envoy.filters.http.fault` (`HTTPFault`): injected delays and aborts, each with its
//! percentage, limited to some requests (upstream cluster, downstream nodes, headers).

use super::super::route::HeaderMatch;
use super::super::{duration, err, Result};
use super::Percent;
use envoy_types::pb::envoy::extensions::filters::common::fault::v3::fault_delay::FaultDelaySecifier;
use envoy_types::pb::envoy::extensions::filters::common::fault::v3::fault_rate_limit::LimitType;
use envoy_types::pb::envoy::extensions::filters::http::fault::v3 as pb;
use pb::fault_abort::ErrorType;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DelayKind {
    Fixed(Duration),
    /// `header_delay`: milliseconds from `x-envoy-fault-delay-request`.
    Header,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbortKind {
    Http(u16),
    Grpc(u32),
    /// `header_abort`: from `x-envoy-fault-abort-request` / `-grpc-request`.
    Header,
}

#[derive(Debug, Clone)]
pub struct FaultCfg {
    pub delay: Option<(DelayKind, Percent)>,
    pub abort: Option<(AbortKind, Percent)>,
    /// The abort's body (`response_body`); Envoy's `fault filter abort` when empty.
    pub abort_body: String,
    pub upstream_cluster: String,
    pub headers: Vec<HeaderMatch>,
    pub downstream_nodes: Vec<String>,
    pub max_active_faults: Option<u32>,
    /// `response_rate_limit`: KiB/s (none: from `x-envoy-fault-throughput-response`).
    pub response_rate_limit: Option<(Option<u64>, Percent)>,
}

impl FaultCfg {
    pub fn from_proto(f: &pb::HttpFault, path: &str) -> Result<FaultCfg> {
        let delay = match &f.delay {
            None => None,
            Some(d) => {
                let dp = format!("{path}.delay");
                let kind = match &d.fault_delay_secifier {
                    Some(FaultDelaySecifier::FixedDelay(fd)) => {
                        let v = duration(fd, &format!("{dp}.fixed_delay"))?;
                        if v.is_zero() {
                            return err(&format!("{dp}.fixed_delay"), "must be greater than 0");
                        }
                        DelayKind::Fixed(v)
                    }
                    Some(FaultDelaySecifier::HeaderDelay(_)) => DelayKind::Header,
                    None => return err(&dp, "fixed_delay or header_delay is required"),
                };
                Some((
                    kind,
                    Percent::from_proto(&d.percentage, &format!("{dp}.percentage"))?,
                ))
            }
        };
        let abort = match &f.abort {
            None => None,
            Some(a) => {
                let ap = format!("{path}.abort");
                let kind = match a.error_type {
                    Some(ErrorType::HttpStatus(s)) => {
                        if !(200..600).contains(&s) {
                            return err(&format!("{ap}.http_status"), "must be in [200, 600)");
                        }
                        AbortKind::Http(s as u16)
                    }
                    Some(ErrorType::GrpcStatus(g)) => AbortKind::Grpc(g),
                    Some(ErrorType::HeaderAbort(_)) => AbortKind::Header,
                    None => {
                        return err(&ap, "http_status, grpc_status or header_abort is required")
                    }
                };
                Some((
                    kind,
                    Percent::from_proto(&a.percentage, &format!("{ap}.percentage"))?,
                ))
            }
        };
        Ok(FaultCfg {
            delay,
            abort,
            abort_body: f
                .abort
                .as_ref()
                .map(|a| a.response_body.clone())
                .unwrap_or_default(),
            upstream_cluster: f.upstream_cluster.clone(),
            headers: f
                .headers
                .iter()
                .enumerate()
                .map(|(i, h)| HeaderMatch::from_proto(h, &format!("{path}.headers[{i}]")))
                .collect::<Result<_>>()?,
            downstream_nodes: f.downstream_nodes.clone(),
            max_active_faults: f.max_active_faults.as_ref().map(|v| v.value),
            response_rate_limit: match &f.response_rate_limit {
                None => None,
                Some(r) => {
                    let rp = format!("{path}.response_rate_limit");
                    let kbps = match &r.limit_type {
                        Some(LimitType::FixedLimit(l)) => {
                            if l.limit_kbps < 1 {
                                return err(
                                    &format!("{rp}.fixed_limit.limit_kbps"),
                                    "must be at least 1",
                                );
                            }
                            Some(l.limit_kbps)
                        }
                        Some(LimitType::HeaderLimit(_)) => None,
                        None => return err(&rp, "fixed_limit or header_limit is required"),
                    };
                    Some((
                        kbps,
                        Percent::from_proto(&r.percentage, &format!("{rp}.percentage"))?,
                    ))
                }
            },
        })
    }
}
