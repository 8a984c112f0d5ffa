//! Incremental xDS (`DeltaAggregatedResources`): the client keeps the resources it has by
//! name and version, subscribes and unsubscribes by name (wildcard for listeners and
//! clusters), sends `initial_resource_versions` on reconnect, and hands the handler the same
//! complete view a state-of-the-world response would give.

use crate::ads::{after, before, connect, AdsConfig, Cmd, Handler, StreamEnd};
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse,
};
use envoy_types::pb::google::protobuf::Any;
use envoy_types::pb::google::rpc::Status;
use std::collections::{BTreeMap, BTreeSet};
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;

#[derive(Default)]
struct TypeState {
    /// `None`: wildcard.
    names: Option<BTreeSet<String>>,
    /// What the client holds: name → (version, resource).
    have: BTreeMap<String, (String, Any)>,
}

pub(crate) struct Client {
    pub(crate) cfg: AdsConfig,
    states: BTreeMap<String, TypeState>,
    order: Vec<String>,
}

impl Client {
    pub(crate) fn new(cfg: AdsConfig) -> Client {
        let order: Vec<String> = cfg.wildcard.iter().map(|t| t.to_string()).collect();
        let states = order
            .iter()
            .map(|t| (t.clone(), TypeState::default()))
            .collect();
        Client { cfg, states, order }
    }

    fn initial(&self, type_url: &str, first: bool) -> DeltaDiscoveryRequest {
        let st = &self.states[type_url];
        DeltaDiscoveryRequest {
            node: (first || !self.cfg.node_on_first_only).then(|| self.cfg.node.clone()),
            type_url: type_url.to_string(),
            resource_names_subscribe: st.names.iter().flatten().cloned().collect(),
            initial_resource_versions: st
                .have
                .iter()
                .map(|(n, (v, _))| (n.clone(), v.clone()))
                .collect(),
            ..Default::default()
        }
    }

    pub(crate) fn wildcard(&mut self, type_url: String) -> bool {
        if self.order.contains(&type_url) {
            return false;
        }
        self.order.push(type_url.clone());
        self.states.insert(type_url, TypeState::default());
        true
    }

    /// The request that moves a subscription to `names`, if it changes.
    pub(crate) fn subscribe(
        &mut self,
        type_url: String,
        names: BTreeSet<String>,
    ) -> Option<DeltaDiscoveryRequest> {
        if !self.order.contains(&type_url) {
            self.order.push(type_url.clone());
        }
        let st = self.states.entry(type_url.clone()).or_default();
        let old = st.names.clone().unwrap_or_default();
        if st.names.as_ref() == Some(&names) {
            return None;
        }
        let sub: Vec<String> = names.difference(&old).cloned().collect();
        let unsub: Vec<String> = old.difference(&names).cloned().collect();
        for n in &unsub {
            st.have.remove(n);
        }
        st.names = Some(names);
        Some(DeltaDiscoveryRequest {
            node: (!self.cfg.node_on_first_only).then(|| self.cfg.node.clone()),
            type_url,
            resource_names_subscribe: sub,
            resource_names_unsubscribe: unsub,
            ..Default::default()
        })
    }

    /// Applies a response to what the client holds; returns the complete current set.
    fn absorb(&mut self, resp: &DeltaDiscoveryResponse) -> Vec<Any> {
        let st = self.states.entry(resp.type_url.clone()).or_default();
        for r in &resp.resources {
            if let Some(any) = &r.resource {
                st.have
                    .insert(r.name.clone(), (r.version.clone(), any.clone()));
            }
        }
        for name in &resp.removed_resources {
            st.have.remove(name);
        }
        st.have.values().map(|(_, a)| a.clone()).collect()
    }
}

pub(crate) async fn stream_once(
    client: &mut Client,
    handler: &dyn Handler,
    cmds: &mut mpsc::UnboundedReceiver<Cmd>,
) -> Result<(), StreamEnd> {
    let mut grpc = connect(&client.cfg).await?;
    let (tx, rx) = mpsc::unbounded_channel::<DeltaDiscoveryRequest>();
    for (i, t) in client.order.iter().enumerate() {
        let _ = tx.send(client.initial(t, i == 0));
    }
    let mut inbound = grpc
        .delta_aggregated_resources(UnboundedReceiverStream::new(rx))
        .await
        .map_err(|s| before(format!("open stream: {s}")))?
        .into_inner();
    handler.connected(true);
    loop {
        tokio::select! {
            msg = inbound.message() => match msg {
                Ok(Some(resp)) => {
                    let all = client.absorb(&resp);
                    let error = handler.apply(&resp.type_url, &resp.system_version_info, all).err();
                    if let Some(m) = &error {
                        tracing::warn!(type_url = %resp.type_url, "delta xDS update rejected: {m}");
                    }
                    let _ = tx.send(DeltaDiscoveryRequest {
                        node: (!client.cfg.node_on_first_only).then(|| client.cfg.node.clone()),
                        type_url: resp.type_url.clone(),
                        response_nonce: resp.nonce.clone(),
                        error_detail: error.map(|message| Status { code: 13, message, details: vec![] }),
                        ..Default::default()
                    });
                }
                Ok(None) => return Err(after("closed by the control plane".into())),
                Err(s) => return Err(after(format!("stream error: {s}"))),
            },
            cmd = cmds.recv() => match cmd {
                Some(Cmd::Subscribe(t, names)) => {
                    if let Some(req) = client.subscribe(t, names) {
                        let _ = tx.send(req);
                    }
                }
                Some(Cmd::Wildcard(t)) => {
                    if client.wildcard(t.clone()) {
                        let _ = tx.send(client.initial(&t, false));
                    }
                }
                None => return Ok(()),
            },
        }
    }
}
