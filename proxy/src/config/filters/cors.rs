//! `envoy.filters.http.cors`: the filter itself has no settings; each route, virtual host or
//! route table may carry a `CorsPolicy`, merged field by field, most specific first.

use super::super::matcher::StringMatch;
use super::super::Result;
use super::Percent;
use crate::stats::{Block, Cell, Kind};
use envoy_types::pb::envoy::extensions::filters::http::cors::v3::CorsPolicy as Pb;

/// One level's policy; unset fields come from less specific levels.
#[derive(Debug, Default)]
pub struct CorsPolicy {
    pub allow_origin: Vec<StringMatch>,
    pub allow_methods: String,
    pub allow_headers: String,
    pub expose_headers: String,
    pub max_age: String,
    pub allow_credentials: Option<bool>,
    pub forward_not_matching_preflights: Option<bool>,
    /// `filter_enabled` and `shadow_enabled` (unset: enabled, not shadow).
    pub enabled: Option<Percent>,
    pub shadow: Option<Percent>,
}

impl CorsPolicy {
    pub fn from_proto(p: &Pb, path: &str) -> Result<CorsPolicy> {
        let pct =
            |r: &Option<envoy_types::pb::envoy::config::core::v3::RuntimeFractionalPercent>,
             f: &str|
             -> Result<Option<Percent>> {
                r.as_ref()
                    .map(|r| {
                        Percent::from_proto(&r.default_value, &format!("{path}.{f}.default_value"))
                    })
                    .transpose()
            };
        Ok(CorsPolicy {
            allow_origin: p
                .allow_origin_string_match
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    StringMatch::from_proto(m, &format!("{path}.allow_origin_string_match[{i}]"))
                })
                .collect::<Result<_>>()?,
            allow_methods: p.allow_methods.clone(),
            allow_headers: p.allow_headers.clone(),
            expose_headers: p.expose_headers.clone(),
            max_age: p.max_age.clone(),
            allow_credentials: p.allow_credentials.as_ref().map(|b| b.value),
            forward_not_matching_preflights: p
                .forward_not_matching_preflights
                .as_ref()
                .map(|b| b.value),
            enabled: pct(&p.filter_enabled, "filter_enabled")?,
            shadow: pct(&p.shadow_enabled, "shadow_enabled")?,
        })
    }
}

/// `http.<prefix>.cors.*`.
#[derive(Debug, Default)]
pub struct CorsStats {
    pub origin_valid: Cell,
    pub origin_invalid: Cell,
}

impl Block for CorsStats {
    fn visit(&self, f: &mut dyn FnMut(&str, Kind, u64)) {
        f("cors.origin_valid", Kind::Counter, self.origin_valid.get());
        f(
            "cors.origin_invalid",
            Kind::Counter,
            self.origin_invalid.get(),
        );
    }
}
