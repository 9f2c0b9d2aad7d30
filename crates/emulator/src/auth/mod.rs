//! Who is calling (bearer tokens and their scopes, OAuth apps' tokens in `oauth`) and how much
//! they may call (HubSpot's per-app ten-second window and per-account daily limit).

pub mod oauth;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue};

use crate::clock::{epoch_day, now_ms};
use crate::config::TokenGrant;
use crate::error::{ApiFailure, ApiResult, RateLimitPolicy};
use hubspot::{Tier, bearer_token};

/// Every scope a token without an explicit list holds.
pub fn all_scopes() -> Vec<String> {
    let mut scopes = vec![];
    for t in ["contacts", "companies", "deals", "custom", "line_items", "products", "quotes"] {
        for access in ["read", "write"] {
            scopes.push(format!("crm.objects.{t}.{access}"));
        }
    }
    for t in ["contacts", "companies", "deals", "custom"] {
        for access in ["read", "write"] {
            scopes.push(format!("crm.schemas.{t}.{access}"));
        }
    }
    scopes.extend(["crm.objects.owners.read", "tickets", "timeline", "oauth", "e-commerce"].map(String::from));
    scopes.extend(
        ["behavioral_events.event_definitions.read_write", "analytics.behavioral_events.send"].map(String::from),
    );
    scopes
}

/// The identity behind a token.
#[derive(Clone, Debug)]
pub struct Caller {
    pub app_id: u64,
    pub user_id: u64,
    pub scopes: Arc<BTreeSet<String>>,
    /// An OAuth (public) app's access token rather than a private app's token: limited per
    /// installing account, with no daily limit.
    pub public_app: bool,
}

impl Caller {
    /// Passes when the caller holds any of `alternatives`; HubSpot's 403 otherwise.
    pub fn require_any(&self, alternatives: &[String]) -> ApiResult<()> {
        if alternatives.iter().any(|s| self.scopes.contains(s)) {
            Ok(())
        } else {
            Err(ApiFailure::missing_scopes(&alternatives.iter().map(String::as_str).collect::<Vec<_>>()))
        }
    }
}

/// The tokens the emulator accepts. Each token is its own private app: the first has the
/// configured app id, the next ones the following ids, so that writes by a second token look
/// like another integration's.
pub struct Tokens {
    by_token: HashMap<String, Caller>,
}

/// First user id; the n-th token belongs to user `FIRST_USER_ID + n`.
pub const FIRST_USER_ID: u64 = 1_000_001;

impl Tokens {
    pub fn new(grants: &[TokenGrant], app_id: u64) -> Self {
        let by_token = grants
            .iter()
            .enumerate()
            .map(|(i, g)| {
                let scopes = g.scopes.clone().unwrap_or_else(all_scopes);
                let caller = Caller {
                    app_id: app_id + i as u64,
                    user_id: FIRST_USER_ID + i as u64,
                    scopes: Arc::new(scopes.into_iter().collect()),
                    public_app: false,
                };
                (g.token.clone(), caller)
            })
            .collect();
        Self { by_token }
    }

    pub fn get(&self, token: &str) -> Option<&Caller> {
        self.by_token.get(token)
    }

    /// The caller named by an `Authorization: Bearer` header.
    pub fn caller_for(&self, headers: &HeaderMap) -> Option<&Caller> {
        self.get(bearer_token(headers)?)
    }
}

const WINDOW: Duration = Duration::from_secs(10);

/// Requests per ten seconds a public (OAuth) app may make per installing account.
pub const PUBLIC_APP_BURST: usize = 110;

/// HubSpot's limits: a rolling ten-second window per app, a daily count per account that
/// resets at midnight (the emulated account's time zone is UTC).
pub struct RateLimiter {
    burst: usize,
    daily: u64,
    windows: HashMap<u64, VecDeque<Instant>>,
    /// Ten-second windows of public (OAuth) apps, which have no daily limit.
    public_windows: HashMap<u64, VecDeque<Instant>>,
    day: i64,
    daily_used: u64,
}

