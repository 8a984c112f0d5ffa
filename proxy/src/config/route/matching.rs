//! Route `match`: path (prefix, exact, regex, separated prefix), headers, query parameters.

use super::super::headers::header_name;
use super::super::matcher::{full_regex, StringMatch};
use super::super::{err, Result};
use envoy_types::pb::envoy::config::route::v3 as pb;
use envoy_types::pb::envoy::config::route::v3::header_matcher::HeaderMatchSpecifier as HMS;
use envoy_types::pb::envoy::config::route::v3::query_parameter_matcher::QueryParameterMatchSpecifier as QMS;
use envoy_types::pb::envoy::config::route::v3::route_match::PathSpecifier;
use http::header::HeaderName;
use http::HeaderMap;
use regex::Regex;

#[derive(Debug)]
pub enum PathMatch {
    Prefix(String),
    Exact(String),
    Regex(Regex),
    Separated(String),
}

#[derive(Debug)]
pub struct RouteMatch {
    pub path: PathMatch,
    pub case_sensitive: bool,
    pub headers: Vec<HeaderMatch>,
    pub query: Vec<QueryMatch>,
    pub grpc: bool,
}

#[derive(Debug, Clone)]
pub enum HeaderMatchKind {
    Str(StringMatch),
    Present(bool),
    Range(i64, i64),
}

#[derive(Debug, Clone)]
pub struct HeaderMatch {
    pub name: HeaderName,
    /// A pseudo-header (`:method`, …) instead of `name`; routes read it off the request.
    pub pseudo: Option<Pseudo>,
    pub kind: HeaderMatchKind,
    pub invert: bool,
    pub missing_as_empty: bool,
}

#[derive(Debug)]
pub struct QueryMatch {
    pub name: String,
    /// `None`: the parameter must be present.
    pub value: Option<StringMatch>,
}

/// The parts of a request that routing reads.
pub struct RequestView<'a> {
    /// The full `:path`, query included.
    pub path: &'a str,
    pub headers: &'a HeaderMap,
    pub method: &'a str,
    pub scheme: &'a str,
}

impl RequestView<'_> {
    pub fn path_only(&self) -> &str {
        let p = self.path;
        let end = p.find(['?', '#']).unwrap_or(p.len());
        &p[..end]
    }
    pub fn query(&self) -> Option<&str> {
        let q = self.path.split_once('?')?.1;
        Some(q.split('#').next().unwrap_or(q))
    }
}

