//! Istio's built-in "null VM" Wasm plugins, as istiod's older telemetry configs name them:
//! `envoy.wasm.metadata_exchange` and `envoy.wasm.stats`, compiled into istio-proxy and loaded
//! by name through the Wasm filter (`vm_config.runtime: envoy.wasm.runtime.null`, code
//! `local.inline_string`). Ferry runs no Wasm; it maps these two onto its native
//! implementations of the same behaviour and refuses any other module.

use crate::config::{err, load, type_name, Result};
use envoy_types::pb::envoy::config::core::v3::{async_data_source, data_source};
use envoy_types::pb::envoy::extensions::wasm::v3::{plugin_config::Vm, PluginConfig};
use envoy_types::pb::google::protobuf::Any;

pub const HTTP_WASM: &str = "envoy.extensions.filters.http.wasm.v3.Wasm";
pub const NETWORK_WASM: &str = "envoy.extensions.filters.network.wasm.v3.Wasm";

/// What a null-VM plugin stands for.
pub enum Plugin {
    /// Peer metadata in `x-envoy-peer-metadata(-id)` headers, both ways, both sides.
    MetadataExchange,
    /// Istio's standard metrics, with the plugin's configuration.
    Stats(Box<crate::istio::stats::IstioStats>),
}

/// The plugin a Wasm filter's config names, at `path` (the filter's typed_config).
pub fn plugin(config: &Option<PluginConfig>, path: &str) -> Result<Plugin> {
    let Some(pc) = config else {
        return err(&format!("{path}.config"), "config is required");
    };
    let vp = format!("{path}.config.vm_config");
    let Some(Vm::VmConfig(vm)) = &pc.vm else {
        return err(
            &vp,
            "only Istio's null-VM plugins are supported by Ferry (no vm_config)",
        );
    };
    let code = vm.code.as_ref().and_then(|c| match &c.specifier {
        Some(async_data_source::Specifier::Local(d)) => match &d.specifier {
            Some(data_source::Specifier::InlineString(s)) => Some(s.as_str()),
            _ => None,
        },
        _ => None,
    });
    if vm.runtime != "envoy.wasm.runtime.null" {
        return err(
            &format!("{vp}.runtime"),
            format!(
                "Wasm runtime '{}' is not supported by Ferry: it runs no Wasm, only Istio's built-in null-VM plugins natively",
                vm.runtime
            ),
        );
    }
    match code {
        Some("envoy.wasm.metadata_exchange") => Ok(Plugin::MetadataExchange),
        Some("envoy.wasm.stats") => {
            let cfg = stats_config(&pc.configuration, &format!("{path}.config.configuration"))?;
            Ok(Plugin::Stats(Box::new(
                crate::istio::stats::IstioStats::from_proto(
                    &cfg,
                    &format!("{path}.config.configuration"),
                )?,
            )))
        }
        other => err(
            &format!("{vp}.code"),
            format!(
                "null-VM plugin {} is not one Ferry implements (envoy.wasm.stats, envoy.wasm.metadata_exchange)",
                other.unwrap_or("(none)")
            ),
        ),
    }
}

/// The stats plugin's configuration: a `stats.PluginConfig`, or its JSON in a StringValue (as
/// istiod wrote it), or nothing (the defaults).
fn stats_config(any: &Option<Any>, path: &str) -> Result<crate::istio::proto::PluginConfig> {
    let Some(any) = any else {
        return Ok(Default::default());
    };
    match type_name(any) {
        "stats.PluginConfig" => crate::config::any_to(any, path),
        "google.protobuf.StringValue" => {
            let s: envoy_types::pb::google::protobuf::StringValue =
                crate::config::any_to(any, path)?;
            if s.value.trim().is_empty() {
                return Ok(Default::default());
            }
            let desc = load::descriptor("stats.PluginConfig");
            let raw = load::from_json(s.value.as_bytes(), &desc, false).map_err(|e| {
                crate::config::ConfigError {
                    path: format!("{path}.value{}", e.path),
                    msg: e.msg,
                }
            })?;
            load::to_typed(&raw)
        }
        other => err(
            path,
            format!("a stats plugin configuration of type {other} is not supported by Ferry"),
        ),
    }
}
