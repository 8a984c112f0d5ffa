//! A proxy fed by its own control plane on a Unix socket, with one HTTP listener routing to
//! cluster `backend`: the common set-up of tests that push resources and watch the effect.

use super::{ads_uds_bootstrap, resources, XdsServer, CLUSTER, ENDPOINT, LISTENER};
use crate::proxy::{Proxy, TempDir};
use crate::{ports, ProxyKind};
use envoy_types::pb::google::protobuf::Any;
use std::collections::BTreeMap;
use std::time::Duration;

pub struct UdsProxy {
    pub xds: XdsServer,
    pub proxy: Proxy,
    /// The pushed listener's port.
    pub listen: u16,
    pub admin: u16,
    _dir: TempDir,
}

impl UdsProxy {
    /// Starts `bin` against a new control plane serving `cluster` (named `backend`), its
    /// endpoints at `ports` when it is an EDS cluster, and the listener; returns once the
    /// listener is acknowledged and the proxy is ready.
    pub async fn start(
        kind: ProxyKind,
        bin: &std::path::Path,
        tag: &str,
        cluster: (String, Any),
        endpoints: Option<&[u16]>,
    ) -> UdsProxy {
        let dir = TempDir::new(tag);
        let socket = dir.path().join("XDS");
        let xds = XdsServer::start_unix(&socket).await;
        let listen = ports::free_port();
        xds.set(CLUSTER, vec![cluster]);
        if let Some(eps) = endpoints {
            xds.set(ENDPOINT, vec![resources::cla("backend", eps)]);
        }
        xds.set(
            LISTENER,
            vec![resources::listener_to(tag, listen, "backend")],
        );
        let admin = ports::free_port();
        let boot = ads_uds_bootstrap(&socket, tag, "ferry-tests", admin);
        let ports = BTreeMap::from([("ADMIN".to_string(), admin)]);
        let mut proxy = Proxy::spawn(kind, bin, &boot, ports, &[]);
        if let Err(e) = xds.wait_ack(LISTENER, "1", Duration::from_secs(10)).await {
            panic!("{kind}: {e}\n{}\nstderr:\n{}", xds.dump(), proxy.stderr());
        }
        proxy.wait_ready().await;
        UdsProxy {
            xds,
            proxy,
            listen,
            admin,
            _dir: dir,
        }
    }

    /// Pushes `backend`'s endpoints and waits for the acknowledgement.
    pub async fn set_endpoints(&self, ports: &[u16]) {
        let v = self
            .xds
            .set(ENDPOINT, vec![resources::cla("backend", ports)]);
        if let Err(e) = self
            .xds
            .wait_ack(ENDPOINT, &v, Duration::from_secs(10))
            .await
        {
            panic!("{e}\n{}", self.xds.dump());
        }
    }
}
