//! Request/response header handling that every proxied request gets, as Envoy's connection
//! manager does it: hop-by-hop removal, x-forwarded-*, x-request-id, server.

use crate::config::hcm::{HttpConnMgr, ServerHeader};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use std::net::SocketAddr;

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub static X_ENVOY_EXPECTED_TIMEOUT: HeaderName = HeaderName::from_static("x-envoy-expected-rq-timeout-ms");
pub static X_ENVOY_SERVICE_TIME: HeaderName = HeaderName::from_static("x-envoy-upstream-service-time");
pub static X_ENVOY_INTERNAL: HeaderName = HeaderName::from_static("x-envoy-internal");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
static HTTP2_SETTINGS: HeaderName = HeaderName::from_static("http2-settings");

/// The upgrade a request asks for (`Connection: upgrade` + `Upgrade: X`), lowercased.
pub fn requested_upgrade(h: &HeaderMap) -> Option<String> {
    let conn = h.get(header::CONNECTION)?.to_str().ok()?;
    if !conn.split(',').any(|t| t.trim().eq_ignore_ascii_case("upgrade")) {
        return None;
    }
    Some(h.get(header::UPGRADE)?.to_str().ok()?.trim().to_ascii_lowercase())
}

/// Removes hop-by-hop headers (and those `Connection` names). `te: trailers` survives, as
/// gRPC needs it; an allowed upgrade keeps its `Connection`/`Upgrade` pair.
pub fn strip_hop_by_hop(h: &mut HeaderMap, keep_upgrade: bool) {
    if let Some(conn) = h.get(header::CONNECTION).and_then(|v| v.to_str().ok()).map(str::to_string) {
        for name in conn.split(',').map(|t| t.trim().to_ascii_lowercase()) {
            if name.is_empty() || (keep_upgrade && name == "upgrade") {
                continue;
            }
            if let Ok(n) = HeaderName::from_bytes(name.as_bytes()) {
                if n != header::TE {
                    h.remove(n);
                }
            }
        }
    }
    h.remove(&KEEP_ALIVE);
    h.remove(&PROXY_CONNECTION);
    h.remove(header::TRANSFER_ENCODING);
    h.remove(&HTTP2_SETTINGS);
    if keep_upgrade {
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        h.remove(header::CONNECTION);
        h.remove(header::UPGRADE);
    }
    let te_trailers = h.get(header::TE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("trailers")));
    h.remove(header::TE);
    if te_trailers {
        h.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

/// x-forwarded-for, x-forwarded-proto and x-request-id, as the connection manager sets them.
pub fn mutate_request(h: &mut HeaderMap, hcm: &HttpConnMgr, remote: SocketAddr) {
    if hcm.use_remote_address {
        if !hcm.skip_xff_append {
            let ip = remote.ip().to_canonical().to_string();
            let v = match h.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
                Some(prev) if !prev.is_empty() => format!("{prev},{ip}"),
                _ => ip,
            };
            if let Ok(v) = HeaderValue::from_str(&v) {
                h.insert(X_FORWARDED_FOR.clone(), v);
            }
        }
        h.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("http"));
    } else if !h.contains_key(&X_FORWARDED_PROTO) {
        h.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("http"));
    }
    let external = hcm.use_remote_address && !is_internal(remote);
    if external {
        h.remove(&X_ENVOY_INTERNAL);
    } else if hcm.use_remote_address {
        h.insert(X_ENVOY_INTERNAL.clone(), HeaderValue::from_static("true"));
    }
    if let Some(via) = &hcm.via {
        append_via(h, via);
    }
    let replace_id = external && !hcm.preserve_external_request_id;
    if hcm.generate_request_id && (replace_id || !h.contains_key(&X_REQUEST_ID)) {
        if let Ok(v) = HeaderValue::from_str(&crate::util::uuid4()) {
            h.insert(X_REQUEST_ID.clone(), v);
        }
    }
}

/// Appends this proxy's `via` value (comma-joined, as Envoy does).
pub fn append_via(h: &mut HeaderMap, via: &HeaderValue) {
    let v = match h.get(header::VIA).and_then(|v| v.to_str().ok()) {
        Some(prev) if !prev.is_empty() => HeaderValue::from_str(&format!("{prev}, {}", via.to_str().unwrap_or(""))).ok(),
        _ => Some(via.clone()),
    };
    if let Some(v) = v {
        h.insert(header::VIA, v);
    }
}

/// RFC 1918, loopback and unique-local addresses count as internal.
fn is_internal(a: SocketAddr) -> bool {
    match a.ip().to_canonical() {
        std::net::IpAddr::V4(v4) => v4.is_private() || v4.is_loopback(),
        std::net::IpAddr::V6(v6) => v6.is_loopback() || (v6.segments()[0] & 0xfe00) == 0xfc00,
    }
}

/// The `server` header per `server_header_transformation`.
pub fn set_server(h: &mut HeaderMap, hcm: &HttpConnMgr) {
    match hcm.server_header {
        ServerHeader::PassThrough => {}
        ServerHeader::AppendIfAbsent if h.contains_key(header::SERVER) => {}
        _ => {
            if let Ok(v) = HeaderValue::from_str(&hcm.server_name) {
                h.insert(header::SERVER, v);
            }
        }
    }
}
