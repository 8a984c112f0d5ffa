//! Tag extraction: a stat's full name (`cluster.svc.upstream_rq_200`) into its tag-extracted
//! name (`cluster.upstream_rq`) and tags (`envoy.response_code=200`,
//! `envoy.cluster_name=svc`), as Envoy does for Prometheus and stats sinks — Envoy's default
//! extractors and the bootstrap's `stats_config.stats_tags`.
//!
//! An extractor's regex is searched in the full name; its first capture group is cut out of
//! the name and its second (or, without one, the first) is the tag's value. Every extractor
//! sees the original name; the cut ranges add up. Extractors whose regex starts with a fixed
//! `^token` only try names whose first dotted token is that token.

use fancy_regex::Regex;
use std::ops::Range;

#[derive(Debug)]
struct Extractor {
    name: String,
    regex: Regex,
    /// The name's first token must be this (from a regex anchored on `^token`).
    prefix: Option<String>,
    /// The name must contain this.
    substr: Option<&'static str>,
}

/// A fixed tag every stat gets (`tag_value`).
#[derive(Debug, Clone)]
struct Fixed {
    name: String,
    value: String,
}

/// How names become tags: built once from `stats_config`.
#[derive(Debug, Default)]
pub struct TagProducer {
    /// Extractors without a prefix, then those with one: Envoy's order of application.
    extractors: Vec<Extractor>,
    fixed: Vec<Fixed>,
}

/// One configured tag: `tag_name` with a `regex` or a fixed `tag_value`.
pub enum TagSpec<'a> {
    Regex(&'a str, &'a str),
    Fixed(&'a str, &'a str),
}

/// Envoy's default extractors, in Envoy's order: name, regex, substring hint.
pub const DEFAULTS: &[(&str, &str, Option<&str>)] = &[
    ("envoy.cluster_name", r"^cluster\.((.*?)\.)", None),
    (
        "envoy.listener_address",
        r"^listener\.(((?:[_.[:digit:]]*|[_\[\]aAbBcCdDeEfF[:digit:]]*))\.)",
        None,
    ),
    ("envoy.http_conn_manager_prefix", r"^http\.((.*?)\.)", None),
    ("envoy.tcp_prefix", r"^tcp\.((.*?)\.)", None),
    ("envoy.response_code", r"_rq(_(\d{3}))$", Some("_rq_")),
    ("envoy.response_code_class", r"_rq_(\d)xx$", Some("_rq_")),
];

/// `^token` (letters, digits, `_`, `-`) followed by `\.`, `(` or `$` → `token`.
fn regex_prefix(re: &str) -> Option<String> {
    let rest = re.strip_prefix('^')?;
    let end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        .unwrap_or(rest.len());
    if end == 0 {
        return None;
    }
    let after = &rest[end..];
    if after.is_empty() || after.starts_with("\\.") || after.starts_with('(') {
        Some(rest[..end].to_string())
    } else {
        None
    }
}

impl TagProducer {
    /// From `use_all_default_tags` (true when unset) and the configured tags. A configured
    /// tag named like a default one replaces it.
    pub fn new(use_defaults: bool, specs: &[TagSpec<'_>]) -> Result<TagProducer, String> {
        let mut with_prefix = Vec::new();
        let mut without = Vec::new();
        let mut fixed = Vec::new();
        let mut add = |name: &str, re: &str, substr: Option<&'static str>| -> Result<(), String> {
            let regex = Regex::new(re).map_err(|e| format!("invalid regex '{re}': {e}"))?;
            if regex.captures_len() < 2 {
                return Err(format!("regex '{re}' has no capture group"));
            }
            let prefix = regex_prefix(re);
            let e = Extractor {
                name: name.to_string(),
                regex,
                prefix,
                substr,
            };
            if e.prefix.is_some() {
                with_prefix.push(e);
            } else {
                without.push(e);
            }
            Ok(())
        };
        let mut names = std::collections::HashSet::new();
        for spec in specs {
            let name = match spec {
                TagSpec::Regex(n, _) | TagSpec::Fixed(n, _) => *n,
            };
            if !names.insert(name.to_string()) {
                return Err(format!("Tag name '{name}' specified twice."));
            }
        }
        for spec in specs {
            match spec {
                TagSpec::Fixed(n, v) => fixed.push(Fixed {
                    name: n.to_string(),
                    value: v.to_string(),
                }),
                TagSpec::Regex(n, "") => {
                    // A default tag named without a regex: the default's regex.
                    let Some((_, re, sub)) = DEFAULTS.iter().find(|d| d.0 == *n) else {
                        return Err(format!(
                            "No regex specified for tag specifier and no default regex for name: '{n}'"
                        ));
                    };
                    add(n, re, *sub)?;
                }
                TagSpec::Regex(n, re) => add(n, re, None)?,
            }
        }
        if use_defaults {
            for (n, re, sub) in DEFAULTS {
                if !names.contains(*n) {
                    add(n, re, *sub)?;
                }
            }
        }
        without.append(&mut with_prefix);
        Ok(TagProducer {
            extractors: without,
            fixed,
        })
    }

