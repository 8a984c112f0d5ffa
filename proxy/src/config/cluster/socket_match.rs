//! `transport_socket_matches`: a transport socket per endpoint, picked by the endpoint's (or
//! its locality's) `envoy.transport_socket_match` metadata. Istio's auto mTLS rests on it:
//! endpoints labelled `tlsMode: istio` get mutual TLS, the others plaintext.

use super::super::tls::{transport_socket_any, UpstreamTls, UPSTREAM};
use super::super::{err, Result};
use envoy_types::pb::envoy::config::cluster::v3::cluster::TransportSocketMatch;
use envoy_types::pb::envoy::config::core::v3::Metadata;
use envoy_types::pb::google::protobuf::{value::Kind, Struct, Value};
use std::sync::Arc;

/// The metadata namespace endpoints are matched on.
pub const NAMESPACE: &str = "envoy.transport_socket_match";

/// Key and value pairs, each value in a canonical form that keeps its type (so `1` and `"1"`
/// differ, as Envoy compares protobuf values), sorted by key.
pub type Labels = Arc<[(String, String)]>;

/// One entry of `transport_socket_matches`.
#[derive(Debug, Clone)]
pub struct SocketMatch {
    /// Its name, in `cluster.<name>.<match>.total_match_count`.
    pub name: String,
    /// What an endpoint's labels must all contain (empty: any endpoint).
    pub criteria: Labels,
    /// TLS, or none for a plaintext (`raw_buffer`) socket.
    pub tls: Option<UpstreamTls>,
}

/// The cluster's `transport_socket_matches`, checked.
pub fn socket_matches(ms: &[TransportSocketMatch], path: &str) -> Result<Vec<SocketMatch>> {
    let mut out = Vec::with_capacity(ms.len());
    for (i, m) in ms.iter().enumerate() {
        let mp = format!("{path}.transport_socket_matches[{i}]");
        if m.name.is_empty() {
            return err(
                &format!("{mp}.name"),
                "value length must be at least 1 characters",
            );
        }
        let tp = format!("{mp}.transport_socket");
        let tls = transport_socket_any(&m.transport_socket, &tp, UPSTREAM)?
            .map(|any| UpstreamTls::from_any(any, &format!("{tp}.typed_config")))
            .transpose()?;
        out.push(SocketMatch {
            name: m.name.clone(),
            criteria: struct_labels(m.r#match.as_ref()),
            tls,
        });
    }
    Ok(out)
}

/// An endpoint's or locality's labels under [`NAMESPACE`], if it has any.
pub fn labels(md: Option<&Metadata>) -> Option<Labels> {
    md?.filter_metadata
        .get(NAMESPACE)
        .map(|s| struct_labels(Some(s)))
}

fn struct_labels(s: Option<&Struct>) -> Labels {
    let mut v: Vec<(String, String)> = s
        .map(|s| {
            s.fields
                .iter()
                .map(|(k, v)| (k.clone(), canonical(v)))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v.into()
}

/// A value written out with its type, structs with sorted keys.
fn canonical(v: &Value) -> String {
    let mut out = String::new();
    write_value(v, &mut out);
    out
}

fn write_value(v: &Value, out: &mut String) {
    use std::fmt::Write;
    match &v.kind {
        None | Some(Kind::NullValue(_)) => out.push('z'),
        Some(Kind::NumberValue(n)) => {
            let _ = write!(out, "n{n:?}");
        }
        Some(Kind::StringValue(s)) => {
            let _ = write!(out, "s{}:{s}", s.len());
        }
        Some(Kind::BoolValue(b)) => out.push(if *b { 'T' } else { 'F' }),
        Some(Kind::StructValue(s)) => {
            let mut keys: Vec<&String> = s.fields.keys().collect();
            keys.sort();
            out.push('{');
            for k in keys {
                let _ = write!(out, "{}:{k}=", k.len());
                write_value(&s.fields[k], out);
                out.push(',');
            }
            out.push('}');
        }
        Some(Kind::ListValue(l)) => {
            out.push('[');
            for v in &l.values {
                write_value(v, out);
                out.push(',');
            }
            out.push(']');
        }
    }
}

/// Whether `labels` has every pair of `criteria` (empty criteria match anything, even an
/// endpoint without labels).
fn matches(criteria: &[(String, String)], labels: Option<&Labels>) -> bool {
    criteria.is_empty()
        || labels.is_some_and(|l| {
            criteria.iter().all(|c| {
                l.binary_search_by(|p| p.0.cmp(&c.0))
                    .is_ok_and(|i| l[i].1 == c.1)
            })
        })
}

/// The match an endpoint takes, Envoy's way: the first whose criteria its own labels meet,
/// else the first its locality's labels meet; `None`: the cluster's `transport_socket`.
pub fn resolve(
    ms: &[SocketMatch],
    endpoint: Option<&Labels>,
    locality: Option<&Labels>,
) -> Option<usize> {
    ms.iter()
        .position(|m| matches(&m.criteria, endpoint))
        .or_else(|| locality.and_then(|_| ms.iter().position(|m| matches(&m.criteria, locality))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(pairs: &[(&str, Value)]) -> Struct {
        Struct {
            fields: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        }
    }

    fn string(v: &str) -> Value {
        Value {
            kind: Some(Kind::StringValue(v.into())),
        }
    }

    fn sm(name: &str, criteria: Struct) -> SocketMatch {
        SocketMatch {
            name: name.into(),
            criteria: struct_labels(Some(&criteria)),
            tls: None,
        }
    }

    #[test]
    fn istio_auto_mtls_matches() {
        let ms = [
            sm("tlsMode-istio", s(&[("tlsMode", string("istio"))])),
            sm("tlsMode-disabled", s(&[])),
        ];
        let istio = struct_labels(Some(&s(&[("tlsMode", string("istio"))])));
        let other = struct_labels(Some(&s(&[("tlsMode", string("disabled"))])));
        assert_eq!(resolve(&ms, Some(&istio), None), Some(0));
        assert_eq!(resolve(&ms, Some(&other), None), Some(1));
        assert_eq!(resolve(&ms, None, None), Some(1));
    }

    #[test]
    fn types_count_and_locality_is_second() {
        let one = Value {
            kind: Some(Kind::NumberValue(1.0)),
        };
        let ms = [sm("num", s(&[("v", one.clone())]))];
        let as_string = struct_labels(Some(&s(&[("v", string("1"))])));
        let as_number = struct_labels(Some(&s(&[("v", one)])));
        assert_eq!(resolve(&ms, Some(&as_string), None), None);
        assert_eq!(resolve(&ms, Some(&as_number), None), Some(0));
        assert_eq!(resolve(&ms, Some(&as_string), Some(&as_number)), Some(0));
        assert_eq!(resolve(&ms, None, None), None);
    }
}
