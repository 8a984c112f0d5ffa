//! Route `redirect`: where the `location` points.

use super::super::matcher::full_regex;
use super::super::{err, Result};
use super::action::{re2_substitution, Rewrite};
use super::matching::RouteMatch;
use envoy_types::pb::envoy::config::route::v3 as pb;
use envoy_types::pb::envoy::config::route::v3::redirect_action::{
    PathRewriteSpecifier, SchemeRewriteSpecifier,
};
use http::StatusCode;
use regex::Regex;

#[derive(Debug)]
pub struct Redirect {
    pub scheme: Option<String>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub path: RedirectPath,
    pub code: StatusCode,
    pub strip_query: bool,
}

#[derive(Debug)]
pub enum RedirectPath {
    Keep,
    Path(String),
    Rewrite(Rewrite),
}

impl Redirect {
    pub(super) fn from_proto(
        a: &pb::RedirectAction,
        m: &RouteMatch,
        path: &str,
    ) -> Result<Redirect> {
        let scheme = match &a.scheme_rewrite_specifier {
            Some(SchemeRewriteSpecifier::HttpsRedirect(true)) => Some("https".to_string()),
            Some(SchemeRewriteSpecifier::SchemeRedirect(s)) if !s.is_empty() => {
                Some(s.to_ascii_lowercase())
            }
            _ => None,
        };
        let rpath = match &a.path_rewrite_specifier {
            None => RedirectPath::Keep,
            Some(PathRewriteSpecifier::PathRedirect(p)) => RedirectPath::Path(p.clone()),
            Some(PathRewriteSpecifier::PrefixRewrite(p)) => {
                let Some(prefix) = m.literal_prefix() else {
                    return err(
                        &format!("{path}.prefix_rewrite"),
                        "prefix_rewrite needs a prefix match",
                    );
                };
                RedirectPath::Rewrite(Rewrite {
                    prefix: Some((prefix.to_string(), p.clone())),
                    regex: None,
                })
            }
            Some(PathRewriteSpecifier::RegexRewrite(r)) => {
                let rp = format!("{path}.regex_rewrite");
                let Some(pattern) = &r.pattern else {
                    return err(&format!("{rp}.pattern"), "pattern is required");
                };
                let re = full_regex(pattern, &format!("{rp}.pattern")).and_then(|_| {
                    Regex::new(&pattern.regex).map_err(|e| super::super::ConfigError {
                        path: rp.clone(),
                        msg: e.to_string(),
                    })
                })?;
                RedirectPath::Rewrite(Rewrite {
                    prefix: None,
                    regex: Some((re, re2_substitution(&r.substitution))),
                })
            }
            Some(_) => return err(path, "this path rewrite is not supported by Ferry"),
        };
        let code = match a.response_code {
            1 => StatusCode::FOUND,
            2 => StatusCode::SEE_OTHER,
            3 => StatusCode::TEMPORARY_REDIRECT,
            4 => StatusCode::PERMANENT_REDIRECT,
            _ => StatusCode::MOVED_PERMANENTLY,
        };
        let port = match a.port_redirect {
            0 => None,
            p => Some(u16::try_from(p).map_err(|_| super::super::ConfigError {
                path: format!("{path}.port_redirect"),
                msg: "port out of range".into(),
            })?),
        };
        Ok(Redirect {
            scheme,
            host: Some(a.host_redirect.clone()).filter(|h| !h.is_empty()),
            port,
            path: rpath,
            code,
            strip_query: a.strip_query,
        })
    }

    /// The `location` for a request with `scheme`, `host` (Host header) and `path_and_query`.
    pub fn location(&self, scheme: &str, host: &str, path_and_query: &str) -> String {
        let new_scheme = self.scheme.as_deref().unwrap_or(scheme);
        let (orig_host, orig_port) = split_host_port(host);
        let mut h = self.host.clone().unwrap_or_else(|| orig_host.to_string());
        let port = match (self.port, orig_port) {
            (Some(p), _) => Some(p.to_string()),
            // A host_redirect replaces host and port; otherwise the original port stays, unless
            // the scheme changes to one whose default port it was.
            (None, Some(p)) if self.host.is_none() => {
                let drop = self.scheme.is_some() && (p == "80" || p == "443");
                (!drop).then(|| p.to_string())
            }
            _ => None,
        };
        if let Some(p) = port {
            let default =
                (new_scheme == "http" && p == "80") || (new_scheme == "https" && p == "443");
            if !default {
                h = format!("{h}:{p}");
            }
        }
        let (path, query) = match path_and_query.find('?') {
            Some(i) => (&path_and_query[..i], Some(&path_and_query[i..])),
            None => (path_and_query, None),
        };
        let mut new_path = match &self.path {
            RedirectPath::Keep => path.to_string(),
            RedirectPath::Path(p) => p.clone(),
            RedirectPath::Rewrite(rw) => rw.apply(path).unwrap_or_else(|| path.to_string()),
        };
        let path_has_query = matches!(&self.path, RedirectPath::Path(p) if p.contains('?'));
        if !self.strip_query && !path_has_query {
            if let Some(q) = query {
                new_path.push_str(q);
            }
        }
        format!("{new_scheme}://{h}{new_path}")
    }
}

fn split_host_port(host: &str) -> (&str, Option<&str>) {
    let h = super::strip_port(host);
    if h.len() < host.len() {
        (h, Some(&host[h.len() + 1..]))
    } else {
        (host, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_locations() {
        let r = Redirect {
            scheme: Some("https".into()),
            host: None,
            port: None,
            path: RedirectPath::Keep,
            code: StatusCode::MOVED_PERMANENTLY,
            strip_query: false,
        };
        assert_eq!(
            r.location("http", "example.com:80", "/a?b"),
            "https://example.com/a?b"
        );
        assert_eq!(
            r.location("http", "example.com:8080", "/a"),
            "https://example.com:8080/a"
        );
        let r = Redirect {
            scheme: None,
            host: Some("new.com".into()),
            port: None,
            path: RedirectPath::Path("/x".into()),
            code: StatusCode::FOUND,
            strip_query: true,
        };
        assert_eq!(
            r.location("http", "old.com:8080", "/a?b"),
            "http://new.com/x"
        );
    }
}
