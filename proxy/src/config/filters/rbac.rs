//! RBAC (`envoy.config.rbac.v3.RBAC`) as the HTTP and network RBAC filters use it: named
//! policies of permissions (what is asked) and principals (who asks), with an ALLOW, DENY or
//! LOG action.

use super::super::cidr::Cidr;
use super::super::matcher::StringMatch;
use super::super::route::HeaderMatch;
use super::super::{err, Result};
use envoy_types::pb::envoy::config::rbac::v3 as pb;
use envoy_types::pb::envoy::r#type::matcher::v3::{
    filter_state_matcher, path_matcher, PathMatcher,
};
use pb::permission::Rule;
use pb::principal::Identifier;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Allow,
    Deny,
    Log,
}

pub use crate::config::route::Pseudo;

/// A header matcher: on a header, or on a pseudo-header (matched as a header of the name
/// [`PSEUDO`] holding its value).
#[derive(Debug)]
pub enum Header {
    Plain(HeaderMatch),
    Pseudo(Pseudo, HeaderMatch),
}

pub static PSEUDO: http::HeaderName = http::HeaderName::from_static("x-ferry-pseudo-header");

fn header(
    h: &envoy_types::pb::envoy::config::route::v3::HeaderMatcher,
    path: &str,
) -> Result<Header> {
    let which = match h.name.as_str() {
        ":path" => Pseudo::Path,
        ":method" => Pseudo::Method,
        ":authority" => Pseudo::Authority,
        ":scheme" => Pseudo::Scheme,
        n if n.starts_with(':') => {
            return err(
                &format!("{path}.name"),
                format!("pseudo-header {n} is not supported by Ferry"),
            )
        }
        _ => return Ok(Header::Plain(HeaderMatch::from_proto(h, path)?)),
    };
    let mut renamed = h.clone();
    renamed.name = PSEUDO.as_str().to_string();
    Ok(Header::Pseudo(
        which,
        HeaderMatch::from_proto(&renamed, path)?,
    ))
}

#[derive(Debug)]
pub enum Permission {
    Any,
    And(Vec<Permission>),
    Or(Vec<Permission>),
    Not(Box<Permission>),
    Header(Header),
    /// `url_path`: the path without query and fragment.
    UrlPath(StringMatch),
    DestinationIp(Cidr),
    DestinationPort(u32),
    /// `[start, end)`.
    DestinationPortRange(i64, i64),
    RequestedServerName(StringMatch),
    /// `metadata` on a namespace no filter of Ferry's writes: its constant result.
    Constant(bool),
}

#[derive(Debug)]
pub enum Principal {
    Any,
    And(Vec<Principal>),
    Or(Vec<Principal>),
    Not(Box<Principal>),
    /// A TLS connection; with a name, one of its peer certificate's URI SANs, else one of its
    /// DNS SANs, matches.
    Authenticated(Option<StringMatch>),
    /// The connection's peer (`source_ip`, `direct_remote_ip`).
    DirectRemoteIp(Cidr),
    /// The request's remote address (x-forwarded-for aware).
    RemoteIp(Cidr),
    Header(Header),
    UrlPath(StringMatch),
    /// `filter_state` `io.istio.peer_principal`: the peer's SPIFFE identity.
    PeerPrincipal(StringMatch),
    /// `metadata` on a namespace no filter of Ferry's writes: its constant result.
    Constant(bool),
}

#[derive(Debug)]
pub struct Policy {
    pub permissions: Vec<Permission>,
    pub principals: Vec<Principal>,
}

#[derive(Debug)]
pub struct Engine {
    pub action: Action,
    /// By name, in name order (the first that matches is the effective policy).
    pub policies: Vec<(String, Policy)>,
}

