//! The HTTP filters of a connection manager before its router, and their per-route
//! configurations (`typed_per_filter_config` on routes, virtual hosts and route tables).

pub mod compressor;
pub mod cors;
pub mod ext_authz;
pub mod fault;
pub mod grpc_stats;
pub mod network;
pub mod ratelimit;
pub mod rbac;

use super::{any_to, err, type_name, Result};
use crate::stats::{registry, Block, Cell, Kind, Scope};
use envoy_types::pb::envoy::r#type::v3::FractionalPercent;
use envoy_types::pb::google::protobuf::Any;
use fault::FaultCfg;
use ratelimit::RateLimitCfg;
use std::collections::HashMap;
use std::sync::Arc;

/// A `FractionalPercent`: on for `numerator` of every `denominator` requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Percent {
    pub numerator: u32,
    pub denominator: u32,
}

impl Percent {
    /// An unset percentage is 0 %: the fault never fires.
    pub fn from_proto(p: &Option<FractionalPercent>, path: &str) -> Result<Percent> {
        let Some(p) = p else {
            return Ok(Percent {
                numerator: 0,
                denominator: 100,
            });
        };
        let denominator = match p.denominator {
            0 => 100,
            1 => 10_000,
            2 => 1_000_000,
            _ => return err(&format!("{path}.denominator"), "unknown denominator"),
        };
        Ok(Percent {
            numerator: p.numerator,
            denominator,
        })
    }

    /// One independent draw.
    pub fn draw(&self) -> bool {
        fastrand::u64(..) % u64::from(self.denominator) < u64::from(self.numerator)
    }
}

/// `http.<prefix>.fault.*`.
#[derive(Debug, Default)]
pub struct FaultStats {
    pub aborts_injected: Cell,
    pub delays_injected: Cell,
    pub faults_overflow: Cell,
    pub response_rl_injected: Cell,
    pub active_faults: Cell,
}

impl Block for FaultStats {
    fn visit(&self, f: &mut dyn FnMut(&str, Kind, u64)) {
        use Kind::Counter as C;
        f("fault.aborts_injected", C, self.aborts_injected.get());
        f("fault.delays_injected", C, self.delays_injected.get());
        f("fault.faults_overflow", C, self.faults_overflow.get());
        f(
            "fault.response_rl_injected",
            C,
            self.response_rl_injected.get(),
        );
        f("fault.active_faults", Kind::Gauge, self.active_faults.get());
    }
}

#[derive(Debug)]
pub enum HttpFilter {
    Fault {
        cfg: Arc<FaultCfg>,
        stats: Arc<FaultStats>,
    },
    LocalRateLimit(Option<Arc<RateLimitCfg>>),
    Rbac(Arc<RbacCfg>, Arc<RbacStats>),
    /// The policies are per route.
    Cors(Arc<cors::CorsStats>),
    /// `envoy.filters.http.grpc_stats`: counted by the router once the cluster is known.
    GrpcStats(Arc<grpc_stats::GrpcStatsCfg>),
    /// `envoy.filters.http.compressor`: acts on the response.
    Compressor(Arc<compressor::CompressorCfg>),
    /// Istio's `istio.stats`: metrics at the end of each stream.
    IstioStats(Arc<crate::istio::stats::IstioStats>),
    /// Istio's `istio.metadata_exchange`: peer workloads in headers.
    PeerMetadata(crate::istio::peer::PeerMetadataCfg),
    /// Istio's `istio.alpn`: the upstream TLS ALPN list per HTTP version.
    IstioAlpn(Arc<crate::istio::alpn::AlpnOverride>),
    /// `envoy.filters.http.ext_authz`: a gRPC authorization service decides.
    ExtAuthz(Arc<ext_authz::ExtAuthzCfg>, Arc<ext_authz::ExtAuthzStats>),
}

/// The RBAC filter: its enforced and shadow engines (none: everything is allowed) and the
/// counters of each.
#[derive(Debug)]
pub struct RbacCfg {
    pub rules: Option<rbac::Engine>,
    pub shadow: Option<rbac::Engine>,
    /// `shadow_rules_stat_prefix`: also the prefix of the dynamic metadata keys the shadow
    /// engine writes (`<prefix>shadow_effective_policy_id`, `<prefix>shadow_engine_result`).
    pub shadow_prefix: String,
}

/// `http.<prefix>.rbac.[<rules_stat_prefix>.]{allowed,denied}` and the shadow pair.
#[derive(Debug)]
pub struct RbacStats {
    pub allowed: crate::stats::Counter,
    pub denied: crate::stats::Counter,
    pub shadow_allowed: crate::stats::Counter,
    pub shadow_denied: crate::stats::Counter,
}

