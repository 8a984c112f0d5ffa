//! What header formats read of a request (`%DOWNSTREAM_REMOTE_ADDRESS%`, `%PROTOCOL%`, …), and
//! the response header mutations of a route, its virtual host and its table.

use super::reply::Body;
use super::ConnCtx;
use crate::config::headers::FormatCtx;
use crate::config::route::{Route, RouteTable, VirtualHost};
use http::{Response, Version};

pub(super) fn protocol_name(v: Version) -> &'static str {
    match v {
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2",
        _ => "HTTP/1.1",
    }
}

/// Response header mutations, most specific level first so the route configuration's level
/// is applied last (Envoy's default order).
pub(super) fn finalize_response(
    ctx: &ConnCtx,
    req: (Option<&http::HeaderMap>, Version),
    table: &RouteTable,
    vh: &VirtualHost,
    route: &Route,
    weighted: Option<&crate::config::headers::HeaderMutation>,
    resp: &mut Response<Body>,
) {
    let fctx = FormatCtx {
        remote: ctx.remote,
        local: ctx.local,
        protocol: protocol_name(req.1),
        request: req.0,
    };
    let h = resp.headers_mut();
    if let Some(w) = weighted {
        w.apply(h, &fctx);
    }
    route.response.apply(h, &fctx);
    vh.response.apply(h, &fctx);
    table.response.apply(h, &fctx);
}

pub(super) fn format_ctx<'a>(
    ctx: &ConnCtx,
    headers: &'a http::HeaderMap,
    v: Version,
) -> FormatCtx<'a> {
    FormatCtx {
        remote: ctx.remote,
        local: ctx.local,
        protocol: protocol_name(v),
        request: Some(headers),
    }
}