impl RouteMatch {
    pub fn from_proto(m: &pb::RouteMatch, path: &str) -> Result<RouteMatch> {
        let case_sensitive = m.case_sensitive.as_ref().is_none_or(|b| b.value);
        let fold = |s: &str| {
            if case_sensitive {
                s.to_string()
            } else {
                s.to_ascii_lowercase()
            }
        };
        let pmatch = match &m.path_specifier {
            Some(PathSpecifier::Prefix(p)) => PathMatch::Prefix(fold(p)),
            Some(PathSpecifier::Path(p)) => PathMatch::Exact(fold(p)),
            Some(PathSpecifier::SafeRegex(r)) => {
                let re = if case_sensitive {
                    r.regex.clone()
                } else {
                    format!("(?i:{})", r.regex)
                };
                let r2 = envoy_types::pb::envoy::r#type::matcher::v3::RegexMatcher {
                    regex: re,
                    ..r.clone()
                };
                PathMatch::Regex(full_regex(&r2, &format!("{path}.safe_regex"))?)
            }
            Some(PathSpecifier::PathSeparatedPrefix(p)) => {
                if p.contains(['?', '#']) || (p.ends_with('/') && p != "/") {
                    return err(
                        &format!("{path}.path_separated_prefix"),
                        "must not contain '?' or '#' or end with '/'",
                    );
                }
                PathMatch::Separated(fold(p))
            }
            Some(_) => return err(path, "this path specifier is not supported by Ferry"),
            None => return err(
                path,
                "a path specifier (prefix, path, safe_regex, path_separated_prefix) is required",
            ),
        };
        let headers = m
            .headers
            .iter()
            .enumerate()
            .map(|(i, h)| HeaderMatch::from_proto(h, &format!("{path}.headers[{i}]")))
            .collect::<Result<_>>()?;
        let query = m
            .query_parameters
            .iter()
            .enumerate()
            .map(|(i, q)| {
                let qp = format!("{path}.query_parameters[{i}]");
                let value = match &q.query_parameter_match_specifier {
                    Some(QMS::StringMatch(s)) => {
                        Some(StringMatch::from_proto(s, &format!("{qp}.string_match"))?)
                    }
                    Some(QMS::PresentMatch(true)) => None,
                    Some(QMS::PresentMatch(false)) => {
                        return err(
                            &format!("{qp}.present_match"),
                            "present_match: false is not supported",
                        )
                    }
                    None => return err(&qp, "string_match or present_match is required"),
                };
                Ok(QueryMatch {
                    name: q.name.clone(),
                    value,
                })
            })
            .collect::<Result<_>>()?;
        Ok(RouteMatch {
            path: pmatch,
            case_sensitive,
            headers,
            query,
            grpc: m.grpc.is_some(),
        })
    }

    pub fn matches(&self, req: &RequestView<'_>) -> bool {
        self.path_matches(req)
            && self.headers.iter().all(|h| h.matches_request(req))
            && self.query.iter().all(|q| q.matches(req.query()))
            && (!self.grpc || is_grpc(req.headers))
    }

    fn path_matches(&self, req: &RequestView<'_>) -> bool {
        let cs = self.case_sensitive;
        let starts = |s: &str, p: &str| {
            s.len() >= p.len()
                && if cs {
                    s.starts_with(p)
                } else {
                    // Bytes, not chars: the path may hold non-ASCII bytes mid-character.
                    s.as_bytes()[..p.len()].eq_ignore_ascii_case(p.as_bytes())
                }
        };
        match &self.path {
            PathMatch::Prefix(p) => starts(req.path, p),
            PathMatch::Exact(p) => {
                let s = req.path_only();
                if cs {
                    s == p
                } else {
                    s.eq_ignore_ascii_case(p)
                }
            }
            PathMatch::Regex(r) => r.is_match(req.path_only()),
            PathMatch::Separated(p) => {
                let s = req.path_only();
                starts(s, p) && (s.len() == p.len() || s.as_bytes()[p.len()] == b'/')
            }
        }
    }

    /// The literal prefix this route matched on, for `prefix_rewrite`.
    pub fn literal_prefix(&self) -> Option<&str> {
        match &self.path {
            PathMatch::Prefix(p) | PathMatch::Separated(p) => Some(p),
            _ => None,
        }
    }
}

fn is_grpc(h: &HeaderMap) -> bool {
    h.get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == "application/grpc" || v.starts_with("application/grpc+"))
}

/// A request pseudo-header a header matcher may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pseudo {
    Path,
    Method,
    Authority,
    Scheme,
}

impl Pseudo {
    fn of(name: &str) -> Option<Pseudo> {
        Some(match name {
            ":path" => Pseudo::Path,
            ":method" => Pseudo::Method,
            ":authority" => Pseudo::Authority,
            ":scheme" => Pseudo::Scheme,
            _ => return None,
        })
    }
}

