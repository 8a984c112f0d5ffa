//! Istio's telemetry, implemented natively where istio-proxy (a patched Envoy) has extensions
//! of its own: the workload identities of this proxy (its node metadata) and of its peers
//! (exchanged in `x-envoy-peer-metadata` headers), and the `istio.stats` metrics
//! (`istio_requests_total`, …) with Istio's standard labels.

pub mod alpn;
pub mod mx;
pub mod peer;
pub mod proto;
pub mod stats;
pub mod tcp;
pub mod wasm;

use envoy_types::pb::google::protobuf::{value::Kind, Struct};
use std::sync::OnceLock;

/// A workload as Istio's telemetry names it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Workload {
    /// The pod (`NAME`).
    pub name: String,
    pub namespace: String,
    /// `WORKLOAD_NAME` (the deployment, …).
    pub workload: String,
    /// `CLUSTER_ID`.
    pub cluster: String,
    pub app: String,
    pub version: String,
    pub canonical_name: String,
    pub canonical_revision: String,
    /// `OWNER` (`kubernetes://apis/apps/v1/namespaces/<ns>/deployments/<name>`).
    pub owner: String,
    pub identity: String,
}

const CANONICAL_NAME: &str = "service.istio.io/canonical-name";
const CANONICAL_REVISION: &str = "service.istio.io/canonical-revision";

fn string<'a>(s: &'a Struct, key: &str) -> &'a str {
    match s.fields.get(key).and_then(|v| v.kind.as_ref()) {
        Some(Kind::StringValue(v)) => v,
        _ => "",
    }
}

impl Workload {
    /// From Istio's node metadata map (the same keys the peer header carries).
    pub fn from_struct(s: &Struct) -> Workload {
        let labels = match s.fields.get("LABELS").and_then(|v| v.kind.as_ref()) {
            Some(Kind::StructValue(l)) => Some(l),
            _ => None,
        };
        let label = |k: &str| labels.map_or("", |l| string(l, k)).to_string();
        let first = |a: String, b: String| if a.is_empty() { b } else { a };
        Workload {
            name: string(s, "NAME").to_string(),
            namespace: string(s, "NAMESPACE").to_string(),
            workload: string(s, "WORKLOAD_NAME").to_string(),
            cluster: string(s, "CLUSTER_ID").to_string(),
            app: first(label("app.kubernetes.io/name"), label("app")),
            version: first(label("app.kubernetes.io/version"), label("version")),
            canonical_name: label(CANONICAL_NAME),
            canonical_revision: label(CANONICAL_REVISION),
            owner: string(s, "OWNER").to_string(),
            identity: string(s, "IDENTITY").to_string(),
        }
    }

    /// The Struct this workload sends to its peers: the keys Istio's exchange carries, each
    /// only when set, and its labels.
    pub fn to_struct(&self) -> Struct {
        use envoy_types::pb::google::protobuf::Value;
        let sv = |v: &str| Value {
            kind: Some(Kind::StringValue(v.to_string())),
        };
        let mut s = Struct::default();
        for (k, v) in [
            ("NAME", &self.name),
            ("NAMESPACE", &self.namespace),
            ("WORKLOAD_NAME", &self.workload),
            ("CLUSTER_ID", &self.cluster),
            ("IDENTITY", &self.identity),
            ("OWNER", &self.owner),
        ] {
            if !v.is_empty() {
                s.fields.insert(k.to_string(), sv(v));
            }
        }
        let mut labels = Struct::default();
        for (k, v) in [
            (CANONICAL_NAME, &self.canonical_name),
            (CANONICAL_REVISION, &self.canonical_revision),
            ("app", &self.app),
            ("version", &self.version),
        ] {
            if !v.is_empty() {
                labels.fields.insert(k.to_string(), sv(v));
            }
        }
        s.fields.insert(
            "LABELS".into(),
            Value {
                kind: Some(Kind::StructValue(labels)),
            },
        );
        s
    }
}

/// This proxy: its node id, workload and Istio version, and the headers it announces itself
/// with.
#[derive(Debug)]
pub struct Local {
    pub id: String,
    pub workload: Workload,
    pub istio_version: String,
    /// `x-envoy-peer-metadata`: the workload Struct, serialized and base64-encoded.
    pub header: http::HeaderValue,
    /// `x-envoy-peer-metadata-id`: the node id.
    pub header_id: http::HeaderValue,
}

static LOCAL: OnceLock<Local> = OnceLock::new();

/// Records the node (once, at start-up).
pub fn set_local(id: &str, metadata: Option<&Struct>) {
    let workload = metadata.map(Workload::from_struct).unwrap_or_default();
    let istio_version = metadata
        .map(|m| string(m, "ISTIO_VERSION").to_string())
        .unwrap_or_default();
    let encoded = crate::util::base64_encode(&prost::Message::encode_to_vec(&workload.to_struct()));
    let local = Local {
        id: id.to_string(),
        header: http::HeaderValue::from_str(&encoded)
            .unwrap_or_else(|_| http::HeaderValue::from_static("")),
        header_id: http::HeaderValue::from_str(id)
            .unwrap_or_else(|_| http::HeaderValue::from_static("")),
        workload,
        istio_version,
    };
    let _ = LOCAL.set(local);
}

pub fn local() -> &'static Local {
    static EMPTY: OnceLock<Local> = OnceLock::new();
    LOCAL.get().unwrap_or_else(|| {
        EMPTY.get_or_init(|| Local {
            id: String::new(),
            workload: Workload::default(),
            istio_version: String::new(),
            header: http::HeaderValue::from_static(""),
            header_id: http::HeaderValue::from_static(""),
        })
    })
}

/// The service a cluster serves, from its Istio metadata: host, name and namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub host: String,
    /// The `name`, else the host up to its first dot.
    pub name: String,
    pub namespace: String,
}

impl Service {
    /// `{"services": [{"host": …, "name": …, "namespace": …}, …]}`: the first service.
    pub fn from_metadata(istio: &Struct) -> Option<Service> {
        let Some(Kind::ListValue(list)) =
            istio.fields.get("services").and_then(|v| v.kind.as_ref())
        else {
            return None;
        };
        let Some(Kind::StructValue(first)) = list.values.first().and_then(|v| v.kind.as_ref())
        else {
            return None;
        };
        let host = string(first, "host").to_string();
        let name = match string(first, "name") {
            "" => host.split('.').next().unwrap_or("").to_string(),
            n => n.to_string(),
        };
        Some(Service {
            namespace: string(first, "namespace").to_string(),
            host,
            name,
        })
    }
}