/// A `metadata` matcher on the dynamic metadata of Istio's request authentication
/// (`istio_authn`, `envoy.filters.http.jwt_authn`: JWT claims). Ferry has no JWT filter, so that
/// metadata is never set and the matcher sees an absent value, as Envoy does on a chain
/// without one: its result is a constant. Matchers on any other namespace are refused.
#[allow(deprecated)] // Principal.metadata is what istiod still writes
fn metadata_constant(
    m: &envoy_types::pb::envoy::r#type::matcher::v3::MetadataMatcher,
    path: &str,
) -> Result<bool> {
    use envoy_types::pb::envoy::r#type::matcher::v3::value_matcher::MatchPattern as V;
    if !matches!(
        m.filter.as_str(),
        "istio_authn" | "envoy.filters.http.jwt_authn"
    ) {
        return err(
            &format!("{path}.filter"),
            format!(
                "metadata of '{}' is not supported by Ferry (only Istio's request authentication)",
                m.filter
            ),
        );
    }
    let on_absent = match m.value.as_ref().and_then(|v| v.match_pattern.as_ref()) {
        Some(V::NullMatch(_)) => true,
        Some(V::PresentMatch(want)) => !*want,
        Some(_) => false,
        None => return err(&format!("{path}.value"), "a value matcher is required"),
    };
    Ok(on_absent != m.invert)
}

fn path_matcher(p: &PathMatcher, path: &str) -> Result<StringMatch> {
    match &p.rule {
        Some(path_matcher::Rule::Path(s)) => StringMatch::from_proto(s, &format!("{path}.path")),
        None => err(path, "path is required"),
    }
}

fn cidr(c: &envoy_types::pb::envoy::config::core::v3::CidrRange, path: &str) -> Result<Cidr> {
    Cidr::from_proto(c, path)
}

#[allow(deprecated)] // the metadata rule is deprecated, and what istiod writes
fn permission(p: &pb::Permission, path: &str) -> Result<Permission> {
    let set = |s: &pb::permission::Set, f: &str| -> Result<Vec<Permission>> {
        s.rules
            .iter()
            .enumerate()
            .map(|(i, r)| permission(r, &format!("{path}.{f}.rules[{i}]")))
            .collect()
    };
    Ok(match &p.rule {
        Some(Rule::Any(true)) => Permission::Any,
        Some(Rule::AndRules(s)) => Permission::And(set(s, "and_rules")?),
        Some(Rule::OrRules(s)) => Permission::Or(set(s, "or_rules")?),
        Some(Rule::NotRule(r)) => {
            Permission::Not(Box::new(permission(r, &format!("{path}.not_rule"))?))
        }
        Some(Rule::Header(h)) => Permission::Header(header(h, &format!("{path}.header"))?),
        Some(Rule::UrlPath(u)) => {
            Permission::UrlPath(path_matcher(u, &format!("{path}.url_path"))?)
        }
        Some(Rule::DestinationIp(c)) => {
            Permission::DestinationIp(cidr(c, &format!("{path}.destination_ip"))?)
        }
        Some(Rule::DestinationPort(p)) => Permission::DestinationPort(*p),
        Some(Rule::DestinationPortRange(r)) => {
            if r.start >= r.end || r.start < 0 || r.end > 65536 {
                return err(
                    &format!("{path}.destination_port_range"),
                    "start must be below end, within [0, 65536]",
                );
            }
            Permission::DestinationPortRange(r.start.into(), r.end.into())
        }
        Some(Rule::RequestedServerName(s)) => Permission::RequestedServerName(
            StringMatch::from_proto(s, &format!("{path}.requested_server_name"))?,
        ),
        Some(Rule::Metadata(m)) => {
            Permission::Constant(metadata_constant(m, &format!("{path}.metadata"))?)
        }
        Some(Rule::Any(false)) | None => return err(path, "a permission rule is required"),
        Some(_) => return err(path, "this permission is not supported by Ferry"),
    })
}

