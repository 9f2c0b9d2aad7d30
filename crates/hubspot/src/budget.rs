//! One request budget per integration: a rolling-window limiter sized from the declared tier and
//! corrected by HubSpot's `X-HubSpot-RateLimit-*` headers, so no caller exceeds the burst limit.

use std::sync::Mutex;
use std::time::Duration;

use http::HeaderMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// A HubSpot subscription tier, which decides the rate limits of private apps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    Free,
    Starter,
    #[default]
    Professional,
    Enterprise,
    /// With the API limit increase add-on.
    Addon,
}

impl Tier {
    /// Requests per 10-second rolling window for one private app.
    pub fn burst_limit(self) -> u32 {
        match self {
            Tier::Free | Tier::Starter => 100,
            Tier::Professional | Tier::Enterprise => 190,
            Tier::Addon => 250,
        }
    }

    /// Requests per day for the whole account.
    pub fn daily_limit(self) -> u64 {
        match self {
            Tier::Free | Tier::Starter => 250_000,
            Tier::Professional => 625_000,
            Tier::Enterprise => 1_000_000,
            Tier::Addon => 2_000_000,
        }
    }
}

impl std::str::FromStr for Tier {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        serde_json::from_value(serde_json::Value::String(s.to_ascii_lowercase()))
            .map_err(|_| format!("unknown tier {s:?} (free, starter, professional, enterprise, addon)"))
    }
}

pub const HEADER_MAX: &str = "x-hubspot-ratelimit-max";
pub const HEADER_REMAINING: &str = "x-hubspot-ratelimit-remaining";
pub const HEADER_INTERVAL: &str = "x-hubspot-ratelimit-interval-milliseconds";

/// Shared by every task that calls HubSpot for one integration.
#[derive(Debug)]
pub struct RequestBudget {
    state: Mutex<Window>,
}

/// A request counted in the window, to be `settle`d when its answer arrives.
#[derive(Debug)]
#[must_use = "settle the permit when the answer arrives"]
pub struct Permit {
    id: u64,
}

#[derive(Debug)]
struct Window {
    max: u32,
    interval: Duration,
    /// Requests counted in the current rolling window (ours, and ones HubSpot reported that we
    /// did not send), each with the latest time HubSpot may have counted it: its send time
    /// until its answer arrives, then the answer's arrival. HubSpot's window runs from when a
    /// request reached it, which can be later than when it was sent, so a slot is free only
    /// one interval after the answer; counting from the send would let a request overtake a
    /// slower earlier one and exceed the limit at HubSpot's end.
    counted: Vec<(u64, Instant)>,
    next_id: u64,
    /// Nothing may be sent before this (after a 429).
    paused_until: Option<Instant>,
}

impl Window {
    fn expire(&mut self, now: Instant) {
        let interval = self.interval;
        self.counted.retain(|(_, at)| now.duration_since(*at) < interval);
    }

    fn count(&mut self, at: Instant) -> u64 {
        self.next_id += 1;
        self.counted.push((self.next_id, at));
        self.next_id
    }

    fn oldest(&self) -> Option<Instant> {
        self.counted.iter().map(|(_, at)| *at).min()
    }
}

impl RequestBudget {
    pub fn new(max_per_interval: u32, interval: Duration) -> Self {
        Self {
            state: Mutex::new(Window {
                max: max_per_interval.max(1),
                interval,
                counted: Vec::new(),
                next_id: 0,
                paused_until: None,
            }),
        }
    }

    pub fn for_tier(tier: Tier) -> Self {
        Self::new(tier.burst_limit(), Duration::from_secs(10))
    }

    /// Waits until one more request fits in the rolling window, then counts it.
    pub async fn acquire(&self) -> Permit {
        loop {
            let wait_until = {
                let mut w = self.state.lock().expect("budget lock");
                let now = Instant::now();
                w.expire(now);
                match w.paused_until {
                    Some(until) if until > now => until,
                    _ if (w.counted.len() as u32) < w.max => return Permit { id: w.count(now) },
                    _ => w.oldest().expect("window is full") + w.interval,
                }
            };
            tokio::time::sleep_until(wait_until).await;
        }
    }

    /// The answer to the permit's request arrived (or the request failed): HubSpot counted it
    /// no later than now.
    pub fn settle(&self, permit: Permit) {
        let mut w = self.state.lock().expect("budget lock");
        let now = Instant::now();
        if let Some(slot) = w.counted.iter_mut().find(|(id, _)| *id == permit.id) {
            slot.1 = now;
        }
    }

