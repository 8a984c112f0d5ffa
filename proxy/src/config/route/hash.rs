//! A route's `hash_policy`: what the request hash of RING_HASH and MAGLEV clusters is made of
//! (headers, a cookie, the source IP, a query parameter), combined as Envoy combines them.

use super::super::headers::header_name;
use super::super::{err, opt_duration, Result};
use crate::cluster::hash::{combine, cookie_value as generated, header_hash, xxh64};
use envoy_types::pb::envoy::config::route::v3::route_action::hash_policy::PolicySpecifier;
use envoy_types::pb::envoy::config::route::v3::route_action::HashPolicy as PbHashPolicy;
use http::HeaderName;
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Debug, Clone)]
pub enum Source {
    Header(HeaderName),
    Cookie {
        name: String,
        /// Set: a request without the cookie gets one generated (and a Set-Cookie).
        ttl: Option<Duration>,
        path: String,
        attributes: Vec<(String, String)>,
    },
    SourceIp,
    QueryParameter(String),
}

#[derive(Debug, Clone)]
pub struct HashPolicy {
    pub source: Source,
    pub terminal: bool,
}

pub fn hash_policies(p: &[PbHashPolicy], path: &str) -> Result<Vec<HashPolicy>> {
    let mut out = Vec::new();
    for (i, h) in p.iter().enumerate() {
        let hp = format!("{path}[{i}]");
        let source = match &h.policy_specifier {
            Some(PolicySpecifier::Header(x)) => {
                if x.regex_rewrite.is_some() {
                    return err(
                        &format!("{hp}.header.regex_rewrite"),
                        "regex_rewrite in a hash policy is not supported by Ferry yet",
                    );
                }
                Source::Header(header_name(
                    &x.header_name,
                    &format!("{hp}.header.header_name"),
                )?)
            }
            Some(PolicySpecifier::Cookie(c)) => Source::Cookie {
                name: c.name.clone(),
                ttl: opt_duration(&c.ttl, &format!("{hp}.cookie.ttl"))?,
                path: c.path.clone(),
                attributes: c
                    .attributes
                    .iter()
                    .map(|a| (a.name.clone(), a.value.clone()))
                    .collect(),
            },
            // `source_ip: false` is no policy at all.
            Some(PolicySpecifier::ConnectionProperties(c)) if !c.source_ip => continue,
            Some(PolicySpecifier::ConnectionProperties(_)) => Source::SourceIp,
            Some(PolicySpecifier::QueryParameter(q)) => Source::QueryParameter(q.name.clone()),
            Some(PolicySpecifier::FilterState(_)) => {
                return err(
                    &format!("{hp}.filter_state"),
                    "Ferry keeps no hashable filter state",
                )
            }
            None => return err(&hp, "a hash policy needs a specifier"),
        };
        out.push(HashPolicy {
            source,
            terminal: h.terminal,
        });
    }
    Ok(out)
}

/// What a request offers to hash.
pub struct Request<'a> {
    pub headers: &'a http::HeaderMap,
    pub path_and_query: &'a str,
    pub remote: SocketAddr,
    pub local: SocketAddr,
}

/// A cookie to set on the response (a generated hash cookie).
pub type SetCookie = Option<String>;

/// The request hash, and the Set-Cookie a generated cookie needs.
pub fn request_hash(policies: &[HashPolicy], r: &Request<'_>) -> (Option<u64>, SetCookie) {
    let mut hash = None;
    let mut set_cookie = None;
    for p in policies {
        let h = match &p.source {
            Source::Header(name) => {
                let values: Vec<&[u8]> = r
                    .headers
                    .get_all(name)
                    .iter()
                    .map(|v| v.as_bytes())
                    .collect();
                header_hash(&values)
            }
            Source::SourceIp => Some(xxh64(r.remote.ip().to_string().as_bytes(), 0)),
            Source::QueryParameter(name) => {
                query_value(r.path_and_query, name).map(|v| xxh64(v.as_bytes(), 0))
            }
            Source::Cookie {
                name,
                ttl,
                path,
                attributes,
            } => match cookie_value(r.headers, name) {
                Some(v) if !v.is_empty() => Some(xxh64(v.as_bytes(), 0)),
                _ => ttl.map(|ttl| {
                    let value = generated_cookie(r.remote, r.local);
                    set_cookie = Some(set_cookie_value(name, &value, ttl, path, attributes));
                    xxh64(value.as_bytes(), 0)
                }),
            },
        };
        if let Some(h) = h {
            hash = Some(combine(hash, h));
        }
        if p.terminal && hash.is_some() {
            break;
        }
    }
    (hash, set_cookie)
}

