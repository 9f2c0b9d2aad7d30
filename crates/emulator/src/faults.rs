//! Switchable faults for testing clients: API calls answer late, with a status HubSpot answers
//! under load (429 storms, 423, 5xx), or not at all (a dropped connection). Standing faults come
//! from flags (`--fault-5xx-rate`, `--fault-latency-ms`, `--fault-drop-rate`, `--fault-429-storm`)
//! or `PUT /_emulator/faults/standing`; one more plan, often a counted one, is set through
//! `PUT /_emulator/faults`.

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::error::{ApiFailure, RateLimitPolicy, correlation_id};

/// A fault plan, as sent to and shown by `/_emulator/faults`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultPlan {
    /// Status to answer instead of serving the call (429, 423 or a 5xx); none: serve it (late).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// For 429: `TEN_SECONDLY_ROLLING` (default) or `DAILY`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_name: Option<String>,
    /// Wait this long before answering.
    #[serde(default)]
    pub delay_ms: u64,
    /// How many more calls the fault hits; none: every call until cleared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// Only calls whose path starts with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    /// Close the connection without any answer (after `delayMs`), as a load balancer does when
    /// it drops a request.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub drop_connection: bool,
    /// The share of matching calls hit (more than 0, at most 1); all of them when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    /// With `activeMs`: the plan applies during the first `activeMs` of every `periodMs`,
    /// counted from when it was set (a 429 storm every minute, say).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_ms: Option<u64>,
}

impl FaultPlan {
    /// A share of calls answered with a 5xx status.
    pub fn server_errors(rate: f64, status: u16) -> Self {
        FaultPlan { status: Some(status), rate: Some(rate), ..FaultPlan::default() }
    }

    /// Every call answered `delay` late.
    pub fn latency(delay: Duration) -> Self {
        FaultPlan { delay_ms: delay.as_millis() as u64, ..FaultPlan::default() }
    }

    /// A share of calls whose connection is dropped.
    pub fn dropped_connections(rate: f64) -> Self {
        FaultPlan { drop_connection: true, rate: Some(rate), ..FaultPlan::default() }
    }

    /// 429 storms: every `every`, `lasting` of `TEN_SECONDLY_ROLLING` 429s.
    pub fn rate_limit_storms(every: Duration, lasting: Duration) -> Self {
        FaultPlan {
            status: Some(429),
            period_ms: Some(every.as_millis() as u64),
            active_ms: Some(lasting.as_millis() as u64),
            ..FaultPlan::default()
        }
    }

    /// Checks that the plan describes something HubSpot does.
    pub fn validate(&self) -> Result<(), ApiFailure> {
        if let Some(status) = self.status
            && !(status == 423 || status == 429 || (500..=599).contains(&status))
        {
            return Err(ApiFailure::validation("status must be 423, 429 or a 5xx status"));
        }
        if self.drop_connection && self.status.is_some() {
            return Err(ApiFailure::validation(
                "a dropped connection answers no status: give status or dropConnection",
            ));
        }
        if self.rate.is_some_and(|r| !(r > 0.0 && r <= 1.0)) {
            return Err(ApiFailure::validation("rate must be more than 0 and at most 1"));
        }
        match (self.period_ms, self.active_ms) {
            (None, None) => {}
            (Some(period), Some(active)) if period > 0 && active <= period => {}
            _ => return Err(ApiFailure::validation("periodMs and activeMs go together, with activeMs <= periodMs")),
        }
        match self.policy_name.as_deref() {
            None | Some("TEN_SECONDLY_ROLLING") | Some("DAILY") => Ok(()),
            Some(_) => Err(ApiFailure::validation("policyName must be TEN_SECONDLY_ROLLING or DAILY")),
        }
    }

    /// Whether a call to `path` at `now` is hit, the plan having been set at `since`.
    fn hits(&self, path: &str, since: Instant, now: Instant) -> bool {
        if self.path_prefix.as_deref().is_some_and(|p| !path.starts_with(p)) {
            return false;
        }
        if let (Some(period), Some(active)) = (self.period_ms, self.active_ms)
            && now.duration_since(since).as_millis() as u64 % period.max(1) >= active
        {
            return false;
        }
        self.rate.is_none_or(|rate| rand::random::<f64>() < rate)
    }

    fn fault(&self) -> Fault {
        let answer = match self.status {
            Some(status) => FaultAnswer::Fail(answer(status, self)),
            None if self.drop_connection => FaultAnswer::DropConnection,
            None => FaultAnswer::Serve,
        };
        Fault { delay: Duration::from_millis(self.delay_ms), answer }
    }
}

/// What one call suffers.
pub struct Fault {
    pub delay: Duration,
    pub answer: FaultAnswer,
}

pub enum FaultAnswer {
    /// Served as usual (late, when the plan has a delay).
    Serve,
    Fail(ApiFailure),
    DropConnection,
}

/// The standing faults and the one plan set through `PUT /_emulator/faults`, each with the
/// time it was set, which periodic plans count from.
#[derive(Default)]
pub struct Faults {
    plan: Option<(FaultPlan, Instant)>,
    standing: Vec<(FaultPlan, Instant)>,
}

impl Faults {
    pub fn with_standing(standing: Vec<FaultPlan>) -> Self {
        let mut faults = Faults::default();
        faults.set_standing(standing);
        faults
    }

    pub fn set(&mut self, plan: FaultPlan) {
        self.plan = Some((plan, Instant::now()));
    }

    pub fn clear(&mut self) {
        self.plan = None;
    }

    pub fn current(&self) -> Option<&FaultPlan> {
        self.plan.as_ref().map(|(plan, _)| plan)
    }

