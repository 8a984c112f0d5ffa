//! Istio's TCP metadata exchange (`envoy.tcp.metadataexchange.config.MetadataExchange`): when
//! the TLS handshake settled on its ALPN protocol (`istio-peer-exchange`), each side sends one
//! frame at the front of its byte stream — a magic number, a length and a
//! `google.protobuf.Any` holding a Struct with `x-envoy-peer-metadata` (the workload) and
//! `x-envoy-peer-metadata-id` (the node id) — and takes the other side's frame off the front
//! of what it reads, so that neither application sees them. A stream that does not start
//! with the magic number is passed on as it is.

use super::Workload;
use crate::config::{any_to, err, Result};
use envoy_types::pb::google::protobuf::{value::Kind, Any, Struct, Value};
use std::sync::{Arc, Mutex};

const MAGIC: u32 = 0x3D23_0467;
const STRUCT_URL: &str = "type.googleapis.com/google.protobuf.Struct";
/// Larger frames are not Istio's: the stream is passed on.
const MAX_FRAME: usize = 1 << 20;

/// `envoy.tcp.metadataexchange.config.MetadataExchange`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MetadataExchange {
    #[prost(string, tag = "1")]
    pub protocol: String,
    #[prost(bool, tag = "2")]
    pub enable_discovery: bool,
    #[prost(string, repeated, tag = "3")]
    pub additional_labels: Vec<String>,
}

impl prost::Name for MetadataExchange {
    const NAME: &'static str = "MetadataExchange";
    const PACKAGE: &'static str = "envoy.tcp.metadataexchange.config";
    fn type_url() -> String {
        "type.googleapis.com/envoy.tcp.metadataexchange.config.MetadataExchange".into()
    }
}

pub const TYPE: &str = "envoy.tcp.metadataexchange.config.MetadataExchange";

/// The exchange's configuration: the ALPN protocol that turns it on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MxCfg {
    pub protocol: Vec<u8>,
}

impl MxCfg {
    pub fn from_any(any: &Any, path: &str) -> Result<MxCfg> {
        let m: MetadataExchange = any_to(any, path)?;
        if m.protocol.is_empty() {
            return err(&format!("{path}.protocol"), "protocol is required");
        }
        if !m.additional_labels.is_empty() {
            return err(
                &format!("{path}.additional_labels"),
                "additional labels are not supported by Ferry",
            );
        }
        // `enable_discovery` looks peers up in workload discovery, which Ferry does not
        // subscribe to: the lookup finds nothing, as in Envoy without that extension.
        Ok(MxCfg {
            protocol: m.protocol.into_bytes(),
        })
    }
}

/// This proxy's frame.
pub fn frame() -> Vec<u8> {
    let local = super::local();
    let mut s = Struct::default();
    s.fields.insert(
        "x-envoy-peer-metadata".into(),
        Value {
            kind: Some(Kind::StructValue(local.workload.to_struct())),
        },
    );
    s.fields.insert(
        "x-envoy-peer-metadata-id".into(),
        Value {
            kind: Some(Kind::StringValue(local.id.clone())),
        },
    );
    let any = Any {
        type_url: STRUCT_URL.into(),
        value: prost::Message::encode_to_vec(&s),
    };
    let payload = prost::Message::encode_to_vec(&any);
    let mut out = Vec::with_capacity(8 + payload.len());
    out.extend_from_slice(&MAGIC.to_be_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&payload);
    out
}

/// What the front of a stream holds.
#[derive(Debug, PartialEq)]
pub enum Front {
    /// Not enough bytes yet to tell.
    NeedMore,
    /// A frame of this many bytes, with the peer it names (none if it did not decode).
    Frame(usize, Option<Box<Workload>>),
    /// Not a frame: the bytes are the application's.
    NotMx,
}

pub fn parse(buf: &[u8]) -> Front {
    if buf.len() < 8 {
        return if MAGIC.to_be_bytes().starts_with(buf) {
            Front::NeedMore
        } else {
            Front::NotMx
        };
    }
    if buf[..4] != MAGIC.to_be_bytes() {
        return Front::NotMx;
    }
    let len = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]) as usize;
    if len > MAX_FRAME {
        return Front::NotMx;
    }
    if buf.len() < 8 + len {
        return Front::NeedMore;
    }
    let peer = <Any as prost::Message>::decode(&buf[8..8 + len])
        .ok()
        .filter(|a| a.type_url == STRUCT_URL)
        .and_then(|a| <Struct as prost::Message>::decode(a.value.as_slice()).ok())
        .and_then(
            |s| match s.fields.get("x-envoy-peer-metadata")?.kind.as_ref()? {
                Kind::StructValue(w) => Some(Box::new(Workload::from_struct(w))),
                _ => None,
            },
        );
    Front::Frame(8 + len, peer)
}

/// Where one direction's reader leaves the peer it found: `Some(None)` once it knows there is
/// none.
pub type PeerSlot = Arc<Mutex<Option<Option<Box<Workload>>>>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_other_bytes_pass() {
        super::super::set_local("sidecar~1", None);
        let f = frame();
        assert_eq!(parse(&f[..3]), Front::NeedMore);
        assert_eq!(parse(&f[..10]), Front::NeedMore);
        match parse(&f) {
            Front::Frame(n, Some(_)) => assert_eq!(n, f.len()),
            other => panic!("{other:?}"),
        }
        assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Front::NotMx);
        assert_eq!(parse(b"\x3d\x23"), Front::NeedMore);
        assert_eq!(parse(b"\x3d\x24"), Front::NotMx);
    }
}
