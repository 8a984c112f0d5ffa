//! RBAC: the shadow engine (counted, never enforced), then the enforced one; a denied request
//! gets 403 `RBAC: access denied`.

use super::FilterRequest;
use crate::config::filters::rbac::{Action, Engine, Header, Permission, Principal, Pseudo, PSEUDO};
use crate::config::filters::{RbacCfg, RbacStats};
use crate::http::reply::Body;
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use std::net::SocketAddr;

/// What RBAC reads of a request or a connection.
pub struct Subject<'a> {
    pub headers: Option<&'a HeaderMap>,
    pub method: &'a str,
    pub path: &'a str,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub peer: Option<&'a crate::io::Peer>,
}

impl<'a> Subject<'a> {
    /// A connection's subject (network filters): no request.
    pub fn connection(
        local: SocketAddr,
        remote: SocketAddr,
        peer: Option<&'a crate::io::Peer>,
    ) -> Subject<'a> {
        Subject {
            headers: None,
            method: "",
            path: "",
            local,
            remote,
            peer,
        }
    }

    fn header(&self, h: &Header) -> bool {
        let Some(headers) = self.headers else {
            return false;
        };
        match h {
            Header::Plain(m) => m.matches(headers),
            Header::Pseudo(which, m) => {
                let v = match which {
                    Pseudo::Path => self.path,
                    Pseudo::Method => self.method,
                    Pseudo::Authority => headers
                        .get(http::header::HOST)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or(""),
                    Pseudo::Scheme => "http",
                };
                let mut one = HeaderMap::new();
                if let Ok(v) = HeaderValue::from_str(v) {
                    one.insert(PSEUDO.clone(), v);
                }
                m.matches(&one)
            }
        }
    }

    fn url_path(&self) -> Option<&str> {
        self.headers?;
        Some(self.path.split(['?', '#']).next().unwrap_or(""))
    }

    fn permission(&self, p: &Permission) -> bool {
        match p {
            Permission::Any => true,
            Permission::And(ps) => ps.iter().all(|p| self.permission(p)),
            Permission::Or(ps) => ps.iter().any(|p| self.permission(p)),
            Permission::Not(p) => !self.permission(p),
            Permission::Header(h) => self.header(h),
            Permission::UrlPath(m) => self.url_path().is_some_and(|p| m.matches(p)),
            Permission::DestinationIp(c) => c.contains(self.local.ip().to_canonical()),
            Permission::DestinationPort(p) => u32::from(self.local.port()) == *p,
            Permission::DestinationPortRange(a, b) => {
                (*a..*b).contains(&i64::from(self.local.port()))
            }
            Permission::RequestedServerName(m) => {
                m.matches(self.peer.and_then(|p| p.sni.as_deref()).unwrap_or(""))
            }
            Permission::Constant(b) => *b,
        }
    }

    fn principal(&self, p: &Principal) -> bool {
        match p {
            Principal::Any => true,
            Principal::And(ps) => ps.iter().all(|p| self.principal(p)),
            Principal::Or(ps) => ps.iter().any(|p| self.principal(p)),
            Principal::Not(p) => !self.principal(p),
            Principal::Authenticated(name) => match (self.peer, name) {
                // Any TLS connection, with or without a client certificate (as Envoy).
                (Some(_), None) => true,
                (Some(peer), Some(m)) => {
                    peer.uris.iter().any(|u| m.matches(u)) || peer.dns.iter().any(|d| m.matches(d))
                }
                (None, _) => false,
            },
            Principal::DirectRemoteIp(c) | Principal::RemoteIp(c) => {
                c.contains(self.remote.ip().to_canonical())
            }
            Principal::Header(h) => self.header(h),
            Principal::UrlPath(m) => self.url_path().is_some_and(|p| m.matches(p)),
            Principal::PeerPrincipal(m) => self
                .peer
                .and_then(|p| p.uris.first())
                .is_some_and(|u| m.matches(u)),
            Principal::Constant(b) => *b,
        }
    }

    /// Whether the engine lets this through.
    pub fn allowed(&self, e: &Engine) -> bool {
        self.verdict(e).0
    }

    /// Whether the engine lets this through, and the policy that matched.
    pub(crate) fn verdict<'e>(&self, e: &'e Engine) -> (bool, Option<&'e str>) {
        let matched = e.policies.iter().find(|(_, p)| {
            p.permissions.iter().any(|x| self.permission(x))
                && p.principals.iter().any(|x| self.principal(x))
        });
        let allowed = match e.action {
            Action::Allow => matched.is_some(),
            Action::Deny => matched.is_none(),
            Action::Log => true,
        };
        (allowed, matched.map(|(name, _)| name.as_str()))
    }
}

/// Runs the shadow engine, then the enforced one; `false` when the request is denied.
pub fn check(cfg: &RbacCfg, stats: &RbacStats, s: &Subject<'_>) -> bool {
    if let Some(e) = &cfg.shadow {
        if s.allowed(e) {
            stats.shadow_allowed.inc();
        } else {
            stats.shadow_denied.inc();
        }
    }
    let Some(e) = &cfg.rules else {
        return true;
    };
    if s.allowed(e) {
        stats.allowed.inc();
        true
    } else {
        stats.denied.inc();
        false
    }
}

pub fn decode(
    cfg: &RbacCfg,
    stats: &RbacStats,
    req: &FilterRequest<'_>,
    effects: &mut super::Effects,
) -> Option<Response<Body>> {
    // The shadow engine's result as dynamic metadata (Istio's CUSTOM policy gates ext_authz
    // on the policy id).
    if let Some(e) = &cfg.shadow {
        let (allowed, policy) = req.subject.verdict(e);
        let ns = super::ext_authz::RBAC_NAMESPACE;
        if let Some(p) = policy {
            effects.metadata.push((
                ns,
                format!("{}shadow_effective_policy_id", cfg.shadow_prefix),
                p.to_string(),
            ));
        }
        effects.metadata.push((
            ns,
            format!("{}shadow_engine_result", cfg.shadow_prefix),
            if allowed { "allowed" } else { "denied" }.to_string(),
        ));
    }
    if check(cfg, stats, &req.subject) {
        return None;
    }
    tracing::debug!("RBAC: access denied");
    Some(
        req.grpc()
            .reply(StatusCode::FORBIDDEN, "RBAC: access denied", None),
    )
}
