//! Envoy's access log format strings: `%COMMAND(ARG):LEN%` operators between literals,
//! parsed once at config time into [`Text`], and JSON formats (a Struct whose string values are
//! format strings) into [`Json`].

use super::ops::{Hdr, Op};
use crate::config::{err, Result};
use std::collections::BTreeMap;

/// One piece of a text format.
#[derive(Debug, Clone)]
pub enum Piece {
    Lit(String),
    /// An operator and its `:LEN` truncation.
    Op(Op, Option<usize>),
}

#[derive(Debug, Clone)]
pub struct Text(pub Vec<Piece>);

/// A JSON format's value: literals keep their type; strings are formats.
#[derive(Debug, Clone)]
pub enum Json {
    Null,
    Bool(bool),
    Num(f64),
    Str(Text),
    List(Vec<Json>),
    /// Keys in sorted order, as Envoy writes them.
    Obj(BTreeMap<String, Json>),
}

/// Envoy's default access log format.
pub const DEFAULT: &str = "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" \"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\"\n";

impl Text {
    pub fn parse(s: &str, path: &str) -> Result<Text> {
        let mut pieces = Vec::new();
        let mut lit = String::new();
        let mut rest = s;
        while let Some(i) = rest.find('%') {
            lit.push_str(&rest[..i]);
            let at = s.len() - rest.len() + i;
            rest = &rest[i + 1..];
            if let Some(r) = rest.strip_prefix('%') {
                lit.push('%');
                rest = r;
                continue;
            }
            let Some((op, len, after)) = command(rest, path)? else {
                return err(
                    path,
                    format!("Incorrect configuration: {s}. Couldn't find valid command at position {at}"),
                );
            };
            rest = after;
            if !lit.is_empty() {
                pieces.push(Piece::Lit(std::mem::take(&mut lit)));
            }
            pieces.push(Piece::Op(op, len));
        }
        lit.push_str(rest);
        if !lit.is_empty() {
            pieces.push(Piece::Lit(lit));
        }
        Ok(Text(pieces))
    }

    /// The operator when the format is exactly one (a typed JSON value).
    pub fn single(&self) -> Option<(&Op, Option<usize>)> {
        match self.0.as_slice() {
            [Piece::Op(op, len)] => Some((op, *len)),
            _ => None,
        }
    }
}

/// `NAME(ARG):LEN%` after a `%`: the operator, its truncation and what follows the closing `%`.
fn command<'a>(s: &'a str, path: &str) -> Result<Option<(Op, Option<usize>, &'a str)>> {
    let name_len = s
        .bytes()
        .take_while(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || *b == b'_')
        .count();
    if name_len == 0 || !s.as_bytes()[0].is_ascii_uppercase() {
        return Ok(None);
    }
    let name = &s[..name_len];
    let mut rest = &s[name_len..];
    let mut arg = None;
    if let Some(r) = rest.strip_prefix('(') {
        // The argument ends at the first `)` followed by `%` or `:LEN%` (a START_TIME
        // argument holds `%`s of its own).
        let mut found = None;
        for (i, _) in r.match_indices(')') {
            let after = &r[i + 1..];
            if after.starts_with('%') || length_suffix(after).is_some() {
                found = Some(i);
                break;
            }
        }
        let Some(i) = found else { return Ok(None) };
        arg = Some(&r[..i]);
        rest = &r[i + 1..];
    }
    let mut len = None;
    if let Some((n, after)) = length_suffix(rest) {
        len = Some(n);
        rest = after;
    }
    let Some(rest) = rest.strip_prefix('%') else {
        return Ok(None);
    };
    let op = Op::parse(name, arg, path)?;
    Ok(Some((op, len, rest)))
}

/// `:LEN%` → the length and the text from the `%` on.
fn length_suffix(s: &str) -> Option<(usize, &str)> {
    let r = s.strip_prefix(':')?;
    let digits = r.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || !r[digits..].starts_with('%') {
        return None;
    }
    Some((r[..digits].parse().ok()?, &r[digits..]))
}

impl Json {
    pub fn from_struct(s: &envoy_types::pb::google::protobuf::Struct, path: &str) -> Result<Json> {
        let mut obj = BTreeMap::new();
        for (k, v) in &s.fields {
            obj.insert(k.clone(), Json::from_value(v, &format!("{path}.{k}"))?);
        }
        Ok(Json::Obj(obj))
    }

    fn from_value(v: &envoy_types::pb::google::protobuf::Value, path: &str) -> Result<Json> {
        use envoy_types::pb::google::protobuf::value::Kind;
        Ok(match &v.kind {
            None | Some(Kind::NullValue(_)) => Json::Null,
            Some(Kind::BoolValue(b)) => Json::Bool(*b),
            Some(Kind::NumberValue(n)) => Json::Num(*n),
            Some(Kind::StringValue(s)) => Json::Str(Text::parse(s, path)?),
            Some(Kind::ListValue(l)) => Json::List(
                l.values
                    .iter()
                    .enumerate()
                    .map(|(i, v)| Json::from_value(v, &format!("{path}[{i}]")))
                    .collect::<Result<_>>()?,
            ),
            Some(Kind::StructValue(s)) => Json::from_struct(s, path)?,
        })
    }
}

/// The header operand of `REQ`/`RESP`/`TRAILER`: `NAME` or `NAME?ALT`.
pub(super) fn header_arg(arg: Option<&str>, cmd: &str, path: &str) -> Result<Hdr> {
    let Some(arg) = arg.filter(|a| !a.is_empty()) else {
        return err(
            path,
            format!(
                "Invalid header configuration. Format string contains empty header for %{cmd}%"
            ),
        );
    };
    let mut parts = arg.split('?');
    let main = parts.next().unwrap_or_default();
    let alt = parts.next();
    if parts.next().is_some() {
        return err(
            path,
            format!("More than 1 alternative header specified in token: {arg}"),
        );
    }
    Hdr::new(main, alt, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_default_format() {
        let t = Text::parse(DEFAULT, "p").expect("default parses");
        let ops = t.0.iter().filter(|p| matches!(p, Piece::Op(..))).count();
        assert_eq!(ops, 15);
    }

    #[test]
    fn start_time_argument_holds_percents() {
        let t = Text::parse("%START_TIME(%Y-%m-%dT%H:%M:%S.%3fZ)% x", "p").expect("parses");
        assert!(
            matches!(&t.0[0], Piece::Op(Op::StartTime(Some(f)), None) if f == "%Y-%m-%dT%H:%M:%S.%3fZ")
        );
        assert!(matches!(&t.0[1], Piece::Lit(l) if l == " x"));
    }

    #[test]
    fn truncation_and_escape() {
        let t = Text::parse("%REQ(USER-AGENT):4% 100%%", "p").expect("parses");
        assert!(matches!(&t.0[0], Piece::Op(Op::Req(_), Some(4))));
        assert!(matches!(&t.0[1], Piece::Lit(l) if l == " 100%"));
    }

    #[test]
    fn rejects_bad_commands() {
        assert!(Text::parse("%NOT_A_THING%", "p").is_err());
        assert!(Text::parse("%REQ(A?B?C)%", "p").is_err());
        assert!(Text::parse("50% off", "p").is_err());
    }
}
