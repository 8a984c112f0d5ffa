//! Turning responses into flat, normalised observations
//! (`field -> value`) that can be compared between Envoy and Ferry.
//!
//! Volatile data is replaced by stable markers:
//! - `date` -> `<present>`;
//! - `x-request-id` (response and as seen upstream) -> `<uuid>` when it has
//!   the UUID shape, else kept verbatim;
//! - `x-envoy-upstream-service-time` -> `<number>` when numeric;
//! - `content-length` -> `<present>` when the body is the echo JSON (the
//!   JSON itself is compared field by field);
//! - every port number of this proxy instance -> `{{NAME}}`.

use std::collections::BTreeMap;

use crate::client::{HttpResponse, RawResponse};
use crate::ports::unrender_ports;

/// A flat observation: field name -> normalised value.
pub type Observation = BTreeMap<String, String>;

/// Bodies longer than this are compared by length and hash.
pub const MAX_INLINE_BODY: usize = 1024;

/// The body as text, or `<N bytes, fnv64 HASH>` for long bodies.
pub fn body_text(body: &[u8], ports: &BTreeMap<u16, String>) -> String {
    if body.len() <= MAX_INLINE_BODY {
        return unrender_ports(&String::from_utf8_lossy(body), ports);
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in body {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("<{} bytes, fnv64 {hash:016x}>", body.len())
}

/// True for the canonical 8-4-4-4-12 hexadecimal UUID text form.
pub fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    let lens = [8, 4, 4, 4, 12];
    groups.len() == 5
        && groups
            .iter()
            .zip(lens)
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn normalise_header(
    name: &str,
    value: &str,
    json_body: bool,
    ports: &BTreeMap<u16, String>,
) -> String {
    match name {
        "date" => "<present>".to_string(),
        "x-request-id" if is_uuid(value) => "<uuid>".to_string(),
        "x-envoy-upstream-service-time"
            if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) =>
        {
            "<number>".to_string()
        }
        "content-length" if json_body => "<present>".to_string(),
        _ => unrender_ports(value, ports),
    }
}

/// Adds `header:<name>` fields (values of repeated headers joined by ` | `).
fn add_headers(
    obs: &mut Observation,
    prefix: &str,
    headers: &[(String, String)],
    json_body: bool,
    ports: &BTreeMap<u16, String>,
) {
    let mut grouped: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in headers {
        let name = name.to_ascii_lowercase();
        let v = normalise_header(&name, value, json_body, ports);
        grouped.entry(name).or_default().push(v);
    }
    for (name, values) in grouped {
        obs.insert(format!("{prefix}header:{name}"), values.join(" | "));
    }
}

/// Parses the echo server's JSON body, if that is what `body` is.
fn echo_json(body: &[u8]) -> Option<serde_json::Map<String, serde_json::Value>> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let map = value.as_object()?;
    (map.contains_key("upstream") && map.contains_key("headers")).then(|| map.clone())
}

fn json_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Adds the response headers and the body; an echo JSON body is flattened
/// into `upstream*` fields, any other body goes into `body`.
fn add_headers_and_body(
    obs: &mut Observation,
    headers: &[(String, String)],
    body: &[u8],
    ports: &BTreeMap<u16, String>,
) {
    let echo = echo_json(body);
    add_headers(obs, "", headers, echo.is_some(), ports);
    let Some(map) = echo else {
        obs.insert("body".to_string(), body_text(body, ports));
        return;
    };
    for (key, value) in &map {
        match key.as_str() {
            "upstream" => {
                obs.insert("upstream".to_string(), json_text(value));
            }
            "headers" => {
                let mut seen = Vec::new();
                if let Some(h) = value.as_object() {
                    for (name, values) in h {
                        for v in values.as_array().into_iter().flatten() {
                            seen.push((name.clone(), json_text(v)));
                        }
                    }
                }
                add_headers(obs, "upstream.", &seen, false, ports);
            }
            other => {
                obs.insert(
                    format!("upstream.{other}"),
                    unrender_ports(&json_text(value), ports),
                );
            }
        }
    }
}

