//! Access logs: Envoy's `AccessLog` entries (file, stdout and stderr loggers) on connection
//! managers, tcp_proxy, listeners and the admin interface, each with an optional filter and a
//! text or JSON format of command operators.

mod filter;
pub mod format;
mod ops;
mod render;
pub mod sink;
mod tls_ops;

use crate::config::{any_to, err, type_name, Result};
use crate::stream_info::StreamInfo;
use envoy_types::pb::envoy::config::accesslog::v3 as pb;
use envoy_types::pb::envoy::config::core::v3::{
    data_source::Specifier, substitution_format_string::Format as SubFormat,
    SubstitutionFormatString,
};
use envoy_types::pb::envoy::extensions::access_loggers::{file::v3 as file, stream::v3 as stream};
use std::sync::Arc;

pub use filter::Filter;
pub use ops::grpc_code;

#[derive(Debug)]
enum Body {
    Text(format::Text),
    Json(format::Json),
}

/// One configured access logger.
#[derive(Debug)]
pub struct AccessLog {
    filter: Option<Filter>,
    body: Body,
    omit_empty: bool,
    sink: Arc<sink::Sink>,
}

/// The access logs of one place (a connection manager, a listener, …), shared by its streams.
pub type AccessLogs = Arc<[AccessLog]>;

impl AccessLog {
    pub fn list(logs: &[pb::AccessLog], path: &str) -> Result<AccessLogs> {
        logs.iter()
            .enumerate()
            .map(|(i, l)| AccessLog::from_proto(l, &format!("{path}[{i}]")))
            .collect()
    }

    pub fn from_proto(a: &pb::AccessLog, path: &str) -> Result<AccessLog> {
        let filter = a
            .filter
            .as_ref()
            .map(|f| Filter::from_proto(f, &format!("{path}.filter")))
            .transpose()?;
        let Some(pb::access_log::ConfigType::TypedConfig(any)) = &a.config_type else {
            return err(
                &format!("{path}.typed_config"),
                "an access logger needs a typed_config",
            );
        };
        let tp = format!("{path}.typed_config");
        let (body, omit_empty, sink) = match type_name(any) {
            "envoy.extensions.access_loggers.file.v3.FileAccessLog" => {
                let f: file::FileAccessLog = any_to(any, &tp)?;
                if f.path.is_empty() {
                    return err(&format!("{tp}.path"), "path is required");
                }
                let sink = sink::file(&f.path).map_err(|e| crate::config::ConfigError {
                    path: format!("{tp}.path"),
                    msg: format!("unable to open file '{}': {e}", f.path),
                })?;
                #[allow(deprecated)]
                let (body, omit) = match &f.access_log_format {
                    None => (
                        Body::Text(format::Text::parse(format::DEFAULT, &tp)?),
                        false,
                    ),
                    Some(file::file_access_log::AccessLogFormat::Format(s)) => {
                        let s = if s.is_empty() { format::DEFAULT } else { s };
                        (
                            Body::Text(format::Text::parse(s, &format!("{tp}.format"))?),
                            false,
                        )
                    }
                    Some(file::file_access_log::AccessLogFormat::JsonFormat(j))
                    | Some(file::file_access_log::AccessLogFormat::TypedJsonFormat(j)) => (
                        Body::Json(format::Json::from_struct(j, &format!("{tp}.json_format"))?),
                        false,
                    ),
                    Some(file::file_access_log::AccessLogFormat::LogFormat(l)) => {
                        substitution(l, &format!("{tp}.log_format"))?
                    }
                };
                (body, omit, sink)
            }
            "envoy.extensions.access_loggers.stream.v3.StdoutAccessLog" => {
                let s: stream::StdoutAccessLog = any_to(any, &tp)?;
                let (body, omit) = match &s.access_log_format {
                    Some(stream::stdout_access_log::AccessLogFormat::LogFormat(l)) => {
                        substitution(l, &format!("{tp}.log_format"))?
                    }
                    None => (
                        Body::Text(format::Text::parse(format::DEFAULT, &tp)?),
                        false,
                    ),
                };
                (body, omit, sink::stdout())
            }
            "envoy.extensions.access_loggers.stream.v3.StderrAccessLog" => {
                let s: stream::StderrAccessLog = any_to(any, &tp)?;
                let (body, omit) = match &s.access_log_format {
                    Some(stream::stderr_access_log::AccessLogFormat::LogFormat(l)) => {
                        substitution(l, &format!("{tp}.log_format"))?
                    }
                    None => (
                        Body::Text(format::Text::parse(format::DEFAULT, &tp)?),
                        false,
                    ),
                };
                (body, omit, sink::stderr())
            }
            other => {
                return err(
                    &tp,
                    format!("access logger {other} is not supported by Ferry"),
                )
            }
        };
        Ok(AccessLog {
            filter,
            body,
            omit_empty,
            sink,
        })
    }

    /// Writes the line for `s` when the filter lets it through.
    pub fn log(&self, s: &StreamInfo) {
        if let Some(f) = &self.filter {
            if !f.matches(s) {
                return;
            }
        }
        let mut line = String::with_capacity(256);
        match &self.body {
            Body::Text(t) => render::text(t, s, self.omit_empty, &mut line),
            Body::Json(j) => render::json(j, s, self.omit_empty, &mut line),
        }
        self.sink.write(line.as_bytes());
    }
}

/// Logs `s` to each of `logs`.
pub fn log_all(logs: &[AccessLog], s: &StreamInfo) {
    for l in logs {
        l.log(s);
    }
}

/// A `SubstitutionFormatString`: the format and `omit_empty_values`.
fn substitution(l: &SubstitutionFormatString, path: &str) -> Result<(Body, bool)> {
    if !l.formatters.is_empty() {
        return err(
            &format!("{path}.formatters"),
            "formatter extensions are not supported by Ferry",
        );
    }
    #[allow(deprecated)]
    let body = match &l.format {
        None => Body::Text(format::Text::parse(format::DEFAULT, path)?),
        Some(SubFormat::TextFormat(s)) => {
            Body::Text(format::Text::parse(s, &format!("{path}.text_format"))?)
        }
        Some(SubFormat::JsonFormat(j)) => Body::Json(format::Json::from_struct(
            j,
            &format!("{path}.json_format"),
        )?),
        Some(SubFormat::TextFormatSource(ds)) => {
            let p = format!("{path}.text_format_source");
            let text = match &ds.specifier {
                Some(Specifier::InlineString(s)) => s.clone(),
                Some(Specifier::InlineBytes(b)) => String::from_utf8_lossy(b).into_owned(),
                Some(Specifier::Filename(f)) => {
                    std::fs::read_to_string(f).map_err(|e| crate::config::ConfigError {
                        path: format!("{p}.filename"),
                        msg: format!("cannot read {f}: {e}"),
                    })?
                }
                _ => {
                    return err(
                        &p,
                        "a data source needs inline_string, inline_bytes or filename",
                    )
                }
            };
            Body::Text(format::Text::parse(&text, &p)?)
        }
    };
    Ok((body, l.omit_empty_values))
}
