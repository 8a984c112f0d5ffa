//! `istio.stats` for HTTP (`stats.PluginConfig`): at the end of each stream,
//! `istio_requests_total`, `istio_request_duration_milliseconds`, `istio_request_bytes` and
//! `istio_response_bytes` with Istio's 25 standard labels, from this proxy's workload, the
//! peer's (exchanged in headers) and the stream itself.

use super::proto::PluginConfig;
use super::Workload;
use crate::config::{err, Result};
use crate::stats::tagged;
use crate::stream_info::StreamInfo;

/// Which side reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reporter {
    /// From the listener's traffic direction: inbound reports as `destination`, else `source`.
    Listener,
    Waypoint,
}

/// The standard metrics, by the key `metrics[].name` uses: HTTP, then TCP.
const METRICS: [&str; 8] = [
    "requests_total",
    "request_duration_milliseconds",
    "request_bytes",
    "response_bytes",
    "tcp_connections_opened_total",
    "tcp_connections_closed_total",
    "tcp_sent_bytes_total",
    "tcp_received_bytes_total",
];

/// The TCP metrics, in [`METRICS`] order from 4.
#[derive(Debug, Clone, Copy)]
pub enum Tcp {
    Opened = 4,
    Closed = 5,
    Sent = 6,
    Received = 7,
}

/// The labels TCP metrics leave out (response code, gRPC status).
const NOT_TCP: [usize; 2] = [21, 22];

/// The 25 standard HTTP labels, in Istio's order.
pub const LABELS: [&str; 25] = [
    "reporter",
    "source_workload",
    "source_canonical_service",
    "source_canonical_revision",
    "source_workload_namespace",
    "source_principal",
    "source_app",
    "source_version",
    "source_cluster",
    "destination_workload",
    "destination_workload_namespace",
    "destination_principal",
    "destination_app",
    "destination_version",
    "destination_service",
    "destination_canonical_service",
    "destination_canonical_revision",
    "destination_service_name",
    "destination_service_namespace",
    "destination_cluster",
    "request_protocol",
    "response_code",
    "grpc_response_status",
    "response_flags",
    "connection_security_policy",
];

#[derive(Debug)]
pub struct IstioStats {
    reporter: Reporter,
    disable_host_header_fallback: bool,
    /// Per standard metric: dropped, and the labels it leaves out.
    drop: [bool; 8],
    removed: [Vec<usize>; 8],
    /// `tcp_reporting_duration` (default 5 s).
    pub tcp_interval: std::time::Duration,
}

impl IstioStats {
    pub fn from_proto(c: &PluginConfig, path: &str) -> Result<IstioStats> {
        if !c.definitions.is_empty() {
            return err(
                &format!("{path}.definitions"),
                "custom metric definitions (CEL) are not supported by Ferry",
            );
        }
        let reporter = match c.reporter {
            0 => Reporter::Listener,
            1 => Reporter::Waypoint,
            _ => return err(&format!("{path}.reporter"), "unknown reporter"),
        };
        let mut drop = [false; 8];
        let mut removed: [Vec<usize>; 8] = Default::default();
        for (i, m) in c.metrics.iter().enumerate() {
            let mp = format!("{path}.metrics[{i}]");
            if !m.dimensions.is_empty() {
                return err(
                    &format!("{mp}.dimensions"),
                    "metric dimensions (CEL) are not supported by Ferry",
                );
            }
            let which: Vec<usize> = if m.name.is_empty() {
                (0..8).collect()
            } else {
                match METRICS.iter().position(|n| *n == m.name) {
                    Some(k) => vec![k],
                    // Unknown names: nothing reports them.
                    None => Vec::new(),
                }
            };
            for k in which {
                if m.drop && !m.name.is_empty() {
                    drop[k] = true;
                }
                for t in &m.tags_to_remove {
                    if let Some(l) = LABELS.iter().position(|l| l == t) {
                        removed[k].push(l);
                    }
                }
            }
        }
        // `istio_build{component="proxy",tag="<ISTIO_VERSION>"}`: this proxy's build.
        let version = &super::local().istio_version;
        let tag = if version.is_empty() {
            "unknown"
        } else {
            version.as_str()
        };
        if let tagged::TaggedValue::Gauge(g) = &tagged::gauge(
            "istiocustom.istio_build",
            &[("component", "proxy"), ("tag", tag)],
        )
        .value
        {
            g.set(1);
        }
        let tcp_interval = crate::config::opt_duration(
            &c.tcp_reporting_duration,
            &format!("{path}.tcp_reporting_duration"),
        )?
        .unwrap_or(std::time::Duration::from_secs(5));
        Ok(IstioStats {
            reporter,
            disable_host_header_fallback: c.disable_host_header_fallback,
            drop,
            removed,
            tcp_interval,
        })
    }