    /// Takes HubSpot's view of the window: its size, and how many requests it has counted
    /// (which includes other processes using the same app).
    pub fn observe(&self, headers: &HeaderMap) {
        let num =
            |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok());
        let mut w = self.state.lock().expect("budget lock");
        let now = Instant::now();
        if let Some(interval) = num(HEADER_INTERVAL).filter(|ms| *ms > 0) {
            w.interval = Duration::from_millis(interval);
        }
        if let Some(max) = num(HEADER_MAX).filter(|m| *m > 0) {
            w.max = max as u32;
        }
        w.expire(now);
        if let Some(remaining) = num(HEADER_REMAINING) {
            let used_by_hubspot = u64::from(w.max).saturating_sub(remaining) as usize;
            while w.counted.len() < used_by_hubspot {
                w.count(now);
            }
        }
    }

    /// Sends nothing more for `delay` (HubSpot answered 429).
    pub fn pause(&self, delay: Duration) {
        let mut w = self.state.lock().expect("budget lock");
        let until = Instant::now() + delay;
        if w.paused_until.is_none_or(|p| p < until) {
            w.paused_until = Some(until);
        }
    }

    /// Time until the oldest counted request leaves the window: how long to back off after
    /// a 429 without `Retry-After`.
    pub fn time_to_window_end(&self) -> Duration {
        let mut w = self.state.lock().expect("budget lock");
        let now = Instant::now();
        w.expire(now);
        w.oldest().map(|t| (t + w.interval).saturating_duration_since(now)).unwrap_or(w.interval)
    }

    /// Current limit per window, as last seen.
    pub fn max_per_interval(&self) -> u32 {
        self.state.lock().expect("budget lock").max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn never_more_than_max_in_any_window() {
        let budget = RequestBudget::new(5, Duration::from_secs(10));
        let start = Instant::now();
        let mut times = vec![];
        for _ in 0..12 {
            let _counted = budget.acquire().await;
            times.push(start.elapsed());
        }
        for (i, t) in times.iter().enumerate() {
            let in_window = times.iter().filter(|u| **u >= *t && **u < *t + Duration::from_secs(10)).count();
            assert!(in_window <= 5, "request {i} at {t:?} has {in_window} in its window");
        }
        assert_eq!(times[5], Duration::from_secs(10));
        assert_eq!(times[10], Duration::from_secs(20));
    }

    #[tokio::test(start_paused = true)]
    async fn headers_resize_and_count_foreign_requests() {
        let budget = RequestBudget::new(100, Duration::from_secs(10));
        let mut h = HeaderMap::new();
        h.insert(HEADER_MAX, "4".parse().unwrap());
        h.insert(HEADER_REMAINING, "1".parse().unwrap());
        h.insert(HEADER_INTERVAL, "2000".parse().unwrap());
        budget.observe(&h);
        assert_eq!(budget.max_per_interval(), 4);
        let start = Instant::now();
        let _counted = budget.acquire().await;
        assert_eq!(start.elapsed(), Duration::ZERO);
        let _counted = budget.acquire().await;
        assert_eq!(start.elapsed(), Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn pause_holds_every_caller() {
        let budget = RequestBudget::new(100, Duration::from_secs(10));
        budget.pause(Duration::from_secs(3));
        let start = Instant::now();
        let _counted = budget.acquire().await;
        assert_eq!(start.elapsed(), Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn a_slot_frees_one_interval_after_the_answer() {
        let budget = RequestBudget::new(2, Duration::from_secs(10));
        let start = Instant::now();
        let slow = budget.acquire().await;
        let fast = budget.acquire().await;
        budget.settle(fast);
        tokio::time::sleep(Duration::from_secs(3)).await;
        // The slow request's answer arrives 3 s after it was sent: HubSpot may have counted it
        // as late as that.
        budget.settle(slow);
        let _third = budget.acquire().await;
        assert_eq!(start.elapsed(), Duration::from_secs(10), "the fast request's slot");
        let _fourth = budget.acquire().await;
        assert_eq!(start.elapsed(), Duration::from_secs(13), "the slow request's slot");
    }

    #[test]
    fn tiers_parse() {
        assert_eq!("Enterprise".parse::<Tier>().unwrap(), Tier::Enterprise);
        assert!("gold".parse::<Tier>().is_err());
    }
}
