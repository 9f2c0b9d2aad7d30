//! HubSpot's error answers: status code plus the JSON body HubSpot sends with it.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// An error answer, ready to send.
#[derive(Debug, Clone)]
pub struct ApiFailure {
    pub status: StatusCode,
    pub body: Value,
}

pub use hubspot::error::CORRELATION_ID_HEADER;

impl IntoResponse for ApiFailure {
    fn into_response(self) -> Response {
        let id = self.body["correlationId"].as_str().and_then(|id| HeaderValue::from_str(id).ok());
        let mut response = (self.status, axum::Json(self.body)).into_response();
        if let Some(id) = id {
            response.headers_mut().insert(CORRELATION_ID_HEADER, id);
        }
        response
    }
}

/// A random UUID-shaped string, as HubSpot puts in every error body.
pub fn correlation_id() -> String {
    let b: [u8; 16] = rand::random();
    let h = hex::encode(b);
    format!("{}-{}-4{}-a{}-{}", &h[0..8], &h[8..12], &h[13..16], &h[17..20], &h[20..32])
}

fn failure(status: StatusCode, category: &str, message: &str) -> ApiFailure {
    ApiFailure {
        status,
        body: json!({
            "status": "error",
            "message": message,
            "correlationId": correlation_id(),
            "category": category,
        }),
    }
}

impl ApiFailure {
    /// Adds HubSpot's `errors` array of details.
    pub fn with_errors(mut self, errors: Vec<Value>) -> Self {
        self.body["errors"] = Value::Array(errors);
        self
    }

    pub fn message(&self) -> &str {
        self.body["message"].as_str().unwrap_or("")
    }

    pub fn category(&self) -> &str {
        self.body["category"].as_str().unwrap_or("")
    }

    pub fn invalid_authentication() -> Self {
        failure(
            StatusCode::UNAUTHORIZED,
            "INVALID_AUTHENTICATION",
            "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
        )
    }

    pub fn missing_scopes(required: &[&str]) -> Self {
        failure(
            StatusCode::FORBIDDEN,
            "MISSING_SCOPES",
            "This app hasn't been granted all required scopes to make this call. Read more about required scopes here: https://developers.hubspot.com/scopes.",
        )
        .with_errors(vec![json!({
            "message": "One or more of the following scopes are required.",
            "context": { "requiredScopes": required },
        })])
    }

    pub fn rate_limited(policy: RateLimitPolicy) -> Self {
        let (name, message) = match policy {
            RateLimitPolicy::TenSecondly => {
                ("TEN_SECONDLY_ROLLING", "You have reached your ten_secondly_rolling limit.")
            }
            RateLimitPolicy::Daily => ("DAILY", "You have reached your daily limit."),
            RateLimitPolicy::Secondly => ("SECONDLY", "You have reached your secondly limit."),
        };
        ApiFailure {
            status: StatusCode::TOO_MANY_REQUESTS,
            body: json!({
                "status": "error",
                "message": message,
                "errorType": "RATE_LIMIT",
                "correlationId": correlation_id(),
                "policyName": name,
            }),
        }
    }

    pub fn validation(message: &str) -> Self {
        failure(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", message)
    }

    pub fn not_found(message: &str) -> Self {
        failure(StatusCode::NOT_FOUND, "OBJECT_NOT_FOUND", message)
    }

    pub fn conflict(message: &str) -> Self {
        failure(StatusCode::CONFLICT, "CONFLICT", message)
    }

    pub fn already_exists(message: &str) -> Self {
        failure(StatusCode::CONFLICT, "OBJECT_ALREADY_EXISTS", message)
    }

    pub fn route_not_found() -> Self {
        failure(StatusCode::NOT_FOUND, "OBJECT_NOT_FOUND", "Resource not found")
    }

    /// One entry of a batch's `errors` array (HTTP 207), built from this failure.
    pub fn as_batch_error(&self, context: Value) -> Value {
        json!({
            "status": "error",
            "category": self.category(),
            "message": self.message(),
            "context": context,
            "links": {},
            "errors": self.body.get("errors").cloned().unwrap_or(Value::Array(vec![])),
        })
    }
}

/// Which rate limit a request ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimitPolicy {
    TenSecondly,
    Daily,
    /// CRM search's per-second limit.
    Secondly,
}

pub type ApiResult<T> = Result<T, ApiFailure>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn correlation_id_is_uuid_shaped() {
        let id = correlation_id();
        let parts: Vec<usize> = id.split('-').map(str::len).collect();
        assert_eq!(parts, vec![8, 4, 4, 4, 12]);
        assert!(id.chars().all(|c| c == '-' || c.is_ascii_hexdigit()));
        assert_ne!(id, correlation_id());
    }
}
