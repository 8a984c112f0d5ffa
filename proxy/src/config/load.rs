//! Reading an Envoy bootstrap: YAML or JSON (chosen by extension, as Envoy does) or binary proto,
//! through the proto3 JSON mapping (`typed_config` Any by `@type`, Durations as "1.5s", wrappers,
//! enums by name), with `--config-yaml` merged over the file as proto `MergeFrom` does.

use super::{err, ConfigError, Result};
use prost::Message;
use prost_reflect::{DeserializeOptions, DynamicMessage, MessageDescriptor};
use std::path::Path;

pub const BOOTSTRAP: &str = "envoy.config.bootstrap.v3.Bootstrap";

pub fn descriptor(name: &str) -> MessageDescriptor {
    ferry_xds::pool::pool()
        .get_message_by_name(name)
        .unwrap_or_else(|| panic!("{name} is compiled into the descriptor pool"))
}

/// Reads the bootstrap from `path` (if any) and merges `config_yaml` (if any) over it.
pub fn bootstrap(
    path: Option<&Path>,
    config_yaml: Option<&str>,
    allow_unknown: bool,
) -> Result<DynamicMessage> {
    let desc = descriptor(BOOTSTRAP);
    let mut msg = DynamicMessage::new(desc.clone());
    if let Some(path) = path {
        let shown = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| ConfigError {
            path: shown.clone(),
            msg: format!("cannot read: {e}"),
        })?;
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        msg = match ext {
            "yaml" | "yml" => from_yaml(&bytes, &desc, allow_unknown)?,
            "json" => from_json(&bytes, &desc, allow_unknown)?,
            "pb" => {
                DynamicMessage::decode(desc.clone(), bytes.as_slice()).map_err(|e| ConfigError {
                    path: shown,
                    msg: format!("invalid binary proto: {e}"),
                })?
            }
            // Envoy tries YAML (a superset of JSON) for any other extension.
            _ => from_yaml(&bytes, &desc, allow_unknown)?,
        };
    }
    if let Some(yaml) = config_yaml {
        let overlay =
            from_yaml(yaml.as_bytes(), &desc, allow_unknown).map_err(|e| ConfigError {
                path: format!("--config-yaml: {}", e.path),
                msg: e.msg,
            })?;
        // Proto MergeFrom: scalars replace, messages merge, repeated fields append.
        msg.merge(overlay.encode_to_vec().as_slice())
            .map_err(|e| ConfigError {
                path: "--config-yaml".into(),
                msg: e.to_string(),
            })?;
    }
    Ok(msg)
}

pub fn from_yaml(
    bytes: &[u8],
    desc: &MessageDescriptor,
    allow_unknown: bool,
) -> Result<DynamicMessage> {
    let value: serde_json::Value = serde_yaml_ng::from_slice(bytes).map_err(|e| ConfigError {
        path: String::new(),
        msg: format!("invalid YAML: {e}"),
    })?;
    from_value(value, desc, allow_unknown)
}

pub fn from_json(
    bytes: &[u8],
    desc: &MessageDescriptor,
    allow_unknown: bool,
) -> Result<DynamicMessage> {
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| ConfigError {
        path: String::new(),
        msg: format!("invalid JSON: {e}"),
    })?;
    from_value(value, desc, allow_unknown)
}

/// Proto3 JSON mapping with the failing field's path tracked.
pub fn from_value(
    value: serde_json::Value,
    desc: &MessageDescriptor,
    allow_unknown: bool,
) -> Result<DynamicMessage> {
    if value.is_null() {
        return Ok(DynamicMessage::new(desc.clone()));
    }
    let opts = DeserializeOptions::new().deny_unknown_fields(!allow_unknown);
    let mut track = serde_path_to_error::Track::new();
    let de = serde_path_to_error::Deserializer::new(value, &mut track);
    match DynamicMessage::deserialize_with_options(desc.clone(), de, &opts) {
        Ok(m) => Ok(m),
        Err(e) => {
            let path = track.path().to_string();
            let mut path = if path == "." { String::new() } else { path };
            let msg = e.to_string();
            // serde reports an unknown field at its parent: name the field itself.
            if let Some(field) = msg
                .strip_prefix("unrecognized field name '")
                .and_then(|r| r.split('\'').next())
            {
                path = if path.is_empty() {
                    field.to_string()
                } else {
                    format!("{path}.{field}")
                };
            }
            err(&path, msg)
        }
    }
}

/// Re-encodes a dynamic message into its generated `envoy-types` struct.
pub fn to_typed<M: Message + Default>(msg: &DynamicMessage) -> Result<M> {
    M::decode(msg.encode_to_vec().as_slice()).map_err(|e| ConfigError {
        path: String::new(),
        msg: format!("re-decoding: {e}"),
    })
}
