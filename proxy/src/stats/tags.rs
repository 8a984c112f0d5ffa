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
    /// A value that gives no tag.
    negative: Option<&'static str>,
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

/// Envoy's default extractors in Envoy's order of registration (its regex ones, then its
/// token patterns, written here as the equivalent regexes): tag name, regex, substring hint,
/// and a value that means "no tag".
pub const DEFAULTS: &[(&str, &str, Option<&str>, Option<&str>)] = &[
    ("envoy.response_code", r"_rq(_(\d{3}))$", Some("_rq_"), None),
    (
        "envoy.response_code_class",
        r"_rq_((\d))xx$",
        Some("_rq_"),
        None,
    ),
    (
        "envoy.dynamo_partition_id",
        r"^http\.[^\.]+\.dynamodb\.table\.[^\.]+\.capacity\.[^\.]+(\.__partition_id=(\w{7}))$",
        Some(".dynamodb.table."),
        None,
    ),
    (
        "envoy.dynamo_operation",
        r"^http\.[^\.]+\.dynamodb.(?:operation|table\.[^\.]+\.capacity)(\.([^\.]+))(?:\.|$)",
        Some(".dynamodb."),
        None,
    ),
    (
        "envoy.dynamo_table",
        r"^http\.[^\.]+\.dynamodb.(?:table|error)\.(([^\.]+)\.)",
        Some(".dynamodb."),
        None,
    ),
    (
        "envoy.ssl_cipher",
        r"^listener\..*?\.ssl\.ciphers(\.([\w-]+))$",
        Some(".ssl.ciphers."),
        None,
    ),
    (
        "envoy.ssl_curve",
        r"^(?:listener|cluster)\..*?\.ssl\.curves(\.([\w-]+))$",
        Some(".ssl.curves."),
        None,
    ),
    (
        "envoy.ssl_sigalg",
        r"^(?:listener|cluster)\..*?\.ssl\.sigalgs(\.([\w-]+))$",
        Some(".ssl.sigalgs."),
        None,
    ),
    (
        "envoy.ssl_version",
        r"^(?:listener|cluster)\..*?\.ssl\.versions(\.(TLSv\d\.\d))$",
        Some(".ssl.versions."),
        None,
    ),
    (
        "cipher_suite",
        r"^cluster\.[^\.]+\.ssl\.ciphers(\.([\w-]+))$",
        Some(".ssl.ciphers."),
        None,
    ),
    (
        "envoy.http_conn_manager_prefix",
        r"^listener\..*?\.http\.(([^\.]+)\.)",
        Some(".http."),
        None,
    ),
    (
        "envoy.worker_id",
        r"^(?:listener\.(?:(?:\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}|\[[a-fA-F_\d]+\])_\d+|[^\.]+)|server|listener_manager|thread_local_cluster_manager)\.worker_((\d+)\.)",
        None,
        None,
    ),
    (
        "envoy.listener_address",
        r"^listener\.(((?:\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}|\[[a-fA-F_\d]+\])_\d+|[^\.]+)\.)",
        None,
        Some("admin"),
    ),
    (
        "envoy.rds_route_config",
        r"^http\.[^\.]+\.rds\.(([\w\-\./]+)\.)\w+?$",
        Some(".rds."),
        None,
    ),
    (
        "envoy.rbac_http_prefix",
        r"^http\.[^\.]+\.rbac\.(([^\.]+)\.).*?",
        None,
        Some("policy"),
    ),
    (
        "envoy.rbac_policy_name",
        r"^http\.[^\.]+\.rbac\.(?:[^\.]+\.)?policy\.(([^\.]+)\.)(allowed|shadow_allowed|denied|shadow_denied)$",
        None,
        None,
    ),
    (
        "envoy.proxy_protocol_prefix",
        r"^proxy_proto\.(([^\.]+)\.).+$",
        None,
        Some("versions"),
    ),
    (
        "envoy.proxy_protocol_version",
        r"^proxy_proto\.((?:[^\.]+\.)?versions\.v(\d)\.)\w+$",
        None,
        None,
    ),
    (
        "envoy.scoped_rds_config",
        r"^http\.[^\.]+\.scoped_rds\.(([\w\-\.]+)\.)\w+?$",
        None,
        None,
    ),
    (
        "envoy.xds_resource_name",
        r"^sds\.(([^\.]+)\.).+",
        None,
        None,
    ),
    (
        "envoy.tls_certificate",
        r"^(?:listener|cluster)\..*?\.ssl\.certificate\.(([^\.]+)\.).*$",
        None,
        None,
    ),
    // Token patterns.
    (
        "envoy.mongo_callsite",
        r"^mongo\.[^\.]+\.collection\.[^\.]+\.callsite\.(([^\.]+)\.)query\.",
        None,
        None,
    ),
    (
        "envoy.mongo_collection",
        r"^mongo\.[^\.]+\.collection\.(([^\.]+)\.)(?:.*\.)?query\.[^\.]+$",
        None,
        None,
    ),
    (
        "envoy.mongo_cmd",
        r"^mongo\.[^\.]+\.cmd\.(([^\.]+)\.)",
        None,
        None,
    ),
    (
        "envoy.grpc_bridge_method",
        r"^cluster\.[^\.]+\.grpc\.[^\.]+\.(([^\.]+)\.)",
        None,
        None,
    ),
    (
        "envoy.http_user_agent",
        r"^http\.[^\.]+\.user_agent\.(([^\.]+)\.)",
        None,
        None,
    ),
    (
        "envoy.virtual_cluster",
        r"^vhost\.[^\.]+\.vcluster\.(([^\.]+)\.)",
        None,
        None,
    ),
    (
        "envoy.fault_downstream_cluster",
        r"^http\.[^\.]+\.fault\.(([^\.]+)\.)",
        None,
        None,
    ),
    (
        "envoy.grpc_bridge_service",
        r"^cluster\.[^\.]+\.grpc\.(([^\.]+)\.)",
        None,
        None,
    ),
    ("envoy.tcp_prefix", r"^tcp\.(([^\.]+)\.)", None, None),
    ("envoy.udp_prefix", r"^udp\.(([^\.]+)\.)", None, None),
    (
        "envoy.clientssl_prefix",
        r"^auth\.clientssl\.(([^\.]+)\.)",
        None,
        None,
    ),
    (
        "envoy.ratelimit_prefix",
        r"^ratelimit\.(([^\.]+)\.)",
        None,
        None,
    ),
    ("envoy.cluster_name", r"^cluster\.(([^\.]+)\.)", None, None),
    (
        "envoy.ext_authz_prefix",
        r"^cluster\.[^\.]+\.ext_authz\.(([^\.]+)\.)",
        None,
        None,
    ),
    (
        "envoy.ext_authz_prefix",
        r"^http\.[^\.]+\.ext_authz\.(([^\.]+)\.)",
        None,
        None,
    ),
    (
        "envoy.http_conn_manager_prefix",
        r"^http\.(([^\.]+)\.)",
        None,
        None,
    ),
    ("envoy.virtual_host", r"^vhost\.(([^\.]+)\.)", None, None),
    ("envoy.mongo_prefix", r"^mongo\.(([^\.]+)\.)", None, None),
    (
        "envoy.route",
        r"^vhost\.[^\.]+\.route\.(([^\.]+)\.)",
        None,
        None,
    ),
    ("envoy.thrift_prefix", r"^thrift\.(([^\.]+)\.)", None, None),
    ("envoy.redis_prefix", r"^redis\.(([^\.]+)\.)", None, None),
    (
        "envoy.local_http_ratelimit_prefix",
        r"^(([^\.]+)\.)http_local_rate_limit\.",
        None,
        None,
    ),
    (
        "envoy.local_network_ratelimit_prefix",
        r"^local_rate_limit\.(([^\.]+)\.)",
        None,
        None,
    ),
    (
        "envoy.local_listener_ratelimit_prefix",
        r"^listener_local_ratelimit\.(([^\.]+)\.)",
        None,
        None,
    ),
    (
        "envoy.dns_filter_prefix",
        r"^dns_filter\.(([^\.]+)\.)",
        None,
        None,
    ),
    (
        "envoy.connection_limit_prefix",
        r"^connection_limit\.(([^\.]+)\.)",
        None,
        None,
    ),
    ("envoy.rbac_prefix", r"^(([^\.]+)\.)rbac\.", None, None),
    (
        "envoy.google_grpc_client_prefix",
        r"^grpc\.(([^\.]+)\.)",
        None,
        None,
    ),
];