    /// The TCP labels of a connection (its stream info with the peer it exchanged).
    pub fn tcp_labels(&self, s: &StreamInfo) -> Vec<String> {
        labels(self, s)
    }

    /// Adds `n` to a TCP metric with these labels (from [`IstioStats::tcp_labels`]).
    pub fn tcp_add(&self, metric: Tcp, values: &[String], n: u64) {
        let k = metric as usize;
        if self.drop[k] || n == 0 {
            return;
        }
        let tags: Vec<(&str, &str)> = LABELS
            .iter()
            .zip(values.iter())
            .enumerate()
            .filter(|(i, _)| !NOT_TCP.contains(i) && !self.removed[k].contains(i))
            .map(|(_, (l, v))| (*l, v.as_str()))
            .collect();
        let name = format!("istiocustom.istio_{}", METRICS[k]);
        if let tagged::TaggedValue::Counter(c) = &tagged::counter(&name, &tags).value {
            c.add(n);
        }
    }

    /// Records the stream's metrics.
    pub fn record(&self, s: &StreamInfo) {
        let values = labels(self, s);
        let duration = s.ended.map(|e| s.ms_to(e));
        for (k, metric) in METRICS.iter().enumerate().take(4) {
            if self.drop[k] {
                continue;
            }
            let tags: Vec<(&str, &str)> = LABELS
                .iter()
                .zip(values.iter())
                .enumerate()
                .filter(|(i, _)| !self.removed[k].contains(i))
                .map(|(_, (l, v))| (*l, v.as_str()))
                .collect();
            let name = format!("istiocustom.istio_{metric}");
            match k {
                0 => {
                    if let tagged::TaggedValue::Counter(c) = &tagged::counter(&name, &tags).value {
                        c.inc();
                    }
                }
                _ => {
                    let v = match k {
                        1 => match duration {
                            Some(d) => d,
                            None => continue,
                        },
                        2 => s.wire_received(),
                        _ => s.wire_sent(),
                    };
                    if let tagged::TaggedValue::Histogram(h) =
                        &tagged::histogram(&name, &tags).value
                    {
                        h.record(v);
                    }
                }
            }
        }
    }
}

fn or_unknown(v: &str) -> String {
    if v.is_empty() {
        "unknown".into()
    } else {
        v.to_string()
    }
}

/// The namespace of a SPIFFE identity (`spiffe://td/ns/<ns>/sa/<sa>`).
fn san_namespace(san: &str) -> Option<&str> {
    let rest = &san[san.find("/ns/")? + 4..];
    Some(rest.split('/').next().unwrap_or(rest)).filter(|n| !n.is_empty())
}

