//! Listener filters: `original_dst`, `tls_inspector` and `http_inspector`, each optionally
//! disabled for some connections by a `filter_disabled` predicate on the destination port.

use super::{err, opt_duration, type_name, Result};
use envoy_types::pb::envoy::config::listener::v3 as pb;
use envoy_types::pb::envoy::config::listener::v3::listener_filter_chain_match_predicate::Rule;
use std::time::Duration;

/// `ListenerFilterChainMatchPredicate`: when it matches, the filter it belongs to is skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Predicate {
    Or(Vec<Predicate>),
    And(Vec<Predicate>),
    Not(Box<Predicate>),
    Any,
    /// `destination_port_range`: `[start, end)`.
    Port(i64, i64),
}

impl Predicate {
    fn from_proto(p: &pb::ListenerFilterChainMatchPredicate, path: &str) -> Result<Predicate> {
        let set = |s: &Option<pb::listener_filter_chain_match_predicate::MatchSet>, f: &str| {
            let rules = s.as_ref().map(|s| s.rules.as_slice()).unwrap_or_default();
            if rules.len() < 2 {
                return err(
                    &format!("{path}.{f}.rules"),
                    "at least 2 rules are required",
                );
            }
            rules
                .iter()
                .enumerate()
                .map(|(i, r)| Predicate::from_proto(r, &format!("{path}.{f}.rules[{i}]")))
                .collect::<Result<Vec<_>>>()
        };
        Ok(match &p.rule {
            Some(Rule::OrMatch(s)) => Predicate::Or(set(&Some(s.clone()), "or_match")?),
            Some(Rule::AndMatch(s)) => Predicate::And(set(&Some(s.clone()), "and_match")?),
            Some(Rule::NotMatch(n)) => Predicate::Not(Box::new(Predicate::from_proto(
                n,
                &format!("{path}.not_match"),
            )?)),
            Some(Rule::AnyMatch(true)) => Predicate::Any,
            Some(Rule::AnyMatch(false)) => {
                return err(&format!("{path}.any_match"), "any_match must be true")
            }
            Some(Rule::DestinationPortRange(r)) => {
                if r.start > r.end {
                    return err(
                        &format!("{path}.destination_port_range"),
                        "start must not be greater than end",
                    );
                }
                Predicate::Port(i64::from(r.start), i64::from(r.end))
            }
            None => return err(path, "a rule is required"),
        })
    }

    /// Whether the predicate matches a connection to `port` (the restored destination port when
    /// an `original_dst` filter ran first).
    pub fn matches(&self, port: u16) -> bool {
        self.hit(i64::from(port))
    }

    fn hit(&self, port: i64) -> bool {
        match self {
            Predicate::Or(v) => v.iter().any(|p| p.hit(port)),
            Predicate::And(v) => v.iter().all(|p| p.hit(port)),
            Predicate::Not(p) => !p.hit(port),
            Predicate::Any => true,
            Predicate::Port(start, end) => *start <= port && port < *end,
        }
    }
}

/// One inspecting listener filter: on unless its `filter_disabled` predicate matches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inspector {
    pub on: bool,
    pub disabled: Option<Predicate>,
}

impl Inspector {
    pub fn enabled_for(&self, port: u16) -> bool {
        self.on && !self.disabled.as_ref().is_some_and(|p| p.matches(port))
    }
}

/// The listener filters of a listener, in what they make Ferry do.
#[derive(Debug, Clone, Default)]
pub struct Inspectors {
    /// `original_dst` (or `use_original_dst`): the connection's local address becomes the
    /// destination it had before iptables redirected it.
    pub original_dst: bool,
    pub tls: Inspector,
    pub http: Inspector,
    /// `listener_filters_timeout` (default 15 s; 0 means none).
    pub timeout: Duration,
    /// `continue_on_listener_filters_timeout`: otherwise a connection that times out is closed.
    pub continue_on_timeout: bool,
}

impl Inspectors {
    pub fn from_proto(l: &pb::Listener, path: &str) -> Result<Inspectors> {
        let mut out = Inspectors {
            timeout: opt_duration(
                &l.listener_filters_timeout,
                &format!("{path}.listener_filters_timeout"),
            )?
            .unwrap_or(Duration::from_secs(15)),
            continue_on_timeout: l.continue_on_listener_filters_timeout,
            ..Default::default()
        };
        if out.timeout.is_zero() {
            // No timeout: wait as long as a connection may live without sending a byte.
            out.timeout = Duration::from_secs(24 * 3600);
        }
        for (i, f) in l.listener_filters.iter().enumerate() {
            let fp = format!("{path}.listener_filters[{i}]");
            let Some(pb::listener_filter::ConfigType::TypedConfig(any)) = &f.config_type else {
                return err(&fp, "typed_config is required");
            };
            let disabled = f
                .filter_disabled
                .as_ref()
                .map(|p| Predicate::from_proto(p, &format!("{fp}.filter_disabled")))
                .transpose()?;
            let inspector = Inspector { on: true, disabled };
            match type_name(any) {
                "envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector" => {
                    out.tls = inspector
                }
                "envoy.extensions.filters.listener.http_inspector.v3.HttpInspector" => {
                    out.http = inspector
                }
                "envoy.extensions.filters.listener.original_dst.v3.OriginalDst" => {
                    if inspector.disabled.is_some() {
                        return err(
                            &format!("{fp}.filter_disabled"),
                            "filter_disabled on original_dst is not supported by Ferry",
                        );
                    }
                    out.original_dst = true
                }
                other => {
                    return err(
                        &format!("{fp}.typed_config"),
                        format!("listener filter {other} is not supported yet"),
                    )
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::Predicate::*;

    #[test]
    fn predicates_match_destination_ports() {
        // Istio's virtualInbound http_inspector: disabled on 80 and on 15006.
        let p = Or(vec![Port(80, 81), Port(15006, 15007)]);
        assert!(p.matches(80) && p.matches(15006));
        assert!(!p.matches(81) && !p.matches(8080));
        assert!(Not(Box::new(p.clone())).matches(8080));
        assert!(And(vec![Port(1, 100), Not(Box::new(Port(50, 60)))]).matches(10));
        assert!(!And(vec![Port(1, 100), Not(Box::new(Port(50, 60)))]).matches(55));
        assert!(Any.matches(1));
    }
}
