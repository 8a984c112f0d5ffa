//! The generic part of applying a response: decoding and checking one resource, the
//! state-of-the-world merge that keeps last good versions, change counting and stats.

use super::Accepted;
use crate::config::support;
use envoy_types::pb::google::protobuf::Any;
use prost::Message;
use std::collections::BTreeMap;
use std::time::SystemTime;

/// A resource decoded and checked against what Ferry supports.
pub(super) struct Decoded<T> {
    pub name: String,
    pub typed: T,
    pub raw: Vec<u8>,
}

/// `Err((name if known, message))`.
///
/// A resource whose encoding equals `known(name)` (what is in force) is not checked again:
/// pushes that repeat thousands of unchanged resources stay cheap.
pub(super) fn decode<'a, T: Message + Default>(
    any: &Any,
    want: &str,
    kind: &str,
    name_of: fn(&T) -> &str,
    known: impl Fn(&str) -> Option<&'a [u8]>,
) -> Result<Decoded<T>, (Option<String>, String)> {
    if any.type_url != want {
        return Err((None, format!("{kind}: unexpected type {}", any.type_url)));
    }
    // A TypedStruct inside is turned into the message it names first (the NACK names the
    // resource, which the encoding as sent already tells).
    let normalized = if crate::config::typed_struct::may_hold(&any.value) {
        let named = |e: crate::config::ConfigError| match T::decode(any.value.as_slice()) {
            Ok(t) => {
                let n = name_of(&t).to_string();
                (Some(n.clone()), format!("{kind} '{n}': {e}"))
            }
            Err(_) => (None, format!("{kind}: {e}")),
        };
        let mut d = support::decode_any(want, &any.value, "").map_err(named)?;
        crate::config::typed_struct::normalize(&mut d, "").map_err(named)?;
        Some(prost::Message::encode_to_vec(&d))
    } else {
        None
    };
    let bytes = normalized.as_deref().unwrap_or(any.value.as_slice());
    let typed = T::decode(bytes).map_err(|e| (None, format!("{kind}: cannot decode: {e}")))?;
    let name = name_of(&typed).to_string();
    if known(&name) == Some(any.value.as_slice()) {
        let raw = any.value.clone();
        return Ok(Decoded { name, typed, raw });
    }
    let fail =
        |e: crate::config::ConfigError| (Some(name.clone()), format!("{kind} '{name}': {e}"));
    let dynamic = support::decode_any(want, bytes, "").map_err(fail)?;
    support::check(&dynamic, "").map_err(fail)?;
    Ok(Decoded {
        name,
        typed,
        raw: any.value.clone(),
    })
}

pub(super) fn accepted<T>(value: T, d_raw: Vec<u8>, version: &str) -> Accepted<T> {
    Accepted {
        value,
        raw: d_raw,
        version: version.to_string(),
        updated: SystemTime::now(),
    }
}