/// The label values, in [`LABELS`] order.
fn labels(cfg: &IstioStats, s: &StreamInfo) -> Vec<String> {
    let local = &super::local().workload;
    let empty = Workload::default();
    let inbound = s.downstream.inbound;
    let (reporter, peer) = match (cfg.reporter, inbound) {
        (Reporter::Waypoint, _) => ("waypoint", s.downstream_peer.as_deref()),
        (Reporter::Listener, true) => ("destination", s.downstream_peer.as_deref()),
        (Reporter::Listener, false) => ("source", s.upstream_peer.as_deref()),
    };
    let peer = peer.unwrap_or(&empty);
    // Principals: the downstream TLS peer's identity on the server side; the upstream's on
    // the client side.
    let downstream_san = s
        .downstream
        .peer
        .as_ref()
        .and_then(|p| p.uris.iter().find(|u| u.starts_with("spiffe://")).cloned())
        .unwrap_or_default();
    let upstream_san = s.upstream.peer_san.as_deref().unwrap_or("").to_string();
    let peer_san = if reporter == "source" {
        upstream_san
    } else {
        downstream_san
    };
    let peer_ns = san_namespace(&peer_san)
        .map(str::to_string)
        .unwrap_or_else(|| peer.namespace.clone());
    let authority = if cfg.disable_host_header_fallback {
        String::new()
    } else {
        s.request
            .as_ref()
            .and_then(|r| r.headers.get(http::header::HOST))
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let cluster = s.upstream.cluster.as_ref().map(|c| &*c.0).unwrap_or("");
    let mut service_ns = String::new();
    let (service, service_name) = match (cluster, &s.upstream.service) {
        (
            "BlackHoleCluster"
            | "PassthroughCluster"
            | "InboundPassthroughCluster"
            | "InboundPassthroughClusterIpv4"
            | "InboundPassthroughClusterIpv6",
            _,
        ) => (authority.clone(), cluster.to_string()),
        (_, Some(svc)) => {
            service_ns = svc.namespace.clone();
            (svc.host.clone(), svc.name.clone())
        }
        _ => (authority.clone(), authority.clone()),
    };
    let route = s.route_name.as_deref().unwrap_or("");
    let service_name = match route {
        "block_all" => "BlackHoleCluster".to_string(),
        "allow_any" => "PassthroughCluster".to_string(),
        _ => service_name,
    };
    let protocol = match (&s.request, s.grpc) {
        (None, _) => "tcp",
        (_, true) => "grpc",
        _ => "http",
    };
    let grpc_status = if s.grpc {
        crate::access_log::grpc_code(s).map_or(String::new(), |c| c.to_string())
    } else {
        String::new()
    };
    let flags = if s.flags.is_empty() {
        "-".to_string()
    } else {
        s.flags
            .iter()
            .map(|f| f.code())
            .collect::<Vec<_>>()
            .join(",")
    };
    let peer_rev = |w: &Workload| {
        if w.canonical_revision.is_empty() {
            "latest".to_string()
        } else {
            w.canonical_revision.clone()
        }
    };
    let mut v: Vec<String> = Vec::with_capacity(25);
    v.push(reporter.into());
    if reporter == "source" {
        let local_san = s.upstream.local_san.as_deref().unwrap_or("");
        v.extend([
            local.workload.clone(),
            local.canonical_name.clone(),
            local.canonical_revision.clone(),
            local.namespace.clone(),
            or_unknown(local_san),
            local.app.clone(),
            local.version.clone(),
            local.cluster.clone(),
            or_unknown(&peer.workload),
            or_unknown(&peer_ns),
            or_unknown(&peer_san),
            or_unknown(&peer.app),
            or_unknown(&peer.version),
            or_unknown(&service),
            or_unknown(&peer.canonical_name),
            peer_rev(peer),
            or_unknown(&service_name),
            or_unknown(if service_ns.is_empty() {
                &peer_ns
            } else {
                &service_ns
            }),
            or_unknown(&peer.cluster),
        ]);
    } else {
        let local_san = s
            .downstream
            .peer
            .as_ref()
            .and_then(|p| p.local_uri.clone())
            .unwrap_or_default();
        v.extend([
            or_unknown(&peer.workload),
            or_unknown(&peer.canonical_name),
            peer_rev(peer),
            or_unknown(&peer_ns),
            or_unknown(&peer_san),
            or_unknown(&peer.app),
            or_unknown(&peer.version),
            or_unknown(&peer.cluster),
            local.workload.clone(),
            local.namespace.clone(),
            or_unknown(&local_san),
            local.app.clone(),
            local.version.clone(),
            if service.is_empty() {
                local.canonical_name.clone()
            } else {
                service.clone()
            },
            local.canonical_name.clone(),
            local.canonical_revision.clone(),
            if service_name.is_empty() {
                local.canonical_name.clone()
            } else {
                service_name.clone()
            },
            local.namespace.clone(),
            local.cluster.clone(),
        ]);
    }
    let mtls = reporter != "source" && !peer_san.is_empty() && v[11] != "unknown";
    v.extend([
        protocol.to_string(),
        s.code.to_string(),
        grpc_status,
        flags,
        match (reporter, mtls) {
            ("source", _) => "unknown".into(),
            (_, true) => "mutual_tls".into(),
            (_, false) => "none".into(),
        },
    ]);
    v
}