/// The first value of query parameter `name` (not percent-decoded).
fn query_value<'a>(path: &'a str, name: &str) -> Option<&'a str> {
    let (_, query) = path.split_once('?')?;
    query
        .split('&')
        .find_map(|piece| match piece.split_once('=') {
            Some((n, v)) if n == name => Some(v),
            None if piece == name => Some(""),
            _ => None,
        })
}

/// The first cookie named `name` across the `cookie` headers, unquoted.
fn cookie_value<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|piece| {
            let (k, v) = piece.trim_start_matches(' ').split_once('=')?;
            (k == name).then(|| {
                v.strip_prefix('"')
                    .and_then(|x| x.strip_suffix('"'))
                    .filter(|_| v.len() >= 2)
                    .unwrap_or(v)
            })
        })
}

/// The value Envoy generates for a missing hash cookie: the connection's addresses hashed.
fn generated_cookie(remote: SocketAddr, local: SocketAddr) -> String {
    generated(&remote.to_string(), &local.to_string())
}

fn set_cookie_value(
    name: &str,
    value: &str,
    ttl: Duration,
    path: &str,
    attributes: &[(String, String)],
) -> String {
    let mut s = format!("{name}=\"{value}\"");
    if !ttl.is_zero() {
        s.push_str(&format!("; Max-Age={}", ttl.as_secs()));
    }
    if !path.is_empty() {
        s.push_str(&format!("; Path={path}"));
    }
    for (k, v) in attributes {
        if v.is_empty() {
            s.push_str(&format!("; {k}"));
        } else {
            s.push_str(&format!("; {k}={v}"));
        }
    }
    s.push_str("; HttpOnly");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_and_cookie_values() {
        assert_eq!(query_value("/p?a=1&b=2&a=3", "a"), Some("1"));
        assert_eq!(query_value("/p?flag&b=2", "flag"), Some(""));
        assert_eq!(query_value("/p?b=2", "a"), None);
        let mut h = http::HeaderMap::new();
        h.append(
            http::header::COOKIE,
            "x=1; user=\"abc\"".parse().expect("valid"),
        );
        assert_eq!(cookie_value(&h, "user"), Some("abc"));
        assert_eq!(cookie_value(&h, "x"), Some("1"));
        assert_eq!(cookie_value(&h, "y"), None);
    }

    #[test]
    fn policies_combine_and_terminal_stops() {
        let mut headers = http::HeaderMap::new();
        headers.insert("x-user", "alice".parse().expect("valid"));
        let r = Request {
            headers: &headers,
            path_and_query: "/?q=1",
            remote: "10.0.0.1:1234".parse().expect("addr"),
            local: "10.0.0.2:80".parse().expect("addr"),
        };
        let header = |terminal| HashPolicy {
            source: Source::Header(HeaderName::from_static("x-user")),
            terminal,
        };
        let ip = HashPolicy {
            source: Source::SourceIp,
            terminal: false,
        };
        let alice = xxh64(b"alice", 0);
        assert_eq!(request_hash(&[header(false)], &r).0, Some(alice));
        let both = request_hash(&[header(false), ip.clone()], &r).0;
        assert_eq!(both, Some(alice.rotate_left(1) ^ xxh64(b"10.0.0.1", 0)));
        assert_eq!(request_hash(&[header(true), ip], &r).0, Some(alice));
    }
}
