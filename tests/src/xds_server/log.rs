//! What the test control plane records: every request it received and every
//! response it sent, plus a normalised one-line form of each request that
//! can be compared between two proxies (no nonce values, no ports).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use envoy_types::pb::envoy::config::core::v3::{node::UserAgentVersionType, Node};

/// Which ADS method a stream uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamKind {
    /// `StreamAggregatedResources` (state of the world).
    Sotw,
    /// `DeltaAggregatedResources` (incremental).
    Delta,
}

pub const LISTENER: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
pub const ROUTE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
pub const CLUSTER: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
pub const ENDPOINT: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
pub const SECRET: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";

/// `LDS`, `RDS`, `CDS`, `EDS`, or the type URL itself.
pub fn short(type_url: &str) -> &str {
    match type_url {
        LISTENER => "LDS",
        ROUTE => "RDS",
        CLUSTER => "CDS",
        ENDPOINT => "EDS",
        other => other,
    }
}

/// Listeners and clusters are wildcard (subscribe-to-all) types.
pub fn is_wildcard_type(type_url: &str) -> bool {
    type_url == LISTENER || type_url == CLUSTER
}

/// One request received on an ADS stream.
#[derive(Clone, Debug)]
pub struct XdsRequest {
    /// Order of this event among all requests and responses of the server.
    pub seq: u64,
    pub stream: StreamKind,
    /// Per-server stream ordinal (1 = first stream ever opened).
    pub stream_id: u64,
    pub type_url: String,
    /// SotW `version_info` (empty for delta).
    pub version_info: String,
    pub response_nonce: String,
    /// SotW `resource_names`, or delta `resource_names_subscribe`.
    pub resource_names: Vec<String>,
    /// Delta `resource_names_unsubscribe`.
    pub unsubscribe: Vec<String>,
    /// Delta `initial_resource_versions`.
    pub initial_resource_versions: BTreeMap<String, String>,
    /// `error_detail.message` when present (a NACK).
    pub error: Option<String>,
    /// `error_detail.code` when present.
    pub error_code: Option<i32>,
    /// The node, when the request carried one.
    pub node: Option<Node>,
    /// Version of the response whose nonce this request echoes, if known.
    pub acked_version: Option<String>,
}

impl XdsRequest {
    /// A request echoing a nonce without error detail.
    pub fn is_ack(&self) -> bool {
        !self.response_nonce.is_empty() && self.error.is_none()
    }

    pub fn is_nack(&self) -> bool {
        !self.response_nonce.is_empty() && self.error.is_some()
    }

    /// ACK (or NACK when `nack`) of the response carrying `version`.
    pub fn answers(&self, type_url: &str, version: &str, nack: bool) -> bool {
        self.type_url == type_url
            && !self.response_nonce.is_empty()
            && self.error.is_some() == nack
            && self.acked_version.as_deref() == Some(version)
    }

    /// The comparable form: request kind, versions, names, no nonce
    /// values. `first_stream` renumbers stream ids so that two servers'
    /// logs line up.
    pub fn normalised(&self, first_stream: u64) -> String {
        let kind = if self.response_nonce.is_empty() {
            "REQ".to_string()
        } else if self.error.is_some() {
            format!("NACK(code {})", self.error_code.unwrap_or_default())
        } else {
            "ACK".to_string()
        };
        let mut s = format!(
            "s{} {kind}",
            self.stream_id.saturating_sub(first_stream) + 1
        );
        match &self.acked_version {
            Some(v) => write!(s, " of={v:?}"),
            None if self.response_nonce.is_empty() => Ok(()),
            None => write!(s, " of=<unknown nonce>"),
        }
        .ok();
        if self.stream == StreamKind::Sotw {
            write!(s, " version_info={:?}", self.version_info).ok();
            write!(s, " names={:?}", sorted(&self.resource_names)).ok();
        } else {
            write!(s, " subscribe={:?}", sorted(&self.resource_names)).ok();
            if !self.unsubscribe.is_empty() {
                write!(s, " unsubscribe={:?}", sorted(&self.unsubscribe)).ok();
            }
            if !self.initial_resource_versions.is_empty() {
                write!(s, " initial={:?}", self.initial_resource_versions).ok();
            }
        }
        if self.node.is_some() {
            s.push_str(" +node");
        }
        s
    }
}

fn sorted(v: &[String]) -> Vec<&str> {
    let mut v: Vec<&str> = v.iter().map(String::as_str).collect();
    v.sort_unstable();
    v
}

/// One response sent on an ADS stream.
#[derive(Clone, Debug)]
pub struct XdsResponse {
    /// Order of this event among all requests and responses of the server.
    pub seq: u64,
    pub stream: StreamKind,
    pub stream_id: u64,
    pub type_url: String,
    /// SotW `version_info` or delta `system_version_info`.
    pub version: String,
    pub nonce: String,
    /// (name, resource version) of the resources carried (for SotW the
    /// version is the snapshot version in which the resource last changed).
    pub resources: Vec<(String, String)>,
    /// Delta `removed_resources`.
    pub removed: Vec<String>,
}

/// The identifying fields of a node: id, cluster, user agent, client
/// features and the number of extensions.
pub fn node_summary(n: &Node) -> String {
    let version = match &n.user_agent_version_type {
        Some(UserAgentVersionType::UserAgentVersion(v)) => v.clone(),
        Some(UserAgentVersionType::UserAgentBuildVersion(b)) => {
            let v = b.version.as_ref();
            let v = v.map(|v| format!("{}.{}.{}", v.major_number, v.minor_number, v.patch));
            format!("build {}", v.unwrap_or_default())
        }
        None => "-".to_string(),
    };
    format!(
        "id={:?} cluster={:?} user_agent={:?} {version} client_features={:?} extensions={} \
         locality={} metadata={}",
        n.id,
        n.cluster,
        n.user_agent_name,
        n.client_features,
        n.extensions.len(),
        n.locality.is_some(),
        n.metadata.is_some(),
    )
}

/// Human-readable dump of a log in arrival order, for failure messages.
pub fn dump(requests: &[XdsRequest], responses: &[XdsResponse]) -> String {
    let mut lines: Vec<(u64, String)> = Vec::new();
    for r in requests {
        let err = r
            .error
            .as_deref()
            .map(|e| format!(" error(code {})={e:?}", r.error_code.unwrap_or_default()))
            .unwrap_or_default();
        let mut line = format!(
            "    <- {} nonce={:?} {}{err}",
            short(&r.type_url),
            r.response_nonce,
            r.normalised(1),
        );
        let first_of_stream = !requests
            .iter()
            .any(|o| o.stream_id == r.stream_id && o.seq < r.seq);
        if let Some(node) = r.node.as_ref().filter(|_| first_of_stream) {
            line.push_str(&format!("\n       node: {}", node_summary(node)));
        }
        lines.push((r.seq, line));
    }
    for r in responses {
        let line = format!(
            "    -> {} s{} version={:?} nonce={:?} resources={:?} removed={:?}",
            short(&r.type_url),
            r.stream_id,
            r.version,
            r.nonce,
            r.resources.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            r.removed,
        );
        lines.push((r.seq, line));
    }
    lines.sort_by_key(|(seq, _)| *seq);
    let mut out = String::new();
    for (_, line) in lines {
        out.push_str(&line);
        out.push('\n');
    }
    out
}
