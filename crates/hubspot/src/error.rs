//! Errors of HubSpot calls. HubSpot's `category`, `message` and `correlationId` are always kept.

use serde::Deserialize;

/// HubSpot names each request's correlation id in this header, on successes too.
pub const CORRELATION_ID_HEADER: &str = "x-hubspot-correlation-id";

/// An error answer from HubSpot. Its Display form, which logs and status reports show, leaves
/// HubSpot's `message` out: HubSpot's messages quote the values they refuse (emails, names),
/// so they are read only where records are kept (the rejected records' store).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("HubSpot answered {status} {category} (correlationId {correlation_id})")]
pub struct ApiError {
    pub status: u16,
    pub category: String,
    pub message: String,
    pub correlation_id: String,
    /// For `MISSING_SCOPES`: the scopes the call needs.
    pub required_scopes: Vec<String>,
    /// For 429: `TEN_SECONDLY_ROLLING`, `DAILY`, ...
    pub policy_name: Option<String>,
}

impl ApiError {
    /// Reads HubSpot's error body; falls back to the raw text when it is not HubSpot's JSON.
    pub fn from_body(status: u16, body: &[u8]) -> Self {
        match serde_json::from_slice::<ErrorBody>(body) {
            Ok(parsed) => parsed.into_api_error(status),
            Err(_) => ApiError {
                status,
                category: "UNKNOWN".into(),
                message: String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned(),
                correlation_id: String::new(),
                required_scopes: vec![],
                policy_name: None,
            },
        }
    }
}

/// HubSpot's JSON error body, as the API and the OAuth token endpoints send it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ErrorBody {
    #[serde(default)]
    message: String,
    #[serde(default)]
    correlation_id: String,
    #[serde(default)]
    category: Option<String>,
    /// `"error"` on API answers; the OAuth token endpoints put their error code here
    /// (`BAD_REFRESH_TOKEN`, ...).
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    error_type: Option<String>,
    #[serde(default)]
    policy_name: Option<String>,
    #[serde(default)]
    errors: Vec<ErrorDetail>,
}

#[derive(Deserialize)]
struct ErrorDetail {
    #[serde(default)]
    context: Option<ErrorContext>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ErrorContext {
    #[serde(default)]
    required_scopes: Vec<String>,
}

impl ErrorBody {
    fn into_api_error(self, status: u16) -> ApiError {
        ApiError {
            status,
            // A token endpoint's own code (`BAD_REFRESH_TOKEN`) is more telling than the
            // generic category it may carry beside it.
            category: self
                .status
                .filter(|s| s != "error")
                .or(self.category)
                .or(self.error_type)
                .unwrap_or_else(|| "UNKNOWN".into()),
            message: self.message,
            correlation_id: self.correlation_id,
            required_scopes: self
                .errors
                .into_iter()
                .filter_map(|d| d.context)
                .flat_map(|c| c.required_scopes)
                .collect(),
            policy_name: self.policy_name,
        }
    }
}

/// Why a HubSpot call failed.
#[derive(Clone, Debug, thiserror::Error)]
pub enum Error {
    /// HubSpot answered with an error that retrying will not fix (or retries ran out).
    #[error(transparent)]
    Api(#[from] ApiError),
    /// The account's daily request limit is spent; nothing succeeds until it resets.
    #[error("HubSpot daily request limit reached (correlationId {correlation_id})")]
    DailyLimitExhausted { correlation_id: String },
    /// The request did not get an answer (connection, timeout), after retries.
    #[error("HubSpot request failed: {0}")]
    Transport(String),
    /// HubSpot answered 2xx with a body we could not read.
    #[error("unexpected HubSpot response: {0}")]
    Decode(String),
    /// A search matches more than HubSpot pages through (10,000 results); narrow its filters.
    #[error("the search matches {total} objects; HubSpot returns at most 10,000 per search")]
    SearchCapped { total: u64 },
}

impl Error {
    /// Whether this is HubSpot refusing the call for a missing scope.
    pub fn missing_scopes(&self) -> Option<&[String]> {
        match self {
            Error::Api(e) if e.category == "MISSING_SCOPES" => Some(&e.required_scopes),
            _ => None,
        }
    }

    /// HTTP status of an API error.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api(e) => Some(e.status),
            _ => None,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A JSON body of `operation` that could not be written or read.
pub(crate) fn decode_error(operation: &str, error: &serde_json::Error) -> Error {
    Error::Decode(format!("{operation}: {}", json_error_without_values(error)))
}

/// What is wrong with a JSON text, said without the value serde quotes (`invalid type: string
/// "ada@example.com"`): its kind and position only, fit for a log line.
pub fn json_error_without_values(error: &serde_json::Error) -> String {
    let kind = match error.classify() {
        serde_json::error::Category::Io => "I/O error",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "unexpected data",
        serde_json::error::Category::Eof => "truncated JSON",
    };
    format!("{kind} at line {} column {}", error.line(), error.column())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_endpoint_errors_keep_their_code() {
        let body =
            br#"{"status":"BAD_REFRESH_TOKEN","message":"missing or invalid refresh token","correlationId":"c-1"}"#;
        let error = ApiError::from_body(400, body);
        assert_eq!((error.category.as_str(), error.correlation_id.as_str()), ("BAD_REFRESH_TOKEN", "c-1"));
        let with_category =
            br#"{"status":"BAD_CLIENT_ID","message":"m","correlationId":"c-2","category":"VALIDATION_ERROR"}"#;
        assert_eq!(ApiError::from_body(400, with_category).category, "BAD_CLIENT_ID");
        let api = ApiError::from_body(401, br#"{"status":"error","message":"m","category":"EXPIRED_AUTHENTICATION"}"#);
        assert_eq!(api.category, "EXPIRED_AUTHENTICATION");
        assert_eq!(ApiError::from_body(500, br#"{"status":"error","message":"m"}"#).category, "UNKNOWN");
    }

    /// HubSpot's messages and serde's quote the values they refuse; what errors display does not.
    #[test]
    fn displayed_errors_hold_no_value_of_a_record() {
        let body = br#"{"status":"error","message":"Property values were not valid: MARKER-ada@example","correlationId":"c-3","category":"VALIDATION_ERROR"}"#;
        let shown = Error::from(ApiError::from_body(400, body)).to_string();
        assert_eq!(shown, "HubSpot answered 400 VALIDATION_ERROR (correlationId c-3)");
        let serde = serde_json::from_str::<u64>(r#""MARKER-ada@example""#).unwrap_err();
        let shown = decode_error("batch read", &serde).to_string();
        assert!(!shown.contains("MARKER"), "{shown}");
        assert!(shown.contains("batch read: unexpected data at line 1 column"), "{shown}");
    }
}