/// Charges a response to its subscription's stats and turns the errors into the NACK.
pub(super) fn finish(
    stats: &super::stats::SubStats,
    version: &str,
    changed: bool,
    empty: bool,
    errors: Vec<String>,
) -> Result<(), String> {
    stats.response(errors.is_empty(), version, changed, empty);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

/// Which names were added, modified (present in both with another encoding) and removed.
pub(super) fn diff<T>(
    old: &BTreeMap<String, Accepted<T>>,
    new: &BTreeMap<String, Accepted<T>>,
) -> (usize, usize, usize) {
    let added = new.keys().filter(|k| !old.contains_key(*k)).count();
    let removed = old.keys().filter(|k| !new.contains_key(*k)).count();
    let modified = new
        .iter()
        .filter(|(k, v)| old.get(*k).is_some_and(|o| o.raw != v.raw))
        .count();
    (added, modified, removed)
}

/// A wildcard type's state of the world: every resource of the response is decoded, checked
/// and converted on its own. One that fails keeps its last good version (a bad resource never
/// takes good ones down); one whose encoding is unchanged keeps its runtime state. `reserved`
/// names (static resources) cannot be replaced. Returns the next set and the errors.
#[allow(clippy::too_many_arguments)]
pub(super) fn sotw<P: Message + Default, T: Clone>(
    current: &BTreeMap<String, Accepted<T>>,
    resources: &[Any],
    type_url: &str,
    kind: &str,
    name_of: fn(&P) -> &str,
    reserved: impl Fn(&str) -> bool,
    version: &str,
    mut convert: impl FnMut(&P) -> Result<T, crate::config::ConfigError>,
) -> (BTreeMap<String, Accepted<T>>, Vec<String>) {
    let mut errors = Vec::new();
    let mut next = BTreeMap::new();
    let keep_old = |next: &mut BTreeMap<String, Accepted<T>>, name: &str| {
        if let Some(old) = current.get(name) {
            next.insert(name.to_string(), old.clone());
        }
    };
    for any in resources {
        let known = |n: &str| current.get(n).map(|o| o.raw.as_slice());
        let d = match decode::<P>(any, type_url, kind, name_of, known) {
            Ok(d) => d,
            Err((name, e)) => {
                errors.push(e);
                if let Some(n) = name {
                    keep_old(&mut next, &n);
                }
                continue;
            }
        };
        if reserved(&d.name) {
            errors.push(format!(
                "{kind} '{}': a static {} of that name exists",
                d.name,
                kind.to_lowercase()
            ));
            continue;
        }
        if let Some(old) = current.get(&d.name).filter(|o| o.raw == d.raw) {
            next.insert(d.name, old.clone());
            continue;
        }
        match convert(&d.typed) {
            Ok(v) => {
                next.insert(d.name, accepted(v, d.raw, version));
            }
            Err(e) => {
                errors.push(format!("{kind} '{}': {e}", d.name));
                keep_old(&mut next, &d.name);
            }
        }
    }
    (next, errors)
}

/// Decodes, checks and converts one resource exactly as an ADS response's would be, without
/// applying it: the xDS fuzz target's way in. `Err`: the reason it would be NACKed.
pub fn validate(any: &Any) -> Result<(), String> {
    use crate::config::cluster::{endpoints, Cluster, Discovery};
    use crate::config::listener::Listener;
    use crate::config::route::RouteTable;
    use envoy_types::pb::envoy::config::route::v3 as r;
    use envoy_types::pb::envoy::config::{cluster::v3 as c, endpoint::v3 as e, listener::v3 as l};
    use ferry_xds::ads;
    let none = |_: &str| None;
    let err = |(_, e): (Option<String>, String)| e;
    let conv = |e: crate::config::ConfigError| e.to_string();
    match any.type_url.as_str() {
        ads::LISTENER => {
            let d = decode::<l::Listener>(any, ads::LISTENER, "Listener", |x| &x.name, none)
                .map_err(err)?;
            Listener::from_proto(&d.typed, "").map(drop).map_err(conv)
        }
        ads::CLUSTER => {
            let d = decode::<c::Cluster>(any, ads::CLUSTER, "Cluster", |x| &x.name, none)
                .map_err(err)?;
            Cluster::from_proto(&d.typed, "").map(drop).map_err(conv)
        }
        ads::ROUTE => {
            let d = decode::<r::RouteConfiguration>(any, ads::ROUTE, "Route", |x| &x.name, none)
                .map_err(err)?;
            RouteTable::from_proto(&d.typed, "").map(drop).map_err(conv)
        }
        ads::ENDPOINT => {
            let d = decode::<e::ClusterLoadAssignment>(
                any,
                ads::ENDPOINT,
                "ClusterLoadAssignment",
                |x| &x.cluster_name,
                none,
            )
            .map_err(err)?;
            endpoints(&d.typed, Discovery::Eds, "")
                .map(drop)
                .map_err(conv)
        }
        other => Err(format!("unexpected type {other}")),
    }
}
