//! `TypedStruct` (`udpa.type.v1` and `xds.type.v3`): a `typed_config` written as a type URL and
//! a struct in the proto3 JSON form. Every one in a configuration is turned into the plain
//! `Any` of the message it names before anything else reads the configuration.

use super::{err, Result};
use prost::Message as _;
use prost_reflect::{DynamicMessage, ReflectMessage, Value};

const TYPED_STRUCTS: [&str; 2] = ["udpa.type.v1.TypedStruct", "xds.type.v3.TypedStruct"];

/// Whether an encoded message may hold a `TypedStruct` (a cheap test before decoding).
pub fn may_hold(bytes: &[u8]) -> bool {
    bytes.windows(11).any(|w| w == b"TypedStruct")
}

/// Replaces every `TypedStruct` under `msg` by the message it describes.
pub fn normalize(msg: &mut DynamicMessage, path: &str) -> Result<()> {
    if msg.descriptor().full_name() == "google.protobuf.Any" {
        return normalize_any(msg, path);
    }
    for (field, value) in msg.fields_mut() {
        let fpath = if path.is_empty() {
            field.name().to_string()
        } else {
            format!("{path}.{}", field.name())
        };
        normalize_value(value, &fpath)?;
    }
    Ok(())
}

fn normalize_value(v: &mut Value, path: &str) -> Result<()> {
    match v {
        Value::Message(m) => normalize(m, path),
        Value::List(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                normalize_value(item, &format!("{path}[{i}]"))?;
            }
            Ok(())
        }
        Value::Map(entries) => {
            for (k, item) in entries.iter_mut() {
                let key = match k {
                    prost_reflect::MapKey::String(s) => s.clone(),
                    other => format!("{other:?}"),
                };
                normalize_value(item, &format!("{path}[{key}]"))?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn normalize_any(any: &mut DynamicMessage, path: &str) -> Result<()> {
    let type_url = any
        .get_field_by_name("type_url")
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let name = type_url.rsplit('/').next().unwrap_or("");
    let pool = ferry_xds::pool::pool();
    let bytes = any
        .get_field_by_name("value")
        .and_then(|v| v.as_bytes().cloned())
        .unwrap_or_default();
    let mut inner = if TYPED_STRUCTS.contains(&name) {
        let Some(ts_desc) = pool.get_message_by_name(name) else {
            return err(path, format!("unknown type {type_url}"));
        };
        let ts =
            DynamicMessage::decode(ts_desc, bytes.as_ref()).map_err(|e| super::ConfigError {
                path: path.into(),
                msg: format!("cannot decode {type_url}: {e}"),
            })?;
        let inner_url = ts
            .get_field_by_name("type_url")
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let inner_name = inner_url.rsplit('/').next().unwrap_or("").to_string();
        let Some(desc) = pool.get_message_by_name(&inner_name) else {
            return err(
                &format!("{path}.type_url"),
                format!("unknown type {inner_url} in a TypedStruct"),
            );
        };
        let json = match ts.get_field_by_name("value") {
            Some(v) => match v.as_message() {
                Some(s) => serde_json::to_value(s).map_err(|e| super::ConfigError {
                    path: format!("{path}.value"),
                    msg: format!("cannot read the struct: {e}"),
                })?,
                None => serde_json::Value::Object(Default::default()),
            },
            None => serde_json::Value::Object(Default::default()),
        };
        let msg = DynamicMessage::deserialize(desc, json).map_err(|e| super::ConfigError {
            path: format!("{path}.value"),
            msg: format!("not a {inner_name}: {e}"),
        })?;
        any.set_field_by_name(
            "type_url",
            Value::String(format!("type.googleapis.com/{inner_name}")),
        );
        msg
    } else {
        // Look inside: a TypedStruct may sit deeper (a filter's own typed_config).
        if !may_hold(&bytes) {
            return Ok(());
        }
        let Some(desc) = pool.get_message_by_name(name) else {
            return Ok(());
        };
        match DynamicMessage::decode(desc, bytes.as_ref()) {
            Ok(m) => m,
            Err(_) => return Ok(()),
        }
    };
    normalize(&mut inner, path)?;
    any.set_field_by_name("value", Value::Bytes(inner.encode_to_vec().into()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener(filter: serde_json::Value) -> Result<DynamicMessage> {
        let pool = ferry_xds::pool::pool();
        let desc = pool
            .get_message_by_name("envoy.config.listener.v3.Listener")
            .expect("Listener in the pool");
        let json = serde_json::json!({
            "name": "l",
            "filter_chains": [{ "filters": [{ "name": "f", "typed_config": filter }] }]
        });
        let mut m = DynamicMessage::deserialize(desc, json).expect("a listener");
        normalize(&mut m, "").map(|()| m)
    }

    #[test]
    fn typed_structs_become_their_message() {
        for wrapper in ["udpa.type.v1.TypedStruct", "xds.type.v3.TypedStruct"] {
            let m = listener(serde_json::json!({
                "@type": format!("type.googleapis.com/{wrapper}"),
                "type_url": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                "value": { "stat_prefix": "tcp", "cluster": "c" }
            }))
            .expect("normalized");
            let json = serde_json::to_value(&m).expect("JSON");
            let tc = &json["filterChains"][0]["filters"][0]["typedConfig"];
            assert_eq!(
                tc["@type"],
                "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                "{json}"
            );
            assert_eq!(tc["cluster"], "c", "{json}");
        }
    }

    #[test]
    fn an_unknown_type_is_named() {
        let e = listener(serde_json::json!({
            "@type": "type.googleapis.com/udpa.type.v1.TypedStruct",
            "type_url": "type.googleapis.com/no.such.Config",
            "value": {}
        }))
        .expect_err("rejected");
        assert!(
            e.to_string()
                .contains("filter_chains[0].filters[0].typed_config.type_url"),
            "{e}"
        );
        assert!(e.to_string().contains("no.such.Config"), "{e}");
    }
}