/// Client errors are compared by class only: their wording depends on
/// timing (e.g. a reset arriving before or after a frame is parsed).
pub fn error_class(e: &str) -> String {
    if e.starts_with("connect:") {
        "<connect failed>".to_string()
    } else if e.starts_with("timeout") {
        "<timeout>".to_string()
    } else {
        "<request failed>".to_string()
    }
}

/// Observation of one HTTP response (or client error).
pub fn observe_http(
    result: &Result<HttpResponse, String>,
    ports: &BTreeMap<u16, String>,
) -> Observation {
    let mut obs = Observation::new();
    let resp = match result {
        Ok(r) => r,
        Err(e) => {
            obs.insert("error".to_string(), error_class(e));
            return obs;
        }
    };
    obs.insert("status".to_string(), resp.status.to_string());
    add_headers_and_body(&mut obs, &resp.headers, &resp.body, ports);
    obs
}

/// Observation of a raw exchange: status line, headers, body and whether
/// the connection was closed by the proxy.
pub fn observe_raw(
    result: &Result<RawResponse, String>,
    ports: &BTreeMap<u16, String>,
) -> Observation {
    let mut obs = Observation::new();
    let raw = match result {
        Ok(r) => r,
        Err(e) => {
            obs.insert("error".to_string(), unrender_ports(e, ports));
            return obs;
        }
    };
    // A complete response is followed by the client's half-close, so whether
    // the proxy closes first is not observable; only record it otherwise.
    if !raw.complete {
        obs.insert("closed".to_string(), raw.closed.to_string());
    }
    let mut bytes: &[u8] = &raw.bytes;
    let mut interim = Vec::new();
    let (head, body) = loop {
        let (head, body) = match bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            Some(i) => (
                String::from_utf8_lossy(&bytes[..i]).into_owned(),
                &bytes[i + 4..],
            ),
            None => (String::from_utf8_lossy(bytes).into_owned(), &[][..]),
        };
        // Skip interim (1xx other than 101) responses, remembering them.
        let is_interim = head.starts_with("HTTP/1.1 1") && !head.starts_with("HTTP/1.1 101");
        if is_interim && !body.is_empty() {
            interim.push(head.split("\r\n").next().unwrap_or("").to_string());
            bytes = body;
            continue;
        }
        break (head, body);
    };
    if !interim.is_empty() {
        obs.insert("interim".to_string(), interim.join(" | "));
    }
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    obs.insert("status_line".to_string(), status_line.to_string());
    if let Some(code) = status_line.split(' ').nth(1) {
        obs.insert("status".to_string(), code.to_string());
    }
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    add_headers_and_body(&mut obs, &headers, body, ports);
    obs
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn uuid_shape() {
        assert!(is_uuid("0f8fad5b-d9cb-469f-a165-70867728950e"));
        assert!(!is_uuid("not-a-uuid"));
        assert!(!is_uuid("0f8fad5b-d9cb-469f-a165-70867728950"));
    }

    #[test]
    fn echo_body_is_flattened() {
        let body = br#"{"method":"GET","path":"/x","headers":{"x-request-id":["0f8fad5b-d9cb-469f-a165-70867728950e"],"a":["1","2"]},"body":"","upstream":"a"}"#;
        let resp = HttpResponse {
            status: 200,
            headers: vec![
                ("date".into(), "Mon".into()),
                ("content-length".into(), "99".into()),
            ],
            body: body.to_vec(),
        };
        let obs = observe_http(&Ok(resp), &BTreeMap::new());
        assert_eq!(obs["upstream"], "a");
        assert_eq!(obs["upstream.header:a"], "1 | 2");
        assert_eq!(obs["upstream.header:x-request-id"], "<uuid>");
        assert_eq!(obs["header:date"], "<present>");
        assert_eq!(obs["header:content-length"], "<present>");
        assert!(!obs.contains_key("body"));
    }
}
