//! The control plane's state: one snapshot per type URL, the connected
//! streams with what each has subscribed to (and, for delta, what each
//! client already has), and the request/response log.
//!
//! Response rules (both protocols):
//! - a type with no snapshot yet (never `set`) is not answered;
//! - SotW: a request is answered when it carries no nonce (a new stream or
//!   subscription) or when its resource names differ from the last answered
//!   subscription; ACKs and NACKs are not answered. Listeners and clusters
//!   are wildcard: the whole snapshot. Routes and endpoints: only the
//!   subscribed names, and nothing is sent when none of them exists;
//! - delta: a request is answered when it is the first for its type on the
//!   stream, or (un)subscribes names; the answer holds what changed relative
//!   to what the client has (its `initial_resource_versions`, then what was
//!   sent), and `removed_resources` for names the client has that are gone.
//!   A first wildcard request is always answered (possibly empty);
//! - `set` pushes the new snapshot to every stream subscribed to the type.

use std::collections::{BTreeMap, BTreeSet};

use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse, Resource,
};
use envoy_types::pb::google::protobuf::Any;
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::AbortHandle;
use tonic::Status;

use super::log::{is_wildcard_type, StreamKind, XdsRequest, XdsResponse};

/// One type's current resources.
pub(crate) struct Snapshot {
    pub version: String,
    /// name -> (resource version, resource). A resource's version is the
    /// snapshot version in which its bytes last changed.
    pub resources: BTreeMap<String, (String, Any)>,
}

pub(crate) enum Sender {
    Sotw(UnboundedSender<Result<DiscoveryResponse, Status>>),
    Delta(UnboundedSender<Result<DeltaDiscoveryResponse, Status>>),
}

#[derive(Default)]
struct Subscription {
    wildcard: bool,
    names: BTreeSet<String>,
    /// SotW: the subscription last answered (`None`: never answered).
    answered: Option<(bool, BTreeSet<String>)>,
    /// Delta: name -> version the client has.
    client_versions: BTreeMap<String, String>,
}

pub(crate) struct Stream {
    pub id: u64,
    sender: Sender,
    pub reader: Option<AbortHandle>,
    subs: BTreeMap<String, Subscription>,
}

#[derive(Default)]
pub(crate) struct Inner {
    pub snapshots: BTreeMap<String, Snapshot>,
    pub streams: Vec<Stream>,
    pub requests: Vec<XdsRequest>,
    pub responses: Vec<XdsResponse>,
    next_seq: u64,
    next_nonce: u64,
    next_stream: u64,
}

impl Inner {
    fn seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    /// Registers a new stream and returns its id.
    pub fn add_stream(&mut self, sender: Sender) -> u64 {
        self.next_stream += 1;
        let id = self.next_stream;
        self.streams.push(Stream {
            id,
            sender,
            reader: None,
            subs: BTreeMap::new(),
        });
        id
    }

    pub fn remove_stream(&mut self, id: u64) {
        self.streams.retain(|s| s.id != id);
    }

    pub fn has_stream(&self, id: u64) -> bool {
        self.streams.iter().any(|s| s.id == id)
    }

    fn acked_version(&self, nonce: &str) -> Option<String> {
        if nonce.is_empty() {
            return None;
        }
        self.responses
            .iter()
            .rev()
            .find(|r| r.nonce == nonce)
            .map(|r| r.version.clone())
    }

    /// Replaces `type_url`'s snapshot and pushes it to subscribed streams.
    pub fn set(&mut self, type_url: &str, version: &str, resources: Vec<(String, Any)>) {
        let old = self.snapshots.remove(type_url);
        let mut map = BTreeMap::new();
        for (name, any) in resources {
            let unchanged = old
                .as_ref()
                .and_then(|o| o.resources.get(&name))
                .filter(|(_, prev)| *prev == any)
                .map(|(v, _)| v.clone());
            let rv = unchanged.unwrap_or_else(|| version.to_string());
            map.insert(name, (rv, any));
        }
        self.snapshots.insert(
            type_url.to_string(),
            Snapshot {
                version: version.to_string(),
                resources: map,
            },
        );
        let ids: Vec<u64> = self
            .streams
            .iter()
            .filter(|s| s.subs.contains_key(type_url))
            .map(|s| s.id)
            .collect();
        for id in ids {
            self.respond(id, type_url, false);
        }
    }

    pub fn on_sotw(&mut self, id: u64, req: DiscoveryRequest) {
        let seq = self.seq();
        let acked_version = self.acked_version(&req.response_nonce);
        let (error, error_code) = match &req.error_detail {
            Some(e) => (Some(e.message.clone()), Some(e.code)),
            None => (None, None),
        };
        self.requests.push(XdsRequest {
            seq,
            stream: StreamKind::Sotw,
            stream_id: id,
            type_url: req.type_url.clone(),
            version_info: req.version_info.clone(),
            response_nonce: req.response_nonce.clone(),
            resource_names: req.resource_names.clone(),
            unsubscribe: Vec::new(),
            initial_resource_versions: BTreeMap::new(),
            error,
            error_code,
            node: req.node.clone(),
            acked_version,
        });
        let Some(stream) = self.streams.iter_mut().find(|s| s.id == id) else {
            return;
        };
        let sub = stream.subs.entry(req.type_url.clone()).or_default();
        let names: BTreeSet<String> = req.resource_names.into_iter().collect();
        sub.wildcard = is_wildcard_type(&req.type_url) && (names.is_empty() || names.contains("*"));
        sub.names = names;
        let changed = sub.answered.as_ref() != Some(&(sub.wildcard, sub.names.clone()));
        if req.response_nonce.is_empty() || changed {
            self.respond(id, &req.type_url, false);
        }
    }