impl HeaderMatch {
    pub fn from_proto(h: &pb::HeaderMatcher, path: &str) -> Result<HeaderMatch> {
        let pseudo = Pseudo::of(&h.name);
        let name = match pseudo {
            Some(_) => HeaderName::from_static("x-ferry-pseudo-header"),
            None => header_name(&h.name, &format!("{path}.name"))?,
        };
        let str_exact = |kind, s: &str| {
            let pattern = match kind {
                0 => envoy_types::pb::envoy::r#type::matcher::v3::string_matcher::MatchPattern::Exact(s.into()),
                1 => envoy_types::pb::envoy::r#type::matcher::v3::string_matcher::MatchPattern::Prefix(s.into()),
                2 => envoy_types::pb::envoy::r#type::matcher::v3::string_matcher::MatchPattern::Suffix(s.into()),
                _ => envoy_types::pb::envoy::r#type::matcher::v3::string_matcher::MatchPattern::Contains(s.into()),
            };
            let m = envoy_types::pb::envoy::r#type::matcher::v3::StringMatcher {
                match_pattern: Some(pattern),
                ignore_case: false,
            };
            StringMatch::from_proto(&m, path)
        };
        #[allow(deprecated)]
        let kind = match &h.header_match_specifier {
            Some(HMS::ExactMatch(s)) => HeaderMatchKind::Str(str_exact(0, s)?),
            Some(HMS::PrefixMatch(s)) => HeaderMatchKind::Str(str_exact(1, s)?),
            Some(HMS::SuffixMatch(s)) => HeaderMatchKind::Str(str_exact(2, s)?),
            Some(HMS::ContainsMatch(s)) => HeaderMatchKind::Str(str_exact(3, s)?),
            Some(HMS::SafeRegexMatch(r)) => {
                let m = envoy_types::pb::envoy::r#type::matcher::v3::StringMatcher {
                    match_pattern: Some(envoy_types::pb::envoy::r#type::matcher::v3::string_matcher::MatchPattern::SafeRegex(r.clone())),
                    ignore_case: false,
                };
                HeaderMatchKind::Str(StringMatch::from_proto(
                    &m,
                    &format!("{path}.safe_regex_match"),
                )?)
            }
            Some(HMS::StringMatch(s)) => {
                HeaderMatchKind::Str(StringMatch::from_proto(s, &format!("{path}.string_match"))?)
            }
            Some(HMS::PresentMatch(b)) => HeaderMatchKind::Present(*b),
            Some(HMS::RangeMatch(r)) => HeaderMatchKind::Range(r.start, r.end),
            // No specifier: the header must be present (Envoy's default).
            None => HeaderMatchKind::Present(true),
        };
        Ok(HeaderMatch {
            name,
            pseudo,
            kind,
            invert: h.invert_match,
            missing_as_empty: h.treat_missing_header_as_empty,
        })
    }

    /// Matches a request, pseudo-headers included.
    pub fn matches_request(&self, req: &RequestView<'_>) -> bool {
        let Some(p) = self.pseudo else {
            return self.matches(req.headers);
        };
        let v = match p {
            Pseudo::Path => req.path,
            Pseudo::Method => req.method,
            Pseudo::Scheme => req.scheme,
            Pseudo::Authority => req
                .headers
                .get(http::header::HOST)
                .and_then(|v| v.to_str().ok())
                .unwrap_or(""),
        };
        self.matches_value(Some(v.to_string()))
    }

    /// Matches the request headers (a pseudo-header matcher sees only `:authority`, as Host).
    pub fn matches(&self, headers: &HeaderMap) -> bool {
        let name = match self.pseudo {
            Some(Pseudo::Authority) => &http::header::HOST,
            _ => &self.name,
        };
        let mut values = headers.get_all(name).iter();
        let joined: Option<String> = match values.next() {
            None => None,
            Some(first) => {
                let mut s = String::from_utf8_lossy(first.as_bytes()).into_owned();
                for v in values {
                    s.push(',');
                    s.push_str(&String::from_utf8_lossy(v.as_bytes()));
                }
                Some(s)
            }
        };
        self.matches_value(joined)
    }

    fn matches_value(&self, joined: Option<String>) -> bool {
        let value = match (&joined, self.missing_as_empty) {
            (Some(v), _) => Some(v.as_str()),
            (None, true) => Some(""),
            (None, false) => None,
        };
        let result = match (&self.kind, value) {
            (HeaderMatchKind::Present(want), v) => {
                let present = joined.is_some();
                // present_match: false matches an absent header; invert applies on top.
                let _ = v;
                return if self.invert {
                    present != *want
                } else {
                    present == *want
                };
            }
            (_, None) => return false, // a missing header never matches, inverted or not
            (HeaderMatchKind::Str(m), Some(v)) => m.matches(v),
            (HeaderMatchKind::Range(a, b), Some(v)) => {
                v.parse::<i64>().is_ok_and(|n| n >= *a && n < *b)
            }
        };
        result != self.invert
    }
}

impl QueryMatch {
    fn matches(&self, query: Option<&str>) -> bool {
        let Some(q) = query else { return false };
        for pair in q.split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            if k == self.name {
                return match &self.value {
                    None => true,
                    Some(m) => m.matches(v),
                };
            }
        }
        false
    }
}
