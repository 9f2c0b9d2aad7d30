//! Switchable faults for testing clients: the next API calls answer late, or with a status
//! HubSpot answers under load (429 storms, 423, 5xx), set through `PUT /_emulator/faults`.

use std::time::Duration;

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::error::{ApiFailure, RateLimitPolicy, correlation_id};

/// A fault plan, as sent to and shown by `/_emulator/faults`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
}

impl FaultPlan {
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
        match self.policy_name.as_deref() {
            None | Some("TEN_SECONDLY_ROLLING") | Some("DAILY") => Ok(()),
            Some(_) => Err(ApiFailure::validation("policyName must be TEN_SECONDLY_ROLLING or DAILY")),
        }
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

/// The current plan, if any.
#[derive(Default)]
pub struct Faults {
    plan: Option<FaultPlan>,
}

impl Faults {
    pub fn set(&mut self, plan: FaultPlan) {
        self.plan = Some(plan);
    }

    pub fn clear(&mut self) {
        self.plan = None;
    }

    pub fn current(&self) -> Option<&FaultPlan> {
        self.plan.as_ref()
    }

    /// The fault for a call to `path`, counting it against the plan.
    pub fn take(&mut self, path: &str) -> Option<Fault> {
        let plan = self.plan.as_mut()?;
        if plan.path_prefix.as_deref().is_some_and(|p| !path.starts_with(p)) {
            return None;
        }
        let answer = match plan.status {
            Some(status) => FaultAnswer::Fail(answer(status, plan)),
            None if plan.drop_connection => FaultAnswer::DropConnection,
            None => FaultAnswer::Serve,
        };
        let fault = Fault { delay: Duration::from_millis(plan.delay_ms), answer };
        if let Some(count) = plan.count.as_mut() {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.plan = None;
            }
        }
        Some(fault)
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
    }
}