impl RbacStats {
    /// `scope` holds the stats (`http.<prefix>` or `<prefix>` for the network filter).
    pub fn new(scope: Scope<'_>, rules_prefix: &str, shadow_prefix: &str) -> RbacStats {
        let join = |p: &str, n: &str| {
            if p.is_empty() {
                format!("rbac.{n}")
            } else if p.ends_with('.') {
                format!("rbac.{p}{n}")
            } else {
                format!("rbac.{p}.{n}")
            }
        };
        let r = registry();
        RbacStats {
            allowed: r.counter(scope.clone(), &join(rules_prefix, "allowed")),
            denied: r.counter(scope.clone(), &join(rules_prefix, "denied")),
            shadow_allowed: r.counter(scope.clone(), &join(shadow_prefix, "shadow_allowed")),
            shadow_denied: r.counter(scope, &join(shadow_prefix, "shadow_denied")),
        }
    }
}

fn rbac_cfg(
    r: &envoy_types::pb::envoy::extensions::filters::http::rbac::v3::Rbac,
    path: &str,
) -> Result<RbacCfg> {
    if r.matcher.is_some() || r.shadow_matcher.is_some() {
        return err(path, "RBAC matchers are not supported by Ferry (use rules)");
    }
    Ok(RbacCfg {
        shadow_prefix: r.shadow_rules_stat_prefix.clone(),
        rules: r
            .rules
            .as_ref()
            .map(|e| rbac::Engine::from_proto(e, &format!("{path}.rules")))
            .transpose()?,
        shadow: r
            .shadow_rules
            .as_ref()
            .map(|e| rbac::Engine::from_proto(e, &format!("{path}.shadow_rules")))
            .transpose()?,
    })
}

/// One filter of the chain, by the name per-route configurations refer to it.
#[derive(Debug)]
pub struct FilterEntry {
    pub name: String,
    pub filter: HttpFilter,
}

pub const FAULT: &str = "envoy.extensions.filters.http.fault.v3.HTTPFault";
const RBAC: &str = "envoy.extensions.filters.http.rbac.v3.RBAC";
const CORS: &str = "envoy.extensions.filters.http.cors.v3.Cors";
const COMPRESSOR: &str = "envoy.extensions.filters.http.compressor.v3.Compressor";
const GRPC_STATS: &str = "envoy.extensions.filters.http.grpc_stats.v3.FilterConfig";
const CORS_POLICY: &str = "envoy.extensions.filters.http.cors.v3.CorsPolicy";
const RBAC_PER_ROUTE: &str = "envoy.extensions.filters.http.rbac.v3.RBACPerRoute";
const LOCAL_RATE_LIMIT: &str = "envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit";
const FILTER_CONFIG: &str = "envoy.config.route.v3.FilterConfig";
const ISTIO_STATS: &str = "stats.PluginConfig";
const PEER_METADATA: &str = "io.istio.http.peer_metadata.Config";
const ISTIO_ALPN: &str = "istio.envoy.config.filter.http.alpn.v2alpha1.FilterConfig";

