//! `stats_config`: how stat names become Prometheus tags (`stats_tags`,
//! `use_all_default_tags`) and which stats exist (`stats_matcher`).

use super::matcher::StringMatch;
use super::{err, Result};
use crate::stats::tags::{TagProducer, TagSpec};
use crate::stats::{StatsMatcher, StatsSettings};
use envoy_types::pb::envoy::config::metrics::v3::{self as pb, stats_matcher, tag_specifier};

pub fn settings(c: &Option<pb::StatsConfig>) -> Result<StatsSettings> {
    let path = "stats_config";
    let Some(c) = c else {
        return Ok(StatsSettings {
            tags: TagProducer::new(true, &[], false).or_else(|e| err(path, e))?,
            matcher: StatsMatcher::All,
            buckets: Vec::new(),
        });
    };
    let mut specs = Vec::with_capacity(c.stats_tags.len());
    for (i, t) in c.stats_tags.iter().enumerate() {
        let tp = format!("{path}.stats_tags[{i}]");
        if t.tag_name.is_empty() {
            return err(&format!("{tp}.tag_name"), "tag_name is required");
        }
        specs.push(match &t.tag_value {
            Some(tag_specifier::TagValue::Regex(r)) => TagSpec::Regex(&t.tag_name, r),
            Some(tag_specifier::TagValue::FixedValue(v)) => TagSpec::Fixed(&t.tag_name, v),
            None => TagSpec::Regex(&t.tag_name, ""),
        });
    }
    let use_defaults = c.use_all_default_tags.as_ref().is_none_or(|b| b.value);
    let tags = TagProducer::new(
        use_defaults,
        &specs,
        c.allow_default_tag_overrides
            .as_ref()
            .is_some_and(|b| b.value),
    )
    .or_else(|e| err(&format!("{path}.stats_tags"), e))?;
    let list = |l: &envoy_types::pb::envoy::r#type::matcher::v3::ListStringMatcher, p: &str| {
        l.patterns
            .iter()
            .enumerate()
            .map(|(i, m)| StringMatch::from_proto(m, &format!("{p}.patterns[{i}]")))
            .collect::<Result<Vec<_>>>()
    };
    let mp = format!("{path}.stats_matcher");
    let matcher = match c
        .stats_matcher
        .as_ref()
        .and_then(|m| m.stats_matcher.as_ref())
    {
        None => StatsMatcher::All,
        Some(stats_matcher::StatsMatcher::RejectAll(true)) => StatsMatcher::RejectAll,
        Some(stats_matcher::StatsMatcher::RejectAll(false)) => StatsMatcher::All,
        Some(stats_matcher::StatsMatcher::InclusionList(l)) => {
            StatsMatcher::Include(list(l, &format!("{mp}.inclusion_list"))?)
        }
        Some(stats_matcher::StatsMatcher::ExclusionList(l)) => {
            StatsMatcher::Exclude(list(l, &format!("{mp}.exclusion_list"))?)
        }
    };
    let mut buckets = Vec::with_capacity(c.histogram_bucket_settings.len());
    for (i, h) in c.histogram_bucket_settings.iter().enumerate() {
        let hp = format!("{path}.histogram_bucket_settings[{i}]");
        let Some(m) = &h.r#match else {
            return err(&format!("{hp}.match"), "match is required");
        };
        if h.buckets.is_empty() || h.buckets.windows(2).any(|w| w[0] >= w[1]) {
            return err(
                &format!("{hp}.buckets"),
                "buckets must be non-empty and increasing",
            );
        }
        buckets.push((
            StringMatch::from_proto(m, &format!("{hp}.match"))?,
            std::sync::Arc::from(h.buckets.clone()),
        ));
    }
    Ok(StatsSettings {
        tags,
        matcher,
        buckets,
    })
}
