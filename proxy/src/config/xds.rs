//! `dynamic_resources` and config sources: Ferry takes dynamic configuration over ADS.

use super::{err, opt_duration, Result};
use envoy_types::pb::envoy::config::bootstrap::v3::bootstrap::DynamicResources;
use envoy_types::pb::envoy::config::core::v3::{
    config_source::ConfigSourceSpecifier, grpc_service::TargetSpecifier, ConfigSource,
};
use std::time::Duration;

/// How the bootstrap asks for dynamic configuration.
#[derive(Debug, Clone)]
pub struct Dynamic {
    /// The static cluster the ADS gRPC stream goes to.
    pub cluster: String,
    pub node_on_first_only: bool,
    /// `api_type: DELTA_GRPC`.
    pub delta: bool,
    pub lds: bool,
    pub cds: bool,
    /// Envoy's default is 15 s; `0s` waits for ever.
    pub initial_fetch_timeout: Option<Duration>,
}

/// A config source must be `ads: {}` (the only transport Ferry speaks); returns its
/// `initial_fetch_timeout` (default 15 s, `0s` = none).
pub fn ads_source(cs: &ConfigSource, path: &str) -> Result<Option<Duration>> {
    match &cs.config_source_specifier {
        Some(ConfigSourceSpecifier::Ads(_)) => {}
        _ => return err(path, "only `ads: {}` config sources are supported by Ferry"),
    }
    if cs.resource_api_version == 1 {
        return err(
            &format!("{path}.resource_api_version"),
            "only the v3 API is supported",
        );
    }
    Ok(
        match opt_duration(
            &cs.initial_fetch_timeout,
            &format!("{path}.initial_fetch_timeout"),
        )? {
            None => Some(Duration::from_secs(15)),
            Some(d) if d.is_zero() => None,
            Some(d) => Some(d),
        },
    )
}

/// The config source of an SDS secret: `ads: {}`, or a gRPC `api_config_source` naming one
/// `envoy_grpc` cluster.
pub fn sds_source(cs: &ConfigSource, path: &str) -> Result<super::tls::SdsSource> {
    use super::tls::SdsSource;
    if cs.resource_api_version == 1 {
        return err(
            &format!("{path}.resource_api_version"),
            "only the v3 API is supported",
        );
    }
    match &cs.config_source_specifier {
        Some(ConfigSourceSpecifier::Ads(_)) => Ok(SdsSource::Ads),
        Some(ConfigSourceSpecifier::ApiConfigSource(a)) => {
            let ap = format!("{path}.api_config_source");
            if a.api_type != 2 {
                return err(&format!("{ap}.api_type"), "only GRPC is supported for SDS");
            }
            match a.grpc_services.as_slice() {
                [g] if !g.initial_metadata.is_empty() => err(
                    &format!("{ap}.grpc_services[0].initial_metadata"),
                    "initial_metadata on the SDS stream is not supported by Ferry yet",
                ),
                [g] => match &g.target_specifier {
                    Some(TargetSpecifier::EnvoyGrpc(e)) if !e.cluster_name.is_empty() => {
                        Ok(SdsSource::Api {
                            cluster: e.cluster_name.clone(),
                        })
                    }
                    _ => err(
                        &format!("{ap}.grpc_services[0]"),
                        "an envoy_grpc cluster_name is required (google_grpc is not supported yet)",
                    ),
                },
                _ => err(
                    &format!("{ap}.grpc_services"),
                    "exactly one grpc_service is required",
                ),
            }
        }
        _ => err(
            path,
            "only `ads: {}` and gRPC api_config_source are supported for SDS",
        ),
    }
}

pub fn dynamic(d: &DynamicResources, path: &str) -> Result<Dynamic> {
    let Some(ads) = &d.ads_config else {
        return err(
            &format!("{path}.ads_config"),
            "ads_config is required (Ferry takes dynamic configuration over ADS)",
        );
    };
    let ap = format!("{path}.ads_config");
    match ads.api_type {
        2 | 3 => {}
        _ => {
            return err(
                &format!("{ap}.api_type"),
                "only GRPC and DELTA_GRPC are supported",
            )
        }
    }
    if ads.grpc_services.len() != 1 {
        return err(
            &format!("{ap}.grpc_services"),
            "exactly one grpc_service is required",
        );
    }
    if !ads.grpc_services[0].initial_metadata.is_empty() {
        return err(
            &format!("{ap}.grpc_services[0].initial_metadata"),
            "initial_metadata on the xDS stream is not supported by Ferry yet",
        );
    }
    let cluster = match &ads.grpc_services[0].target_specifier {
        Some(TargetSpecifier::EnvoyGrpc(e)) if !e.cluster_name.is_empty() => e.cluster_name.clone(),
        _ => {
            return err(
                &format!("{ap}.grpc_services[0]"),
                "an envoy_grpc cluster_name is required (google_grpc is not supported yet)",
            )
        }
    };
    let mut initial_fetch_timeout = Some(Duration::from_secs(15));
    if let Some(l) = &d.lds_config {
        initial_fetch_timeout = ads_source(l, &format!("{path}.lds_config"))?;
    }
    if let Some(c) = &d.cds_config {
        initial_fetch_timeout = ads_source(c, &format!("{path}.cds_config"))?;
    }
    Ok(Dynamic {
        cluster,
        node_on_first_only: ads.set_node_on_first_message_only,
        delta: ads.api_type == 3,
        lds: d.lds_config.is_some(),
        cds: d.cds_config.is_some(),
        initial_fetch_timeout,
    })
}
