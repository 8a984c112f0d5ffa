//! Access log filters: which streams a logger writes (status code, duration, response flags,
//! headers, gRPC status, sampling, and their `and`/`or` combinations).

use super::ops::grpc_code;
use crate::config::route::HeaderMatch;
use crate::config::{err, Result};
use crate::stream_info::{Flag, StreamInfo};
use envoy_types::pb::envoy::config::accesslog::v3 as pb;
use pb::access_log_filter::FilterSpecifier as F;

#[derive(Debug, Clone, Copy)]
pub enum Op {
    Eq,
    Ge,
    Le,
    Ne,
}

#[derive(Debug, Clone, Copy)]
pub struct Comparison {
    op: Op,
    value: u64,
}

impl Comparison {
    fn from_proto(c: Option<&pb::ComparisonFilter>, path: &str) -> Result<Comparison> {
        let Some(c) = c else {
            return err(&format!("{path}.comparison"), "comparison is required");
        };
        let op = match c.op {
            0 => Op::Eq,
            1 => Op::Ge,
            2 => Op::Le,
            3 => Op::Ne,
            _ => return err(&format!("{path}.comparison.op"), "unknown comparison"),
        };
        let Some(v) = &c.value else {
            return err(&format!("{path}.comparison.value"), "value is required");
        };
        Ok(Comparison {
            op,
            value: u64::from(v.default_value),
        })
    }

    fn holds(self, x: u64) -> bool {
        match self.op {
            Op::Eq => x == self.value,
            Op::Ge => x >= self.value,
            Op::Le => x <= self.value,
            Op::Ne => x != self.value,
        }
    }
}

#[derive(Debug)]
pub enum Filter {
    Status(Comparison),
    Duration(Comparison),
    NotHealthCheck,
    /// `runtime_filter`: logs this share of streams (per million).
    Sampled(u64),
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Header(HeaderMatch),
    /// Any of these flags; an empty list: any flag at all.
    Flags(Vec<Flag>),
    Grpc {
        statuses: Vec<u64>,
        exclude: bool,
    },
}

impl Filter {
    pub fn from_proto(f: &pb::AccessLogFilter, path: &str) -> Result<Filter> {
        let list = |fs: &[pb::AccessLogFilter], p: &str| -> Result<Vec<Filter>> {
            fs.iter()
                .enumerate()
                .map(|(i, f)| Filter::from_proto(f, &format!("{p}.filters[{i}]")))
                .collect()
        };
        Ok(match &f.filter_specifier {
            Some(F::StatusCodeFilter(s)) => {
                let p = format!("{path}.status_code_filter");
                Filter::Status(Comparison::from_proto(s.comparison.as_ref(), &p)?)
            }
            Some(F::DurationFilter(d)) => {
                let p = format!("{path}.duration_filter");
                Filter::Duration(Comparison::from_proto(d.comparison.as_ref(), &p)?)
            }
            Some(F::NotHealthCheckFilter(_)) => Filter::NotHealthCheck,
            Some(F::RuntimeFilter(r)) => {
                let per_million = match &r.percent_sampled {
                    // Without a runtime value, the default share: 0 when none is given.
                    None => 0,
                    Some(p) => {
                        let scale = match p.denominator {
                            0 => 10_000,
                            1 => 100,
                            _ => 1,
                        };
                        (u64::from(p.numerator) * scale).min(1_000_000)
                    }
                };
                Filter::Sampled(per_million)
            }
            Some(F::AndFilter(a)) => Filter::And(list(&a.filters, &format!("{path}.and_filter"))?),
            Some(F::OrFilter(o)) => Filter::Or(list(&o.filters, &format!("{path}.or_filter"))?),
            Some(F::HeaderFilter(h)) => {
                let p = format!("{path}.header_filter.header");
                let Some(m) = &h.header else {
                    return err(&p, "header is required");
                };
                Filter::Header(HeaderMatch::from_proto(m, &p)?)
            }
            Some(F::ResponseFlagFilter(r)) => {
                let mut flags = Vec::new();
                for (i, name) in r.flags.iter().enumerate() {
                    match Flag::parse(name) {
                        Some(f) => flags.push(f),
                        None => {
                            return err(
                                &format!("{path}.response_flag_filter.flags[{i}]"),
                                format!("response flag {name} is not supported by Ferry"),
                            )
                        }
                    }
                }
                Filter::Flags(flags)
            }
            Some(F::GrpcStatusFilter(g)) => Filter::Grpc {
                statuses: g.statuses.iter().map(|s| *s as u64).collect(),
                exclude: g.exclude,
            },
            Some(F::TraceableFilter(_)) => {
                return err(
                    &format!("{path}.traceable_filter"),
                    "tracing is not supported by Ferry",
                )
            }
            Some(F::MetadataFilter(_)) => {
                return err(
                    &format!("{path}.metadata_filter"),
                    "metadata filters are not supported by Ferry",
                )
            }
            Some(F::LogTypeFilter(_)) => {
                return err(
                    &format!("{path}.log_type_filter"),
                    "log type filters are not supported by Ferry",
                )
            }
            Some(F::ExtensionFilter(e)) => {
                return err(
                    &format!("{path}.extension_filter"),
                    format!(
                        "access log filter extension {} is not supported by Ferry",
                        e.name
                    ),
                )
            }
            None => return err(path, "a filter needs one of its kinds set"),
        })
    }

    pub fn matches(&self, s: &StreamInfo) -> bool {
        match self {
            Filter::Status(c) => c.holds(u64::from(s.code)),
            Filter::Duration(c) => c.holds(s.ended.map_or(0, |e| s.ms_to(e))),
            Filter::NotHealthCheck => true,
            Filter::Sampled(per_million) => fastrand::u64(0..1_000_000) < *per_million,
            Filter::And(fs) => fs.iter().all(|f| f.matches(s)),
            Filter::Or(fs) => fs.iter().any(|f| f.matches(s)),
            Filter::Header(m) => s.request.as_ref().is_some_and(|r| m.matches(&r.headers)),
            Filter::Flags(fs) if fs.is_empty() => !s.flags.is_empty(),
            Filter::Flags(fs) => s.flags.iter().any(|f| fs.contains(f)),
            Filter::Grpc { statuses, exclude } => {
                // A stream without a gRPC status reads as UNKNOWN (2), as in Envoy.
                let code = grpc_code(s).unwrap_or(2);
                statuses.contains(&code) != *exclude
            }
        }
    }
}