impl RateLimiter {
    pub fn new(tier: Tier) -> Self {
        Self::with_limits(tier.burst_limit() as usize, tier.daily_limit())
    }

    fn with_limits(burst: usize, daily: u64) -> Self {
        Self {
            burst,
            daily,
            windows: HashMap::new(),
            public_windows: HashMap::new(),
            day: epoch_day(now_ms()),
            daily_used: 0,
        }
    }

    /// Counts one request of `app_id`, or refuses it. Either way, the `X-HubSpot-RateLimit-*`
    /// headers to send with the answer.
    pub fn admit(&mut self, app_id: u64) -> (HeaderMap, Result<(), ApiFailure>) {
        let now = Instant::now();
        let today = epoch_day(now_ms());
        if today != self.day {
            self.day = today;
            self.daily_used = 0;
        }
        let (burst, daily) = (self.burst, self.daily);
        let window = self.windows.entry(app_id).or_default();
        while window.front().is_some_and(|t| now.duration_since(*t) >= WINDOW) {
            window.pop_front();
        }
        let verdict = if self.daily_used >= daily {
            Err(ApiFailure::rate_limited(RateLimitPolicy::Daily))
        } else if window.len() >= burst {
            Err(ApiFailure::rate_limited(RateLimitPolicy::TenSecondly))
        } else {
            window.push_back(now);
            self.daily_used += 1;
            Ok(())
        };
        let mut headers = HeaderMap::new();
        let mut put = |name: &'static str, value: u64| {
            headers.insert(name, HeaderValue::from(value));
        };
        put("x-hubspot-ratelimit-max", burst as u64);
        put("x-hubspot-ratelimit-remaining", burst.saturating_sub(window.len()) as u64);
        put("x-hubspot-ratelimit-interval-milliseconds", WINDOW.as_millis() as u64);
        put("x-hubspot-ratelimit-daily", daily);
        put("x-hubspot-ratelimit-daily-remaining", daily.saturating_sub(self.daily_used));
        (headers, verdict)
    }

    /// Counts one request of public (OAuth) app `app_id` in the emulated account, or refuses
    /// it: 110 per ten seconds, no daily limit, so no daily headers.
    pub fn admit_public_app(&mut self, app_id: u64) -> (HeaderMap, Result<(), ApiFailure>) {
        let now = Instant::now();
        let window = self.public_windows.entry(app_id).or_default();
        while window.front().is_some_and(|t| now.duration_since(*t) >= WINDOW) {
            window.pop_front();
        }
        let verdict = if window.len() >= PUBLIC_APP_BURST {
            Err(ApiFailure::rate_limited(RateLimitPolicy::TenSecondly))
        } else {
            window.push_back(now);
            Ok(())
        };
        let mut headers = HeaderMap::new();
        headers.insert("x-hubspot-ratelimit-max", HeaderValue::from(PUBLIC_APP_BURST as u64));
        headers.insert(
            "x-hubspot-ratelimit-remaining",
            HeaderValue::from(PUBLIC_APP_BURST.saturating_sub(window.len()) as u64),
        );
        headers.insert("x-hubspot-ratelimit-interval-milliseconds", HeaderValue::from(WINDOW.as_millis() as u64));
        (headers, verdict)
    }
}

/// CRM search has its own limit: requests per second for the whole account.
pub struct SearchLimiter {
    per_second: usize,
    recent: VecDeque<Instant>,
}

/// Search requests per second per account.
pub const SEARCH_PER_SECOND: usize = 5;

impl Default for SearchLimiter {
    fn default() -> Self {
        Self { per_second: SEARCH_PER_SECOND, recent: VecDeque::new() }
    }
}

