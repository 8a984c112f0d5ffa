//! `envoy.filters.http.local_ratelimit` (`LocalRateLimit`): a token bucket per filter or
//! per-route configuration, refilled continuously; over the limit a request gets 429 (when
//! enforced).

use super::super::headers::HeaderMutation;
use super::super::{duration, err, Result};
use super::Percent;
use crate::stats::{registry, Block, Cell, Kind, Scope};
use envoy_types::pb::envoy::config::core::v3::RuntimeFractionalPercent;
use envoy_types::pb::envoy::extensions::filters::http::local_ratelimit::v3 as pb;
use http::StatusCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `<stat_prefix>.http_local_rate_limit.*`.
#[derive(Debug, Default)]
pub struct RateLimitStats {
    pub enabled: Cell,
    pub enforced: Cell,
    pub ok: Cell,
    pub rate_limited: Cell,
    pub shadow_mode: Cell,
}

impl Block for RateLimitStats {
    fn visit(&self, f: &mut dyn FnMut(&str, Kind, u64)) {
        use Kind::Counter as C;
        f("http_local_rate_limit.enabled", C, self.enabled.get());
        f("http_local_rate_limit.enforced", C, self.enforced.get());
        f("http_local_rate_limit.ok", C, self.ok.get());
        f(
            "http_local_rate_limit.rate_limited",
            C,
            self.rate_limited.get(),
        );
        f(
            "http_local_rate_limit.shadow_mode",
            C,
            self.shadow_mode.get(),
        );
    }
}

/// A token bucket that starts full and refills continuously at `rate` tokens a second.
#[derive(Debug)]
pub struct TokenBucket {
    max: f64,
    rate: f64,
    /// Tokens at `at`.
    state: Mutex<(f64, Instant)>,
}

/// What a request took from the bucket, and what is left.
#[derive(Debug, Clone, Copy)]
pub struct Taken {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until the next whole token (0 while one is left).
    pub reset: u64,
}

impl TokenBucket {
    pub fn new(max: u32, per_fill: u32, interval: Duration) -> TokenBucket {
        TokenBucket {
            max: f64::from(max),
            rate: f64::from(per_fill) / interval.as_secs_f64(),
            state: Mutex::new((f64::from(max), Instant::now())),
        }
    }

    pub fn take(&self) -> Taken {
        let now = Instant::now();
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let tokens = (s.0 + (now - s.1).as_secs_f64() * self.rate).min(self.max);
        let allowed = tokens >= 1.0;
        let left = if allowed { tokens - 1.0 } else { tokens };
        *s = (left, now);
        let reset = if left >= 1.0 || self.rate <= 0.0 {
            0
        } else {
            ((1.0 - left) / self.rate).ceil() as u64
        };
        Taken {
            allowed,
            limit: self.max as u32,
            remaining: left.floor() as u32,
            reset,
        }
    }
}

#[derive(Debug)]
pub struct RateLimitCfg {
    pub status: StatusCode,
    pub bucket: TokenBucket,
    /// `filter_enabled` / `filter_enforced` (unset: off).
    pub enabled: Percent,
    pub enforced: Percent,
    pub response_headers: HeaderMutation,
    /// `enable_x_ratelimit_headers: DRAFT_VERSION_03`.
    pub x_ratelimit_headers: bool,
    pub resource_exhausted: bool,
    pub stats: Arc<RateLimitStats>,
}

fn runtime_percent(p: &Option<RuntimeFractionalPercent>, path: &str) -> Result<Percent> {
    match p {
        None => Ok(Percent {
            numerator: 0,
            denominator: 100,
        }),
        Some(r) => Percent::from_proto(&r.default_value, &format!("{path}.default_value")),
    }
}

impl RateLimitCfg {
    pub fn from_proto(l: &pb::LocalRateLimit, path: &str) -> Result<RateLimitCfg> {
        if l.stat_prefix.is_empty() {
            return err(&format!("{path}.stat_prefix"), "stat_prefix is required");
        }
        let Some(tb) = &l.token_bucket else {
            return err(&format!("{path}.token_bucket"), "token_bucket is required");
        };
        let tp = format!("{path}.token_bucket");
        let Some(fi) = &tb.fill_interval else {
            return err(&format!("{tp}.fill_interval"), "fill_interval is required");
        };
        let interval = duration(fi, &format!("{tp}.fill_interval"))?;
        if interval < Duration::from_millis(50) {
            return err(&format!("{tp}.fill_interval"), "must be at least 50ms");
        }
        let per_fill = tb.tokens_per_fill.as_ref().map_or(1, |v| v.value);
        let status = l
            .status
            .as_ref()
            .map(|s| s.code)
            .filter(|c| *c >= 400)
            .and_then(|c| u16::try_from(c).ok())
            .and_then(|c| StatusCode::from_u16(c).ok())
            .unwrap_or(StatusCode::TOO_MANY_REQUESTS);
        Ok(RateLimitCfg {
            status,
            bucket: TokenBucket::new(tb.max_tokens, per_fill, interval),
            enabled: runtime_percent(&l.filter_enabled, &format!("{path}.filter_enabled"))?,
            enforced: runtime_percent(&l.filter_enforced, &format!("{path}.filter_enforced"))?,
            response_headers: HeaderMutation::from_proto(
                &l.response_headers_to_add,
                &[],
                path,
                "response_headers_to_add",
                "",
            )?,
            x_ratelimit_headers: l.enable_x_ratelimit_headers == 1,
            resource_exhausted: l.rate_limited_as_resource_exhausted,
            stats: registry().block(Scope::Named(&l.stat_prefix), RateLimitStats::default),
        })
    }
}
