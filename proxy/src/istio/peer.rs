//! The HTTP `istio.metadata_exchange` filter (`io.istio.http.peer_metadata.Config`): each side
//! learns the other's workload from the `x-envoy-peer-metadata` header (a base64-encoded
//! `google.protobuf.Struct`) and its id from `x-envoy-peer-metadata-id`. The client adds its
//! own to the request; the server takes them off the request and answers with its own when
//! the request carried them; the client takes the server's off the response. Neither the
//! application nor the peer beyond sees the headers of the other hop.

use super::proto::{Discovery, PeerMetadata, Propagation};
use super::Workload;
use crate::config::{err, Result};
use http::{HeaderMap, HeaderName};

pub static HEADER: HeaderName = HeaderName::from_static("x-envoy-peer-metadata");
pub static HEADER_ID: HeaderName = HeaderName::from_static("x-envoy-peer-metadata-id");

#[derive(Debug, Clone, Copy, Default)]
pub struct PeerMetadataCfg {
    /// Learn the downstream peer from the request headers.
    pub downstream_headers: bool,
    /// Learn the upstream peer from the response headers.
    pub upstream_headers: bool,
    /// Answer with this workload's headers (when the request carried the peer's).
    pub downstream_propagation: bool,
    /// Send this workload's headers upstream.
    pub upstream_propagation: bool,
    /// …except to external destinations (`PassthroughCluster`).
    pub skip_external: bool,
}

impl PeerMetadataCfg {
    /// The older Wasm `envoy.wasm.metadata_exchange` plugin: headers both ways, both sides.
    pub fn exchange_all() -> PeerMetadataCfg {
        PeerMetadataCfg {
            downstream_headers: true,
            upstream_headers: true,
            downstream_propagation: true,
            upstream_propagation: true,
            skip_external: false,
        }
    }

    pub fn from_proto(c: &PeerMetadata, path: &str) -> Result<PeerMetadataCfg> {
        let mut cfg = PeerMetadataCfg::default();
        for (field, list, headers) in [
            (
                "downstream_discovery",
                &c.downstream_discovery,
                &mut cfg.downstream_headers,
            ),
            (
                "upstream_discovery",
                &c.upstream_discovery,
                &mut cfg.upstream_headers,
            ),
        ] {
            for (i, m) in list.iter().enumerate() {
                match &m.method {
                    Some(Discovery::IstioHeaders(_)) => *headers = true,
                    // Workload discovery needs the workload_discovery bootstrap extension,
                    // which Ferry refuses: without it the lookup finds nothing, as in Envoy.
                    Some(Discovery::WorkloadDiscovery(_)) => {}
                    Some(Discovery::Baggage(_)) => {
                        return err(
                            &format!("{path}.{field}[{i}].baggage"),
                            "baggage discovery is not supported by Ferry",
                        )
                    }
                    None => return err(&format!("{path}.{field}[{i}]"), "a method is required"),
                }
            }
        }
        for (list, on) in [
            (&c.downstream_propagation, &mut cfg.downstream_propagation),
            (&c.upstream_propagation, &mut cfg.upstream_propagation),
        ] {
            for m in list {
                if let Some(Propagation::IstioHeaders(h)) = &m.method {
                    *on = true;
                    cfg.skip_external |= h.skip_external_clusters;
                }
            }
        }
        if !c.additional_labels.is_empty() {
            return err(
                &format!("{path}.additional_labels"),
                "additional labels are not supported by Ferry",
            );
        }
        Ok(cfg)
    }
}

/// What the request carried: the peer, and which of the two headers were there.
#[derive(Debug, Default)]
pub struct Seen {
    pub peer: Option<Box<Workload>>,
    pub had_id: bool,
    pub had_metadata: bool,
}

/// Takes both headers off `h`, decoding the peer's workload.
pub fn take(h: &mut HeaderMap) -> Seen {
    let id = h.remove(&HEADER_ID);
    let md = h.remove(&HEADER);
    let peer = md
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .and_then(crate::util::base64_decode)
        .and_then(|b| {
            <envoy_types::pb::google::protobuf::Struct as prost::Message>::decode(b.as_slice()).ok()
        })
        .map(|s| Box::new(Workload::from_struct(&s)));
    Seen {
        peer,
        had_id: id.is_some(),
        had_metadata: md.is_some(),
    }
}

/// The request side: the downstream peer taken off the request, this workload's headers
/// added for the upstream.
pub fn on_request(cfg: &PeerMetadataCfg, h: &mut HeaderMap) -> Seen {
    let seen = if cfg.downstream_headers {
        take(h)
    } else {
        Seen::default()
    };
    if cfg.upstream_propagation {
        announce(h, true, true);
    }
    seen
}

/// The response side: the upstream peer taken off the response, this workload's headers
/// added for the downstream that sent its own. Returns (downstream peer, upstream peer).
pub fn on_response(
    cfg: &PeerMetadataCfg,
    down: Seen,
    h: &mut HeaderMap,
) -> (Option<Box<Workload>>, Option<Box<Workload>>) {
    let up = if cfg.upstream_headers {
        take(h).peer
    } else {
        None
    };
    if cfg.downstream_propagation {
        announce(h, down.had_id, down.had_metadata);
    }
    (down.peer, up)
}

/// Adds this workload's headers (`id`, `metadata`: which ones).
pub fn announce(h: &mut HeaderMap, id: bool, metadata: bool) {
    let local = super::local();
    if id {
        h.insert(HEADER_ID.clone(), local.header_id.clone());
    }
    if metadata {
        h.insert(HEADER.clone(), local.header.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip() {
        let w = Workload {
            name: "productpage-v1-1".into(),
            namespace: "default".into(),
            workload: "productpage-v1".into(),
            cluster: "Kubernetes".into(),
            app: "productpage".into(),
            version: "v1".into(),
            canonical_name: "productpage".into(),
            canonical_revision: "v1".into(),
            ..Workload::default()
        };
        let bytes = prost::Message::encode_to_vec(&w.to_struct());
        let mut h = HeaderMap::new();
        h.insert(
            HEADER.clone(),
            http::HeaderValue::from_str(&crate::util::base64_encode(&bytes)).expect("value"),
        );
        h.insert(
            HEADER_ID.clone(),
            http::HeaderValue::from_static("sidecar~1"),
        );
        let seen = take(&mut h);
        assert!(h.is_empty());
        assert!(seen.had_id && seen.had_metadata);
        assert_eq!(seen.peer.as_deref(), Some(&w));
    }
}
