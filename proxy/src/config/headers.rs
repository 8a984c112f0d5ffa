//! Header mutations (`request_headers_to_add`/`_remove`, …) and the few `%…%` formatters they use.

use super::{err, Result};
use envoy_types::pb::envoy::config::core::v3::{
    header_value_option::HeaderAppendAction, HeaderValueOption,
};
use http::header::{HeaderName, HeaderValue};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendAction {
    AppendOrAdd,
    AddIfAbsent,
    OverwriteOrAdd,
    OverwriteIfExists,
}

/// A value with `%COMMAND%` substitutions, parsed at config time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Lit(String),
    DownstreamRemote { port: bool },
    DownstreamLocal { port: bool },
    Protocol,
    Hostname,
    Req(HeaderName),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Format(pub Vec<Part>);

/// What formatters read from the request being handled.
pub struct FormatCtx<'a> {
    pub remote: std::net::SocketAddr,
    pub local: std::net::SocketAddr,
    pub protocol: &'a str,
    pub request: Option<&'a http::HeaderMap>,
}

impl Format {
    pub fn parse(s: &str, path: &str) -> Result<Format> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut rest = s;
        while let Some(i) = rest.find('%') {
            lit.push_str(&rest[..i]);
            rest = &rest[i + 1..];
            if let Some(r) = rest.strip_prefix('%') {
                lit.push('%');
                rest = r;
                continue;
            }
            let Some(end) = rest.find('%') else {
                return err(path, format!("unterminated %-command in '{s}'"));
            };
            let cmd = &rest[..end];
            rest = &rest[end + 1..];
            let part = match cmd {
                "DOWNSTREAM_REMOTE_ADDRESS" => Part::DownstreamRemote { port: true },
                "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT" => Part::DownstreamRemote { port: false },
                "DOWNSTREAM_LOCAL_ADDRESS" => Part::DownstreamLocal { port: true },
                "DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT" => Part::DownstreamLocal { port: false },
                "PROTOCOL" => Part::Protocol,
                "HOSTNAME" => Part::Hostname,
                c if c.starts_with("REQ(") && c.ends_with(')') => {
                    let name = &c[4..c.len() - 1];
                    let name = HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
                        .map_err(|_| super::ConfigError {
                            path: path.into(),
                            msg: format!("invalid header in %{c}%"),
                        })?;
                    Part::Req(name)
                }
                c => return err(path, format!("%{c}% is not supported by Ferry")),
            };
            if !lit.is_empty() {
                parts.push(Part::Lit(std::mem::take(&mut lit)));
            }
            parts.push(part);
        }
        lit.push_str(rest);
        if !lit.is_empty() {
            parts.push(Part::Lit(lit));
        }
        Ok(Format(parts))
    }

    pub fn eval(&self, ctx: &FormatCtx<'_>) -> String {
        let mut out = String::new();
        for p in &self.0 {
            match p {
                Part::Lit(s) => out.push_str(s),
                Part::DownstreamRemote { port: true } => out.push_str(&ctx.remote.to_string()),
                Part::DownstreamRemote { port: false } => {
                    out.push_str(&ctx.remote.ip().to_string())
                }
                Part::DownstreamLocal { port: true } => out.push_str(&ctx.local.to_string()),
                Part::DownstreamLocal { port: false } => out.push_str(&ctx.local.ip().to_string()),
                Part::Protocol => out.push_str(ctx.protocol),
                Part::Hostname => out.push_str(&crate::util::hostname()),
                Part::Req(h) => {
                    if let Some(v) = ctx
                        .request
                        .and_then(|r| r.get(h))
                        .and_then(|v| v.to_str().ok())
                    {
                        out.push_str(v)
                    }
                }
            }
        }
        out
    }
}

#[derive(Debug, Clone)]
pub struct HeaderAdd {
    pub name: HeaderName,
    pub value: Format,
    pub action: AppendAction,
    pub keep_empty: bool,
}

/// One level's mutation: removals first, then additions (Envoy's order within a level).
#[derive(Debug, Clone, Default)]
pub struct HeaderMutation {
    pub remove: Vec<HeaderName>,
    pub add: Vec<HeaderAdd>,
}

