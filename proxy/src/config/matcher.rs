//! String and regex matchers (`envoy.type.matcher.v3`), compiled once.

use super::{err, Result};
use envoy_types::pb::envoy::r#type::matcher::v3::{
    string_matcher::MatchPattern, RegexMatcher, StringMatcher,
};
use regex::Regex;

/// Envoy's `safe_regex`: RE2 syntax, matching the whole input.
pub fn full_regex(m: &RegexMatcher, path: &str) -> Result<Regex> {
    anchored(&m.regex, path)
}

pub fn anchored(re: &str, path: &str) -> Result<Regex> {
    Regex::new(&format!("^(?:{re})$")).map_err(|e| super::ConfigError {
        path: path.into(),
        msg: format!("invalid regex: {e}"),
    })
}

#[derive(Debug, Clone)]
pub enum StrMatch {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Contains(String),
    Regex(Regex),
}

#[derive(Debug, Clone)]
pub struct StringMatch {
    pub kind: StrMatch,
    pub ignore_case: bool,
}

impl StringMatch {
    pub fn from_proto(m: &StringMatcher, path: &str) -> Result<Self> {
        let lower = |s: &str| {
            if m.ignore_case {
                s.to_ascii_lowercase()
            } else {
                s.to_string()
            }
        };
        let kind = match &m.match_pattern {
            Some(MatchPattern::Exact(s)) => StrMatch::Exact(lower(s)),
            Some(MatchPattern::Prefix(s)) => StrMatch::Prefix(lower(s)),
            Some(MatchPattern::Suffix(s)) => StrMatch::Suffix(lower(s)),
            Some(MatchPattern::Contains(s)) => StrMatch::Contains(lower(s)),
            Some(MatchPattern::SafeRegex(r)) => {
                StrMatch::Regex(full_regex(r, &format!("{path}.safe_regex"))?)
            }
            Some(MatchPattern::Custom(_)) => {
                return err(&format!("{path}.custom"), "field is not supported by Ferry")
            }
            None => return err(path, "a match pattern is required"),
        };
        Ok(StringMatch {
            kind,
            ignore_case: m.ignore_case,
        })
    }

    pub fn matches(&self, value: &str) -> bool {
        let lowered;
        let v = if self.ignore_case && !matches!(self.kind, StrMatch::Regex(_)) {
            lowered = value.to_ascii_lowercase();
            lowered.as_str()
        } else {
            value
        };
        match &self.kind {
            StrMatch::Exact(s) => v == s,
            StrMatch::Prefix(s) => v.starts_with(s.as_str()),
            StrMatch::Suffix(s) => v.ends_with(s.as_str()),
            StrMatch::Contains(s) => v.contains(s.as_str()),
            StrMatch::Regex(r) => r.is_match(v),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sm(p: MatchPattern, ignore_case: bool) -> StringMatch {
        let m = StringMatcher {
            match_pattern: Some(p),
            ignore_case,
        };
        StringMatch::from_proto(&m, "m").expect("valid")
    }

    #[test]
    fn string_matchers() {
        let cases = [
            (sm(MatchPattern::Exact("Foo".into()), false), "Foo", true),
            (sm(MatchPattern::Exact("Foo".into()), false), "foo", false),
            (sm(MatchPattern::Exact("Foo".into()), true), "fOO", true),
            (sm(MatchPattern::Prefix("/a".into()), false), "/abc", true),
            (sm(MatchPattern::Suffix(".js".into()), false), "x.js", true),
            (
                sm(MatchPattern::Contains("mid".into()), true),
                "aMIDb",
                true,
            ),
        ];
        for (m, v, want) in cases {
            assert_eq!(m.matches(v), want, "{m:?} on {v}");
        }
        let re = RegexMatcher {
            regex: "[a-z]+".into(),
            ..Default::default()
        };
        let r = sm(MatchPattern::SafeRegex(re), false);
        assert!(r.matches("abc"));
        assert!(!r.matches("abc1"), "safe_regex matches the whole value");
    }
}
