//! Local rate limiting: one token per request from the configuration's bucket; over the limit
//! an enforced configuration answers 429 `local_rate_limited`.

use super::FilterRequest;
use crate::config::filters::ratelimit::RateLimitCfg;
use crate::http::reply::Body;
use http::{HeaderName, HeaderValue, Response};

static LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
static REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
static RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

pub fn decode(
    cfg: &RateLimitCfg,
    req: &FilterRequest<'_>,
    extra: &mut Vec<(HeaderName, HeaderValue)>,
) -> Option<Response<Body>> {
    if !cfg.enabled.draw() {
        return None;
    }
    let st = &cfg.stats;
    st.enabled.inc();
    let taken = cfg.bucket.take();
    if cfg.x_ratelimit_headers {
        extra.push((LIMIT.clone(), HeaderValue::from(taken.limit)));
        extra.push((REMAINING.clone(), HeaderValue::from(taken.remaining)));
        extra.push((RESET.clone(), HeaderValue::from(taken.reset)));
    }
    if taken.allowed {
        st.ok.inc();
        return None;
    }
    st.rate_limited.inc();
    if !cfg.enforced.draw() {
        return None;
    }
    st.enforced.inc();
    tracing::debug!(flag = "RL", "local rate limit");
    let grpc = if cfg.resource_exhausted { 8 } else { 14 };
    let mut r = req
        .grpc()
        .reply(cfg.status, "local_rate_limited", Some(grpc));
    cfg.response_headers.apply(r.headers_mut(), &req.format);
    Some(r)
}