impl HeaderMutation {
    pub fn from_proto(
        add: &[HeaderValueOption],
        remove: &[String],
        path: &str,
        add_field: &str,
        remove_field: &str,
    ) -> Result<Self> {
        let mut m = HeaderMutation::default();
        for (i, name) in remove.iter().enumerate() {
            let p = format!("{path}.{remove_field}[{i}]");
            m.remove.push(header_name(name, &p)?);
        }
        for (i, o) in add.iter().enumerate() {
            let p = format!("{path}.{add_field}[{i}]");
            let Some(h) = &o.header else {
                return err(&p, "header is required");
            };
            let name = header_name(&h.key, &format!("{p}.header.key"))?;
            if name.as_str().starts_with(':') || name == http::header::HOST {
                return err(
                    &format!("{p}.header.key"),
                    "pseudo-headers and host cannot be modified here",
                );
            }
            let raw = if h.raw_value.is_empty() {
                h.value.clone()
            } else {
                String::from_utf8_lossy(&h.raw_value).into_owned()
            };
            let value = Format::parse(&raw, &format!("{p}.header.value"))?;
            #[allow(deprecated)]
            let action = match (&o.append, o.append_action()) {
                (Some(b), _) if b.value => AppendAction::AppendOrAdd,
                (Some(_), _) => AppendAction::OverwriteOrAdd,
                (None, HeaderAppendAction::AppendIfExistsOrAdd) => AppendAction::AppendOrAdd,
                (None, HeaderAppendAction::AddIfAbsent) => AppendAction::AddIfAbsent,
                (None, HeaderAppendAction::OverwriteIfExistsOrAdd) => AppendAction::OverwriteOrAdd,
                (None, HeaderAppendAction::OverwriteIfExists) => AppendAction::OverwriteIfExists,
            };
            m.add.push(HeaderAdd {
                name,
                value,
                action,
                keep_empty: o.keep_empty_value,
            });
        }
        Ok(m)
    }

    /// Whether a value reads request headers (`%REQ(..)%`).
    pub fn reads_request(&self) -> bool {
        self.add
            .iter()
            .any(|a| a.value.0.iter().any(|p| matches!(p, Part::Req(_))))
    }

    /// Applies this level to `headers`.
    pub fn apply(&self, headers: &mut http::HeaderMap, ctx: &FormatCtx<'_>) {
        for name in &self.remove {
            headers.remove(name);
        }
        for a in &self.add {
            let v = a.value.eval(ctx);
            if v.is_empty() && !a.keep_empty {
                continue;
            }
            let Ok(value) = HeaderValue::from_str(&v) else {
                continue;
            };
            match a.action {
                AppendAction::AppendOrAdd => {
                    headers.append(a.name.clone(), value);
                }
                AppendAction::AddIfAbsent => {
                    if !headers.contains_key(&a.name) {
                        headers.insert(a.name.clone(), value);
                    }
                }
                AppendAction::OverwriteOrAdd => {
                    headers.insert(a.name.clone(), value);
                }
                AppendAction::OverwriteIfExists => {
                    if headers.contains_key(&a.name) {
                        headers.insert(a.name.clone(), value);
                    }
                }
            }
        }
    }
}

pub fn header_name(name: &str, path: &str) -> Result<HeaderName> {
    HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()).map_err(|_| super::ConfigError {
        path: path.into(),
        msg: format!("invalid header name '{name}'"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        let f = Format::parse(
            "a%%b-%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%-%REQ(X-Y)%",
            "p",
        )
        .expect("ok");
        let mut h = http::HeaderMap::new();
        h.insert("x-y", HeaderValue::from_static("v"));
        let ctx = FormatCtx {
            remote: "10.0.0.1:5".parse().expect("addr"),
            local: "10.0.0.2:80".parse().expect("addr"),
            protocol: "HTTP/1.1",
            request: Some(&h),
        };
        assert_eq!(f.eval(&ctx), "a%b-10.0.0.1-v");
        assert!(Format::parse("%NOPE%", "p").is_err());
        assert!(Format::parse("%OPEN", "p").is_err());
    }
}