impl SearchLimiter {
    /// Counts one search, or refuses it with HubSpot's 429.
    pub fn admit(&mut self) -> Result<(), ApiFailure> {
        let now = Instant::now();
        while self.recent.front().is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1)) {
            self.recent.pop_front();
        }
        if self.recent.len() >= self.per_second {
            return Err(ApiFailure::rate_limited(RateLimitPolicy::Secondly));
        }
        self.recent.push_back(now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_is_per_app_and_refusals_are_not_counted() {
        let mut limiter = RateLimiter::new(Tier::Free);
        for i in 0..100 {
            let (headers, verdict) = limiter.admit(1);
            assert!(verdict.is_ok(), "request {i}");
            assert_eq!(headers["x-hubspot-ratelimit-remaining"], (99 - i).to_string());
        }
        let (headers, verdict) = limiter.admit(1);
        let failure = verdict.unwrap_err();
        assert_eq!(failure.body["policyName"], "TEN_SECONDLY_ROLLING");
        assert_eq!(headers["x-hubspot-ratelimit-remaining"], "0");
        assert_eq!(headers["x-hubspot-ratelimit-daily-remaining"], "249900");
        assert!(limiter.admit(2).1.is_ok(), "another app has its own window");
    }

    #[test]
    fn public_apps_have_their_own_window_and_no_daily_limit() {
        let mut limiter = RateLimiter::with_limits(10, 1);
        for i in 0..PUBLIC_APP_BURST {
            let (headers, verdict) = limiter.admit_public_app(7);
            assert!(verdict.is_ok(), "request {i}");
            assert!(!headers.contains_key("x-hubspot-ratelimit-daily"));
            assert_eq!(headers["x-hubspot-ratelimit-max"], "110");
        }
        assert_eq!(limiter.admit_public_app(7).1.unwrap_err().body["policyName"], "TEN_SECONDLY_ROLLING");
        assert!(limiter.admit(1).1.is_ok(), "public app calls are not counted against the daily limit");
    }

    #[test]
    fn search_has_its_own_per_second_limit() {
        let mut limiter = SearchLimiter::default();
        for _ in 0..SEARCH_PER_SECOND {
            assert!(limiter.admit().is_ok());
        }
        assert_eq!(limiter.admit().unwrap_err().body["policyName"], "SECONDLY");
    }

    #[test]
    fn daily_limit_is_shared_by_every_app() {
        let mut limiter = RateLimiter::with_limits(10, 3);
        assert!(limiter.admit(1).1.is_ok());
        assert!(limiter.admit(2).1.is_ok());
        assert!(limiter.admit(3).1.is_ok());
        let (headers, verdict) = limiter.admit(4);
        assert_eq!(verdict.unwrap_err().body["policyName"], "DAILY");
        assert_eq!(headers["x-hubspot-ratelimit-daily-remaining"], "0");
        assert_eq!(headers["x-hubspot-ratelimit-remaining"], "10", "app 4 has sent nothing");
    }

    #[test]
    fn tokens_carry_their_scopes() {
        let grants = vec![
            TokenGrant { token: "all".into(), scopes: None },
            TokenGrant { token: "few".into(), scopes: Some(vec!["crm.objects.contacts.read".into()]) },
        ];
        let tokens = Tokens::new(&grants, 100);
        let all = tokens.get("all").unwrap();
        assert_eq!(all.app_id, 100);
        assert!(all.require_any(&["crm.schemas.deals.write".into()]).is_ok());
        let few = tokens.get("few").unwrap();
        assert_eq!(few.app_id, 101);
        let denied = few.require_any(&["crm.objects.contacts.write".into()]).unwrap_err();
        assert_eq!(denied.body["errors"][0]["context"]["requiredScopes"][0], "crm.objects.contacts.write");
        let mut headers = HeaderMap::new();
        headers.insert("authorization", "Bearer few".parse().unwrap());
        assert_eq!(tokens.caller_for(&headers).unwrap().app_id, 101);
        headers.insert("authorization", "Basic few".parse().unwrap());
        assert!(tokens.caller_for(&headers).is_none());
    }
}
