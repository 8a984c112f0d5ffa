//! CORS: a preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) is answered
//! here from the route's merged policy; an allowed origin's other requests get the
//! `access-control-allow-*` response headers.

use super::FilterRequest;
use crate::config::filters::cors::{CorsPolicy, CorsStats};
use crate::http::reply::Body;
use http::{HeaderName, HeaderValue, Method, Response};

/// The first non-empty value, most specific level first.
fn text<'a>(ps: &[&'a CorsPolicy], f: impl Fn(&'a CorsPolicy) -> &'a str) -> &'a str {
    ps.iter()
        .map(|p| f(p))
        .find(|v| !v.is_empty())
        .unwrap_or("")
}

fn flag(ps: &[&CorsPolicy], f: impl Fn(&CorsPolicy) -> Option<bool>) -> Option<bool> {
    ps.iter().find_map(|p| f(p))
}

pub fn decode(
    stats: &CorsStats,
    ps: &[&CorsPolicy],
    req: &FilterRequest<'_>,
    extra: &mut Vec<(HeaderName, HeaderValue)>,
) -> Option<Response<Body>> {
    let top = ps.first()?;
    let h = req.headers;
    let origin = h
        .get(http::header::ORIGIN)
        .filter(|v| !v.is_empty())?
        .clone();
    let enabled = top.enabled.is_none_or(|p| p.draw());
    let shadow = top.shadow.is_some_and(|p| p.draw());
    if !enabled && !shadow {
        return None;
    }
    let matchers = ps.iter().map(|p| &p.allow_origin).find(|m| !m.is_empty());
    let o = origin.to_str().unwrap_or("");
    let allowed = matchers.is_some_and(|ms| ms.iter().any(|m| m.matches("*") || m.matches(o)));
    if allowed {
        stats.origin_valid.inc();
    } else {
        stats.origin_invalid.inc();
    }
    if !enabled {
        return None;
    }
    let credentials = flag(ps, |p| p.allow_credentials) == Some(true);
    let expose = text(ps, |p| &p.expose_headers);
    let acrm = h
        .get(http::header::ACCESS_CONTROL_REQUEST_METHOD)
        .filter(|v| !v.is_empty());
    let preflight = req.subject.method == Method::OPTIONS.as_str() && acrm.is_some();
    let add = |out: &mut Vec<(HeaderName, HeaderValue)>, name: HeaderName, v: &str| {
        if let Ok(v) = HeaderValue::from_str(v) {
            if !v.is_empty() {
                out.push((name, v));
            }
        }
    };
    if !preflight {
        if allowed {
            extra.push((http::header::ACCESS_CONTROL_ALLOW_ORIGIN, origin));
            if credentials {
                add(
                    extra,
                    http::header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                    "true",
                );
            }
            add(extra, http::header::ACCESS_CONTROL_EXPOSE_HEADERS, expose);
        }
        return None;
    }
    if !allowed && flag(ps, |p| p.forward_not_matching_preflights) != Some(false) {
        return None;
    }
    let mut headers = Vec::new();
    if allowed {
        headers.push((http::header::ACCESS_CONTROL_ALLOW_ORIGIN, origin));
    }
    if credentials {
        add(
            &mut headers,
            http::header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            "true",
        );
    }
    let echo = |name: HeaderName, cfg: &str| -> String {
        if cfg == "*" {
            h.get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        } else {
            cfg.to_string()
        }
    };
    let methods = echo(
        http::header::ACCESS_CONTROL_REQUEST_METHOD,
        text(ps, |p| &p.allow_methods),
    );
    add(
        &mut headers,
        http::header::ACCESS_CONTROL_ALLOW_METHODS,
        &methods,
    );
    let allow_headers = echo(
        http::header::ACCESS_CONTROL_REQUEST_HEADERS,
        text(ps, |p| &p.allow_headers),
    );
    add(
        &mut headers,
        http::header::ACCESS_CONTROL_ALLOW_HEADERS,
        &allow_headers,
    );
    add(
        &mut headers,
        http::header::ACCESS_CONTROL_MAX_AGE,
        text(ps, |p| &p.max_age),
    );
    if allowed {
        add(
            &mut headers,
            http::header::ACCESS_CONTROL_EXPOSE_HEADERS,
            expose,
        );
    }
    let mut r = Response::new(Body::empty());
    for (n, v) in headers {
        r.headers_mut().insert(n, v);
    }
    Some(r)
}