    pub fn set_standing(&mut self, standing: Vec<FaultPlan>) {
        let now = Instant::now();
        self.standing = standing.into_iter().map(|plan| (plan, now)).collect();
    }

    pub fn standing(&self) -> Vec<FaultPlan> {
        self.standing.iter().map(|(plan, _)| plan.clone()).collect()
    }

    /// The fault for a call to `path`, counting it against a counted plan. A call several
    /// plans hit waits the longest of their delays and gets the first failure among them.
    pub fn take(&mut self, path: &str) -> Option<Fault> {
        let now = Instant::now();
        let mut hit = vec![];
        if let Some((plan, since)) = self.plan.as_mut()
            && plan.hits(path, *since, now)
        {
            hit.push(plan.fault());
            if let Some(count) = plan.count.as_mut() {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    self.plan = None;
                }
            }
        }
        hit.extend(self.standing.iter().filter(|(plan, since)| plan.hits(path, *since, now)).map(|(p, _)| p.fault()));
        hit.into_iter().reduce(|a, b| Fault {
            delay: a.delay.max(b.delay),
            answer: if matches!(a.answer, FaultAnswer::Serve) { b.answer } else { a.answer },
        })
    }
}

fn answer(status: u16, plan: &FaultPlan) -> ApiFailure {
    if status == 429 {
        let policy = match plan.policy_name.as_deref() {
            Some("DAILY") => RateLimitPolicy::Daily,
            _ => RateLimitPolicy::TenSecondly,
        };
        return ApiFailure::rate_limited(policy);
    }
    let (category, message) = match status {
        423 => ("LOCKED", "The resource is locked; try again in a few seconds."),
        502 => ("BAD_GATEWAY", "Bad gateway"),
        503 => ("SERVICE_UNAVAILABLE", "The service is temporarily unavailable."),
        504 => ("GATEWAY_TIMEOUT", "Gateway timeout"),
        _ => ("INTERNAL_ERROR", "An internal error occurred."),
    };
    ApiFailure {
        status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        body: json!({ "status": "error", "message": message, "correlationId": correlation_id(), "category": category }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(json: serde_json::Value) -> FaultPlan {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn counted_plans_run_out_and_prefixes_filter() {
        let mut faults = Faults::default();
        faults.set(plan(json!({"status": 503, "count": 2, "pathPrefix": "/crm/v3/objects"})));
        assert!(faults.take("/crm/v3/properties/contacts").is_none());
        let first = faults.take("/crm/v3/objects/contacts").unwrap();
        assert!(matches!(first.answer, FaultAnswer::Fail(f) if f.status == StatusCode::SERVICE_UNAVAILABLE));
        assert!(faults.take("/crm/v3/objects/deals").is_some());
        assert!(faults.take("/crm/v3/objects/deals").is_none());
        assert!(faults.current().is_none());
    }

    #[test]
    fn rate_limit_faults_use_hubspots_body() {
        let mut faults = Faults::default();
        faults.set(plan(json!({"status": 429, "policyName": "DAILY"})));
        let FaultAnswer::Fail(answer) = faults.take("/x").unwrap().answer else { panic!("a 429 fails the call") };
        assert_eq!(answer.body["policyName"], "DAILY");
        assert_eq!(answer.body["errorType"], "RATE_LIMIT");
        assert!(faults.take("/x").is_some(), "an uncounted plan stays");
        faults.set(plan(json!({"delayMs": 250})));
        let slow = faults.take("/x").unwrap();
        assert_eq!(slow.delay, Duration::from_millis(250));
        assert!(matches!(slow.answer, FaultAnswer::Serve));
        faults.set(plan(json!({"dropConnection": true})));
        assert!(matches!(faults.take("/x").unwrap().answer, FaultAnswer::DropConnection));
        assert!(plan(json!({"status": 404})).validate().is_err());
        assert!(plan(json!({"status": 502})).validate().is_ok());
        assert!(plan(json!({"status": 502, "dropConnection": true})).validate().is_err());
        assert!(plan(json!({"status": 502, "rate": 0.0})).validate().is_err());
        assert!(plan(json!({"status": 429, "periodMs": 1000})).validate().is_err());
        assert!(plan(json!({"status": 429, "periodMs": 1000, "activeMs": 2000})).validate().is_err());
    }

    #[test]
    fn rates_hit_about_their_share_of_calls() {
        let mut faults = Faults::with_standing(vec![FaultPlan::server_errors(0.25, 502)]);
        let hit = (0..4000).filter(|_| faults.take("/x").is_some()).count();
        // 1,000 expected; the binomial's standard deviation is about 27.
        assert!((850..=1150).contains(&hit), "{hit} of 4000 calls hit");
    }

    #[test]
    fn storms_apply_only_in_their_window() {
        let storm = FaultPlan::rate_limit_storms(Duration::from_secs(60), Duration::from_secs(5));
        let since = Instant::now();
        assert!(storm.hits("/x", since, since + Duration::from_secs(2)));
        assert!(!storm.hits("/x", since, since + Duration::from_secs(30)));
        assert!(storm.hits("/x", since, since + Duration::from_secs(61)));
    }

    #[test]
    fn standing_faults_combine_with_the_plan() {
        let mut faults = Faults::with_standing(vec![FaultPlan::latency(Duration::from_millis(300))]);
        faults.set(plan(json!({"status": 503, "count": 1, "delayMs": 100})));
        let both = faults.take("/x").unwrap();
        assert_eq!(both.delay, Duration::from_millis(300));
        assert!(matches!(both.answer, FaultAnswer::Fail(f) if f.status == StatusCode::SERVICE_UNAVAILABLE));
        let standing_only = faults.take("/x").unwrap();
        assert!(matches!(standing_only.answer, FaultAnswer::Serve));
        assert_eq!(faults.standing().len(), 1);
    }
}
