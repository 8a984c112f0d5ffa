//! The tags (attributes) Envoy puts on a request's span.

use super::{Span, LOCAL};

/// The tags Envoy puts on a request's span, in Envoy's OpenTelemetry order (Zipkin's JSON
/// object has no order).
pub(crate) fn request_tags(
    span: &Span,
    info: &crate::stream_info::StreamInfo,
) -> Vec<(String, String)> {
    let local = LOCAL.get();
    let mut tags: Vec<(String, String)> = Vec::with_capacity(24);
    let mut tag = |k: &str, v: String| tags.push((k.to_string(), v));
    if let Some(l) = local {
        tag("node_id", l.node_id.clone());
        tag("zone", l.zone.clone());
    }
    let header = |n: &str| {
        info.request
            .as_ref()
            .and_then(|r| r.headers.get(n))
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    if let Some(r) = &info.request {
        tag(
            "guid:x-request-id",
            header("x-request-id").unwrap_or_default(),
        );
        let host = header("host").unwrap_or_default();
        let path: String = r.path.chars().take(span.max_path).collect();
        tag("http.url", format!("{}://{host}{path}", r.scheme));
        tag("http.method", r.method.clone());
    }
    tag(
        "downstream_cluster",
        header("x-envoy-downstream-service-cluster").unwrap_or_else(|| "-".into()),
    );
    tag(
        "user_agent",
        header("user-agent").unwrap_or_else(|| "-".into()),
    );
    tag("http.protocol", info.protocol.unwrap_or("").to_string());
    tag(
        "peer.address",
        info.downstream.remote.ip().to_canonical().to_string(),
    );
    tag("request_size", info.bytes_received.to_string());
    tag("response_size", info.bytes_sent.to_string());
    tag("component", "proxy".into());
    if let Some((name, observed)) = &info.upstream.cluster {
        tag("upstream_cluster", name.to_string());
        tag("upstream_cluster.name", observed.to_string());
    }
    tag("http.status_code", info.code.to_string());
    let flags: Vec<&str> = info.flags.iter().map(|f| f.code()).collect();
    tag(
        "response_flags",
        if flags.is_empty() {
            "-".into()
        } else {
            flags.join(",")
        },
    );
    if info.code >= 500 {
        tag("error", "true".into());
    }
    for (k, v) in &span.tags {
        if let Some(t) = tags.iter_mut().find(|(n, _)| n == k) {
            t.1 = v.clone();
        } else {
            tags.push((k.clone(), v.clone()));
        }
    }
    tags
}
