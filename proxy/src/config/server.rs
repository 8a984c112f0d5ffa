//! Bootstrap settings about the proxy itself rather than its traffic: the application log
//! format and the bootstrap extensions.

use super::{err, type_name, Result};
use crate::logfmt::{LogFormat, Pattern};
use envoy_types::pb::envoy::config::bootstrap::v3 as pb;
use envoy_types::pb::envoy::config::core::v3::TypedExtensionConfig;
use envoy_types::pb::google::protobuf::value::Kind;

/// `application_log_config.log_format`: the format of Ferry's own log lines.
pub fn log_format(c: &Option<pb::bootstrap::ApplicationLogConfig>) -> Result<Option<LogFormat>> {
    use pb::bootstrap::application_log_config::log_format::LogFormat as F;
    let path = "application_log_config.log_format";
    let Some(f) = c.as_ref().and_then(|c| c.log_format.as_ref()) else {
        return Ok(None);
    };
    Ok(match &f.log_format {
        None => None,
        Some(F::TextFormat(t)) => Some(LogFormat::Text(
            Pattern::parse(t).or_else(|e| err(&format!("{path}.text_format"), e))?,
        )),
        Some(F::JsonFormat(s)) => {
            let mut fields = Vec::with_capacity(s.fields.len());
            for (k, v) in &s.fields {
                let fp = format!("{path}.json_format.{k}");
                let Some(Kind::StringValue(p)) = &v.kind else {
                    return err(&fp, "only string values are supported in a JSON log format");
                };
                fields.push((k.clone(), Pattern::parse(p).or_else(|e| err(&fp, e))?));
            }
            fields.sort_by(|a, b| a.0.cmp(&b.0));
            Some(LogFormat::Json(fields))
        }
    })
}

const INTERNAL_LISTENER: &str = "envoy.extensions.bootstrap.internal_listener.v3.InternalListener";

/// `bootstrap_extensions`: the internal-listener extension is accepted (it only makes internal
/// listeners possible, and any internal listener or upstream is rejected where it is
/// configured); any other extension is rejected by its path.
pub fn extensions(exts: &[TypedExtensionConfig]) -> Result<()> {
    for (i, e) in exts.iter().enumerate() {
        let path = format!("bootstrap_extensions[{i}].typed_config");
        let Some(any) = &e.typed_config else {
            return err(&path, "typed_config is required");
        };
        match type_name(any) {
            INTERNAL_LISTENER => {}
            other => {
                return err(
                    &path,
                    format!("bootstrap extension {other} is not supported by Ferry"),
                )
            }
        }
    }
    Ok(())
}