    pub fn on_delta(&mut self, id: u64, req: DeltaDiscoveryRequest) {
        let seq = self.seq();
        let acked_version = self.acked_version(&req.response_nonce);
        let (error, error_code) = match &req.error_detail {
            Some(e) => (Some(e.message.clone()), Some(e.code)),
            None => (None, None),
        };
        let initial_versions: BTreeMap<String, String> = req
            .initial_resource_versions
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        self.requests.push(XdsRequest {
            seq,
            stream: StreamKind::Delta,
            stream_id: id,
            type_url: req.type_url.clone(),
            version_info: String::new(),
            response_nonce: req.response_nonce.clone(),
            resource_names: req.resource_names_subscribe.clone(),
            unsubscribe: req.resource_names_unsubscribe.clone(),
            initial_resource_versions: initial_versions.clone(),
            error,
            error_code,
            node: req.node.clone(),
            acked_version,
        });
        let Some(stream) = self.streams.iter_mut().find(|s| s.id == id) else {
            return;
        };
        let first = !stream.subs.contains_key(&req.type_url);
        let sub = stream.subs.entry(req.type_url.clone()).or_default();
        if first {
            sub.client_versions = initial_versions;
            sub.wildcard =
                is_wildcard_type(&req.type_url) && req.resource_names_subscribe.is_empty();
        }
        for name in &req.resource_names_subscribe {
            if name == "*" {
                sub.wildcard = true;
            } else {
                sub.names.insert(name.clone());
            }
        }
        for name in &req.resource_names_unsubscribe {
            if name == "*" {
                sub.wildcard = false;
            } else {
                sub.names.remove(name);
                sub.client_versions.remove(name);
            }
        }
        let force = first && sub.wildcard;
        if first
            || !req.resource_names_subscribe.is_empty()
            || !req.resource_names_unsubscribe.is_empty()
        {
            self.respond(id, &req.type_url, force);
        }
    }

    /// Sends stream `id` what it should get for `type_url` now, if anything.
    fn respond(&mut self, id: u64, type_url: &str, force: bool) {
        let Some(snap) = self.snapshots.get(type_url) else {
            return;
        };
        let Some(stream) = self.streams.iter_mut().find(|s| s.id == id) else {
            return;
        };
        let Some(sub) = stream.subs.get_mut(type_url) else {
            return;
        };
        let wanted = |name: &str| sub.wildcard || sub.names.contains(name);
        let nonce = (self.next_nonce + 1).to_string();
        let (names, removed) = match &stream.sender {
            Sender::Sotw(tx) => {
                let chosen: Vec<(&String, &(String, Any))> =
                    snap.resources.iter().filter(|(n, _)| wanted(n)).collect();
                sub.answered = Some((sub.wildcard, sub.names.clone()));
                if chosen.is_empty() && !sub.wildcard {
                    return;
                }
                let _ = tx.send(Ok(DiscoveryResponse {
                    version_info: snap.version.clone(),
                    resources: chosen.iter().map(|(_, (_, a))| a.clone()).collect(),
                    type_url: type_url.to_string(),
                    nonce: nonce.clone(),
                    ..Default::default()
                }));
                let names = chosen.iter().map(|(n, (v, _))| ((*n).clone(), v.clone()));
                (names.collect(), Vec::new())
            }
            Sender::Delta(tx) => {
                let added: Vec<Resource> = snap
                    .resources
                    .iter()
                    .filter(|(n, (v, _))| wanted(n) && sub.client_versions.get(*n) != Some(v))
                    .map(|(n, (v, a))| Resource {
                        name: n.clone(),
                        version: v.clone(),
                        resource: Some(a.clone()),
                        ..Default::default()
                    })
                    .collect();
                let removed: Vec<String> = sub
                    .client_versions
                    .keys()
                    .filter(|n| !snap.resources.contains_key(*n))
                    .cloned()
                    .collect();
                if added.is_empty() && removed.is_empty() && !force {
                    return;
                }
                for r in &added {
                    sub.client_versions
                        .insert(r.name.clone(), r.version.clone());
                }
                for n in &removed {
                    sub.client_versions.remove(n);
                }
                let names = added
                    .iter()
                    .map(|r| (r.name.clone(), r.version.clone()))
                    .collect();
                let _ = tx.send(Ok(DeltaDiscoveryResponse {
                    system_version_info: snap.version.clone(),
                    resources: added,
                    type_url: type_url.to_string(),
                    removed_resources: removed.clone(),
                    nonce: nonce.clone(),
                    ..Default::default()
                }));
                (names, removed)
            }
        };
        let kind = match stream.sender {
            Sender::Sotw(_) => StreamKind::Sotw,
            Sender::Delta(_) => StreamKind::Delta,
        };
        let version = snap.version.clone();
        self.next_nonce += 1;
        let seq = self.seq();
        self.responses.push(XdsResponse {
            seq,
            stream: kind,
            stream_id: id,
            type_url: type_url.to_string(),
            version,
            nonce,
            resources: names,
            removed,
        });
    }
}