/// The filter of `typed_config` at `path` (any but the router).
pub fn http_filter(name: &str, any: &Any, stat_prefix: &str, path: &str) -> Result<FilterEntry> {
    let filter = match type_name(any) {
        FAULT => {
            let f = any_to(any, path)?;
            HttpFilter::Fault {
                cfg: Arc::new(FaultCfg::from_proto(&f, path)?),
                stats: registry().block(Scope::Http(stat_prefix), FaultStats::default),
            }
        }
        GRPC_STATS => HttpFilter::GrpcStats(Arc::new(grpc_stats::GrpcStatsCfg::from_proto(
            &any_to(any, path)?,
            path,
        )?)),
        COMPRESSOR => HttpFilter::Compressor(Arc::new(compressor::CompressorCfg::from_proto(
            &any_to(any, path)?,
            stat_prefix,
            path,
        )?)),
        CORS => HttpFilter::Cors(registry().block(Scope::Http(stat_prefix), Default::default)),
        ISTIO_STATS => HttpFilter::IstioStats(Arc::new(
            crate::istio::stats::IstioStats::from_proto(&any_to(any, path)?, path)?,
        )),
        ISTIO_ALPN => HttpFilter::IstioAlpn(Arc::new(
            crate::istio::alpn::AlpnOverride::from_proto(&any_to(any, path)?, path)?,
        )),
        crate::istio::wasm::HTTP_WASM => {
            let w: envoy_types::pb::envoy::extensions::filters::http::wasm::v3::Wasm =
                any_to(any, path)?;
            match crate::istio::wasm::plugin(&w.config, path)? {
                crate::istio::wasm::Plugin::MetadataExchange => {
                    HttpFilter::PeerMetadata(crate::istio::peer::PeerMetadataCfg::exchange_all())
                }
                crate::istio::wasm::Plugin::Stats(s) => HttpFilter::IstioStats(Arc::new(*s)),
            }
        }
        PEER_METADATA => HttpFilter::PeerMetadata(crate::istio::peer::PeerMetadataCfg::from_proto(
            &any_to(any, path)?,
            path,
        )?),
        RBAC => {
            let r: envoy_types::pb::envoy::extensions::filters::http::rbac::v3::Rbac =
                any_to(any, path)?;
            let stats = RbacStats::new(
                Scope::Http(stat_prefix),
                &r.rules_stat_prefix,
                &r.shadow_rules_stat_prefix,
            );
            HttpFilter::Rbac(Arc::new(rbac_cfg(&r, path)?), Arc::new(stats))
        }
        LOCAL_RATE_LIMIT => {
            let l: envoy_types::pb::envoy::extensions::filters::http::local_ratelimit::v3::LocalRateLimit = any_to(any, path)?;
            // Envoy's examples put a config without a bucket here, and the buckets per route.
            if l.token_bucket.is_none() {
                HttpFilter::LocalRateLimit(None)
            } else {
                HttpFilter::LocalRateLimit(Some(Arc::new(RateLimitCfg::from_proto(&l, path)?)))
            }
        }
        ext_authz::TYPE => {
            let cfg = ext_authz::ExtAuthzCfg::from_any(any, path)?;
            let stats = ext_authz::ExtAuthzStats::new(stat_prefix, &cfg.stat_prefix);
            HttpFilter::ExtAuthz(Arc::new(cfg), Arc::new(stats))
        }
        other => {
            return err(
                path,
                format!("HTTP filter {other} is not supported by Ferry"),
            )
        }
    };
    Ok(FilterEntry {
        name: name.to_string(),
        filter,
    })
}

/// A filter's configuration for one route, virtual host or route table.
#[derive(Debug)]
pub enum PerFilter {
    Fault(Arc<FaultCfg>),
    LocalRateLimit(Arc<RateLimitCfg>),
    /// `RBACPerRoute`: its RBAC config (none: everything is allowed).
    Rbac(Arc<RbacCfg>),
    Cors(Arc<cors::CorsPolicy>),
    ExtAuthz(Arc<ext_authz::PerRoute>),
    /// `FilterConfig { disabled: true }`: the filter is skipped.
    Disabled,
}

/// The `typed_per_filter_config` of one level, by filter name.
pub type PerFilterConfigs = Vec<(String, PerFilter)>;

pub fn per_filter_configs(m: &HashMap<String, Any>, path: &str) -> Result<PerFilterConfigs> {
    let mut out: PerFilterConfigs = Vec::with_capacity(m.len());
    let mut names: Vec<&String> = m.keys().collect();
    names.sort();
    for name in names {
        let any = &m[name];
        let fp = format!("{path}.typed_per_filter_config[{name}]");
        out.push((name.clone(), per_filter(any, &fp)?));
    }
    Ok(out)
}

fn per_filter(any: &Any, path: &str) -> Result<PerFilter> {
    Ok(match type_name(any) {
        FAULT => PerFilter::Fault(Arc::new(FaultCfg::from_proto(&any_to(any, path)?, path)?)),
        ext_authz::PER_ROUTE => {
            PerFilter::ExtAuthz(Arc::new(ext_authz::PerRoute::from_any(any, path)?))
        }
        CORS_POLICY => PerFilter::Cors(Arc::new(cors::CorsPolicy::from_proto(
            &any_to(any, path)?,
            path,
        )?)),
        RBAC_PER_ROUTE => {
            let r: envoy_types::pb::envoy::extensions::filters::http::rbac::v3::RbacPerRoute =
                any_to(any, path)?;
            PerFilter::Rbac(Arc::new(match &r.rbac {
                Some(c) => rbac_cfg(c, &format!("{path}.rbac"))?,
                None => RbacCfg {
                    shadow_prefix: String::new(),
                    rules: None,
                    shadow: None,
                },
            }))
        }
        LOCAL_RATE_LIMIT => PerFilter::LocalRateLimit(Arc::new(RateLimitCfg::from_proto(
            &any_to(any, path)?,
            path,
        )?)),
        FILTER_CONFIG => {
            let fc: envoy_types::pb::envoy::config::route::v3::FilterConfig = any_to(any, path)?;
            if fc.disabled {
                return Ok(PerFilter::Disabled);
            }
            match &fc.config {
                Some(c) => per_filter(c, &format!("{path}.config"))?,
                None => return err(&format!("{path}.config"), "config is required"),
            }
        }
        other => {
            return err(
                path,
                format!("a per-route configuration of type {other} is not supported by Ferry"),
            )
        }
    })
}