#[allow(deprecated)] // the metadata principal is deprecated, and what istiod writes
fn principal(p: &pb::Principal, path: &str) -> Result<Principal> {
    let set = |s: &pb::principal::Set, f: &str| -> Result<Vec<Principal>> {
        s.ids
            .iter()
            .enumerate()
            .map(|(i, r)| principal(r, &format!("{path}.{f}.ids[{i}]")))
            .collect()
    };
    Ok(match &p.identifier {
        Some(Identifier::Any(true)) => Principal::Any,
        Some(Identifier::AndIds(s)) => Principal::And(set(s, "and_ids")?),
        Some(Identifier::OrIds(s)) => Principal::Or(set(s, "or_ids")?),
        Some(Identifier::NotId(r)) => {
            Principal::Not(Box::new(principal(r, &format!("{path}.not_id"))?))
        }
        Some(Identifier::Authenticated(a)) => Principal::Authenticated(
            a.principal_name
                .as_ref()
                .map(|m| {
                    StringMatch::from_proto(m, &format!("{path}.authenticated.principal_name"))
                })
                .transpose()?,
        ),
        #[allow(deprecated)]
        Some(Identifier::SourceIp(c)) => {
            Principal::DirectRemoteIp(cidr(c, &format!("{path}.source_ip"))?)
        }
        Some(Identifier::DirectRemoteIp(c)) => {
            Principal::DirectRemoteIp(cidr(c, &format!("{path}.direct_remote_ip"))?)
        }
        Some(Identifier::RemoteIp(c)) => {
            Principal::RemoteIp(cidr(c, &format!("{path}.remote_ip"))?)
        }
        Some(Identifier::Header(h)) => Principal::Header(header(h, &format!("{path}.header"))?),
        Some(Identifier::UrlPath(u)) => {
            Principal::UrlPath(path_matcher(u, &format!("{path}.url_path"))?)
        }
        Some(Identifier::FilterState(fs)) if fs.key == "io.istio.peer_principal" => {
            match &fs.matcher {
                Some(filter_state_matcher::Matcher::StringMatch(s)) => Principal::PeerPrincipal(
                    StringMatch::from_proto(s, &format!("{path}.filter_state.string_match"))?,
                ),
                _ => return err(&format!("{path}.filter_state"), "string_match is required"),
            }
        }
        Some(Identifier::Metadata(m)) => {
            Principal::Constant(metadata_constant(m, &format!("{path}.metadata"))?)
        }
        Some(Identifier::Any(false)) | None => return err(path, "a principal is required"),
        Some(_) => return err(path, "this principal is not supported by Ferry"),
    })
}

impl Engine {
    pub fn from_proto(r: &pb::Rbac, path: &str) -> Result<Engine> {
        if r.audit_logging_options.is_some() {
            return err(
                &format!("{path}.audit_logging_options"),
                "RBAC audit logging is not supported by Ferry",
            );
        }
        let action = match r.action {
            0 => Action::Allow,
            1 => Action::Deny,
            2 => Action::Log,
            _ => return err(&format!("{path}.action"), "unknown action"),
        };
        let mut names: Vec<&String> = r.policies.keys().collect();
        names.sort();
        let mut policies = Vec::with_capacity(names.len());
        for name in names {
            let p = &r.policies[name];
            let pp = format!("{path}.policies[{name}]");
            if p.condition.is_some() || p.checked_condition.is_some() {
                return err(
                    &format!("{pp}.condition"),
                    "CEL conditions are not supported by Ferry",
                );
            }
            policies.push((
                name.clone(),
                Policy {
                    permissions: p
                        .permissions
                        .iter()
                        .enumerate()
                        .map(|(i, x)| permission(x, &format!("{pp}.permissions[{i}]")))
                        .collect::<Result<_>>()?,
                    principals: p
                        .principals
                        .iter()
                        .enumerate()
                        .map(|(i, x)| principal(x, &format!("{pp}.principals[{i}]")))
                        .collect::<Result<_>>()?,
                },
            ));
        }
        Ok(Engine { action, policies })
    }
}
