//! Writing one access log line: text formats as Envoy prints them (`-` for an unset value, or
//! nothing under `omit_empty_values`), JSON formats typed, keys sorted, one object a line.

use super::format::{Json, Piece, Text};
use super::ops::Val;
use crate::stream_info::StreamInfo;

/// Appends `t` for `s` to `out`.
pub fn text(t: &Text, s: &StreamInfo, omit_empty: bool, out: &mut String) {
    for p in &t.0 {
        match p {
            Piece::Lit(l) => out.push_str(l),
            Piece::Op(op, len) => push_val(op.eval(s), *len, omit_empty, out),
        }
    }
}

fn push_val(v: Val<'_>, len: Option<usize>, omit_empty: bool, out: &mut String) {
    match v {
        Val::None => {
            if !omit_empty {
                out.push('-');
            }
        }
        Val::Num(n) => {
            use std::fmt::Write;
            let _ = write!(out, "{n}");
        }
        Val::Str(v) => out.push_str(truncate(&v, len)),
    }
}

fn truncate(s: &str, len: Option<usize>) -> &str {
    match len {
        Some(n) if s.len() > n => {
            let mut end = n;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            &s[..end]
        }
        _ => s,
    }
}

/// Appends the JSON record for `s` and a newline.
pub fn json(j: &Json, s: &StreamInfo, omit_empty: bool, out: &mut String) {
    json_value(j, s, omit_empty, out);
    out.push('\n');
}

fn json_value(j: &Json, s: &StreamInfo, omit_empty: bool, out: &mut String) {
    match j {
        Json::Null => out.push_str("null"),
        Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Json::Num(n) => number(*n, out),
        Json::Str(t) => match t.single() {
            // A value that is exactly one operator keeps the operator's type.
            Some((op, len)) => match op.eval(s) {
                Val::None => out.push_str("null"),
                Val::Num(n) => {
                    use std::fmt::Write;
                    let _ = write!(out, "{n}");
                }
                Val::Str(v) => string(truncate(&v, len), out),
            },
            None => {
                let mut buf = String::new();
                text(t, s, omit_empty, &mut buf);
                string(&buf, out);
            }
        },
        Json::List(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                json_value(item, s, omit_empty, out);
            }
            out.push(']');
        }
        Json::Obj(fields) => {
            out.push('{');
            for (i, (k, v)) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                string(k, out);
                out.push(':');
                json_value(v, s, omit_empty, out);
            }
            out.push('}');
        }
    }
}

/// A number as Envoy prints it: whole numbers without a fraction.
fn number(n: f64, out: &mut String) {
    use std::fmt::Write;
    if n.is_finite() && n.fract() == 0.0 && n.abs() < 1e15 {
        let _ = write!(out, "{}", n as i64);
    } else if n.is_finite() {
        let _ = write!(out, "{n}");
    } else {
        out.push_str("null");
    }
}

/// A JSON string: quotes, backslashes and control characters escaped, other text as is.
fn string(s: &str, out: &mut String) {
    out.push('"');
    crate::logfmt::json_escape(s, out);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream_info::{Downstream, Flag, LogType, RequestInfo};

    fn info() -> StreamInfo {
        let mut s = StreamInfo::new(
            LogType::DownstreamEnd,
            Downstream {
                local: "127.0.0.1:31000".parse().expect("addr"),
                remote: "127.0.0.1:52772".parse().expect("addr"),
                peer: None,
                connection_id: 1,
                inbound: false,
            },
        );
        let mut headers = http::HeaderMap::new();
        headers.insert("user-agent", http::HeaderValue::from_static("ua \"q\""));
        s.request = Some(RequestInfo {
            method: "GET".into(),
            path: "/p".into(),
            scheme: "http",
            headers,
        });
        s.code = 503;
        s.flags = vec![
            Flag::UpstreamRetryLimitExceeded,
            Flag::UpstreamConnectFailure,
        ];
        s.ended = Some(s.started);
        s
    }

    #[test]
    fn text_dashes_and_omit() {
        let t = Text::parse("%REQ(X-MISSING)% %RESPONSE_FLAGS% %REQ(USER-AGENT):2%", "p")
            .expect("parses");
        let mut out = String::new();
        text(&t, &info(), false, &mut out);
        assert_eq!(out, "- URX,UF ua");
        out.clear();
        text(&t, &info(), true, &mut out);
        assert_eq!(out, " URX,UF ua");
    }

    #[test]
    fn json_typed_and_sorted() {
        let v: envoy_types::pb::google::protobuf::Struct =
            envoy_types::pb::google::protobuf::Struct {
                fields: [
                    ("z", "%RESPONSE_CODE%"),
                    ("a", "%REQ(X-MISSING)%"),
                    ("m", "%REQ(X-MISSING)%/%RESPONSE_CODE%"),
                    ("u", "%REQ(USER-AGENT)%"),
                    ("d", "%DURATION%"),
                ]
                .into_iter()
                .map(|(k, v)| {
                    (
                        k.to_string(),
                        envoy_types::pb::google::protobuf::Value {
                            kind: Some(
                                envoy_types::pb::google::protobuf::value::Kind::StringValue(
                                    v.to_string(),
                                ),
                            ),
                        },
                    )
                })
                .collect(),
            };
        let j = Json::from_struct(&v, "p").expect("parses");
        let mut out = String::new();
        json(&j, &info(), false, &mut out);
        assert_eq!(
            out,
            "{\"a\":null,\"d\":0,\"m\":\"-/503\",\"u\":\"ua \\\"q\\\"\",\"z\":503}\n"
        );
    }
}