    /// The tag-extracted name and the tags, in extraction order (fixed tags last).
    pub fn produce(&self, name: &str) -> (String, Vec<(String, String)>) {
        let first = name.split('.').next().unwrap_or(name);
        let mut cut: Vec<Range<usize>> = Vec::new();
        let mut tags = Vec::new();
        for e in &self.extractors {
            if e.prefix.as_deref().is_some_and(|p| p != first)
                || e.substr.is_some_and(|s| !name.contains(s))
            {
                continue;
            }
            let Ok(Some(caps)) = e.regex.captures(name) else {
                continue;
            };
            let Some(remove) = caps.get(1) else {
                continue;
            };
            let value = caps.get(2).unwrap_or(remove);
            tags.push((e.name.clone(), value.as_str().to_string()));
            cut.push(remove.range());
        }
        for f in &self.fixed {
            tags.push((f.name.clone(), f.value.clone()));
        }
        if cut.is_empty() {
            return (name.to_string(), tags);
        }
        let mut out = String::with_capacity(name.len());
        for (i, c) in name.char_indices() {
            if !cut.iter().any(|r| r.contains(&i)) {
                out.push(c);
            }
        }
        (out, tags)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> TagProducer {
        TagProducer::new(true, &[]).expect("defaults")
    }

    #[test]
    fn default_cluster_and_code() {
        let (n, t) = defaults().produce("cluster.svc.upstream_rq_503");
        assert_eq!(n, "cluster.upstream_rq");
        assert_eq!(
            t,
            vec![
                ("envoy.response_code".to_string(), "503".to_string()),
                ("envoy.cluster_name".to_string(), "svc".to_string())
            ]
        );
    }

    #[test]
    fn istio_lookahead_and_semicolon_names() {
        let p = TagProducer::new(
            false,
            &[
                TagSpec::Regex("cluster_name", r"^cluster(\.(.+);)"),
                TagSpec::Regex(
                    "http_conn_manager_listener_prefix",
                    r"^listener(?=\.).*?\.http\.(((?:[_.[:digit:]]*|[_\[\]aAbBcCdDeEfF[:digit:]]*))\.)",
                ),
                TagSpec::Regex("response_code", r"_rq(_(\d{3}))$"),
            ],
        )
        .expect("istio tags");
        let (n, t) = p.produce("cluster.xds-grpc;.upstream_rq_200");
        assert_eq!(n, "cluster.upstream_rq");
        assert_eq!(t[1], ("cluster_name".to_string(), "xds-grpc".to_string()));
        let (n, t) = p.produce("listener.0.0.0.0_15090.http.stats.downstream_rq_2xx");
        assert_eq!(t.len(), 0, "{n}");
        let (n, _) = p.produce("listener.10.0.0.1_80.http.10.0.0.1_80.downstream_rq_completed");
        assert_eq!(n, "listener.10.0.0.1_80.http.downstream_rq_completed");
    }

    #[test]
    fn fixed_values_and_duplicates() {
        let p = TagProducer::new(false, &[TagSpec::Fixed("mesh", "m1")]).expect("fixed");
        assert_eq!(
            p.produce("server.live").1,
            vec![("mesh".into(), "m1".into())]
        );
        assert!(
            TagProducer::new(false, &[TagSpec::Fixed("a", "1"), TagSpec::Fixed("a", "2")]).is_err()
        );
        assert!(TagProducer::new(false, &[TagSpec::Regex("x", "^nogroup")]).is_err());
    }
}