/// Envoy's prefix token of a regex: `^token` followed by `\.`, `(?=\.)` or the end.
fn regex_prefix(re: &str) -> Option<String> {
    let rest = re.strip_prefix('^')?;
    let end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    if end == 0 {
        return None;
    }
    let after = &rest[end..];
    if after == "$" || after.starts_with("\\.") || after.starts_with("(?=\\.)") {
        Some(rest[..end].to_string())
    } else {
        None
    }
}

impl TagProducer {
    /// From `use_all_default_tags` (true when unset) and the configured tags: Envoy's
    /// defaults first, then the configured ones in order. A configured tag named like a
    /// default one only applies when the default does not match, unless `overrides`
    /// (`allow_default_tag_overrides`) makes it replace the default.
    pub fn new(
        use_defaults: bool,
        specs: &[TagSpec<'_>],
        overrides: bool,
    ) -> Result<TagProducer, String> {
        let mut with_prefix = Vec::new();
        let mut without = Vec::new();
        let mut fixed = Vec::new();
        let mut add = |name: &str,
                       re: &str,
                       substr: Option<&'static str>,
                       negative: Option<&'static str>|
         -> Result<(), String> {
            if re.len() > 1024 {
                return Err(format!("regex for tag '{name}' is longer than 1024 bytes"));
            }
            let regex = Regex::new(re).map_err(|e| format!("Invalid regex '{re}': {e}"))?;
            let e = Extractor {
                name: name.to_string(),
                prefix: regex_prefix(re),
                regex,
                substr,
                negative,
            };
            if e.prefix.is_some() {
                with_prefix.push(e);
            } else {
                without.push(e);
            }
            Ok(())
        };
        let configured: Vec<&str> = specs
            .iter()
            .map(|s| match s {
                TagSpec::Regex(n, _) | TagSpec::Fixed(n, _) => *n,
            })
            .collect();
        if use_defaults {
            for (n, re, sub, neg) in DEFAULTS {
                if overrides && configured.contains(n) {
                    continue;
                }
                add(n, re, *sub, *neg)?;
            }
        }
        for spec in specs {
            match spec {
                TagSpec::Fixed(n, v) => fixed.push(Fixed {
                    name: n.to_string(),
                    value: v.to_string(),
                }),
                TagSpec::Regex(n, "") => {
                    // A default tag named without a regex: the default's regexes.
                    let defaults: Vec<_> = DEFAULTS.iter().filter(|d| d.0 == *n).collect();
                    if defaults.is_empty() {
                        return Err(format!(
                            "No regex specified for tag specifier and no default regex for name: '{n}'"
                        ));
                    }
                    if !use_defaults || overrides {
                        for (n, re, sub, neg) in defaults {
                            add(n, re, *sub, *neg)?;
                        }
                    }
                }
                TagSpec::Regex(n, re) => add(n, re, None, None)?,
            }
        }
        without.append(&mut with_prefix);
        Ok(TagProducer {
            extractors: without,
            fixed,
        })
    }

    /// The tag-extracted name and the tags, in Envoy's order: extractors without a prefix
    /// token, then those of the name's first token; fixed tags after the extractors without
    /// a prefix. A tag name already extracted is not extracted again.
    pub fn produce(&self, name: &str) -> (String, Vec<(String, String)>) {
        let first = name.split('.').next().unwrap_or(name);
        let mut cut: Vec<Range<usize>> = Vec::new();
        let mut tags: Vec<(String, String)> = Vec::new();
        let mut fixed_done = false;
        for e in &self.extractors {
            if !fixed_done && e.prefix.is_some() {
                fixed_done = true;
                self.push_fixed(&mut tags);
            }
            if e.prefix.as_deref().is_some_and(|p| p != first)
                || e.substr.is_some_and(|s| !name.contains(s))
                || tags.iter().any(|(n, _)| *n == e.name)
            {
                continue;
            }
            let Ok(Some(caps)) = e.regex.captures(name) else {
                continue;
            };
            let Some(remove) = caps.get(1).filter(|m| !m.as_str().is_empty()) else {
                continue;
            };
            let value = caps
                .get(2)
                .filter(|m| !m.as_str().is_empty())
                .unwrap_or(remove)
                .as_str();
            if e.negative == Some(value) {
                continue;
            }
            tags.push((e.name.clone(), value.trim_end_matches('.').to_string()));
            cut.push(remove.range());
        }
        if !fixed_done {
            self.push_fixed(&mut tags);
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

    fn push_fixed(&self, tags: &mut Vec<(String, String)>) {
        for f in &self.fixed {
            if !tags.iter().any(|(n, _)| *n == f.name) {
                tags.push((f.name.clone(), f.value.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> TagProducer {
        TagProducer::new(true, &[], false).expect("defaults")
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
    fn default_labels_in_envoys_order() {
        let p = defaults();
        let (n, t) = p.produce("listener.127.0.0.1_20010.http.ingress_http.downstream_rq_2xx");
        assert_eq!(n, "listener.http.downstream_rq_xx");
        let names: Vec<&str> = t.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "envoy.response_code_class",
                "envoy.http_conn_manager_prefix",
                "envoy.listener_address"
            ]
        );
        let (n, t) = p.produce("listener.admin.downstream_cx_total");
        assert_eq!(
            (n.as_str(), t.len()),
            ("listener.admin.downstream_cx_total", 0)
        );
        let (n, t) = p.produce("http.h.rds.agg/route_config.1-23.config_reload");
        assert_eq!(n, "http.rds.config_reload");
        assert_eq!(
            t[0],
            (
                "envoy.rds_route_config".into(),
                "agg/route_config.1-23".into()
            )
        );
        let (n, _) = p.produce("listener.127.0.0.1_20010.worker_0.downstream_cx_total");
        assert_eq!(n, "listener.worker_downstream_cx_total");
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
                TagSpec::Regex("response_code_class", r"_rq(_(\dxx))$"),
            ],
            false,
        )
        .expect("istio tags");
        let (n, t) = p.produce("cluster.xds-grpc;.upstream_rq_200");
        assert_eq!(n, "cluster.upstream_rq");
        assert_eq!(t[0], ("cluster_name".to_string(), "xds-grpc".to_string()));
        assert_eq!(t[1], ("response_code".to_string(), "200".to_string()));
        let (_, t) = p.produce("cluster.xds-grpc;.upstream_rq_2xx");
        assert_eq!(t[1], ("response_code_class".to_string(), "2xx".to_string()));
        let (n, t) = p.produce("listener.0.0.0.0_15090.http.stats.downstream_cx_total");
        assert_eq!(t.len(), 0, "{n}");
        let (n, _) = p.produce("listener.10.0.0.1_80.http.10.0.0.1_80.downstream_cx_total");
        assert_eq!(n, "listener.10.0.0.1_80.http.downstream_cx_total");
    }

    #[test]
    fn fixed_values_and_first_match_wins() {
        let p = TagProducer::new(false, &[TagSpec::Fixed("mesh", "m1")], false).expect("fixed");
        assert_eq!(
            p.produce("server.live").1,
            vec![("mesh".into(), "m1".into())]
        );
        // A configured cluster_name loses to the default one unless overrides are allowed.
        let custom = [TagSpec::Regex(
            "envoy.cluster_name",
            r"^cluster\.((.+?)\.)x",
        )];
        let p = TagProducer::new(true, &custom, false).expect("custom");
        assert_eq!(p.produce("cluster.a.b.x").1[0].1, "a");
        assert!(TagProducer::new(false, &[TagSpec::Regex("nope", "")], false).is_err());
    }
}
