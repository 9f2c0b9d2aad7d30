//! Why a sync step left events pending. Whatever the cause, the events stay in the log and the
//! step is tried again; the cause decides how long to wait first.

use std::time::Duration;

use super::SinkError;
use crate::eventlog::EventLogError;

/// When HubSpot's daily limit is spent, retrying sooner than this only burns calls.
const DAILY_LIMIT_WAIT: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub(super) enum StepError {
    #[error("reading the event log: {0}")]
    ReadLog(EventLogError),
    #[error("releasing events: {0}")]
    Release(EventLogError),
    #[error("echo ledger: {0:#}")]
    EchoLedger(anyhow::Error),
    #[error("checkpoint store: {0:#}")]
    Checkpoints(anyhow::Error),
    #[error("dead-letter store: {0:#}")]
    DeadLetters(anyhow::Error),
    #[error("reading {object_type} from HubSpot: {error}")]
    HubSpot { object_type: String, error: hubspot::Error },
    #[error("mapping {mapping}, destination {destination}: {error}")]
    Destination { mapping: String, destination: String, error: SinkError },
}

impl StepError {
    /// A failed read of `object_type`, logged with HubSpot's category and correlationId (what
    /// HubSpot support asks for).
    pub(super) fn hubspot(object_type: &str, error: hubspot::Error) -> StepError {
        let (category, correlation_id) = match &error {
            hubspot::Error::Api(api) => (api.category.as_str(), api.correlation_id.as_str()),
            hubspot::Error::DailyLimitExhausted { correlation_id } => ("RATE_LIMIT", correlation_id.as_str()),
            hubspot::Error::Transport(_) => ("TRANSPORT", ""),
            hubspot::Error::Decode(_) => ("DECODE", ""),
            hubspot::Error::SearchCapped { .. } => ("SEARCH_CAPPED", ""),
        };
        tracing::warn!(object_type, category, correlation_id, error = %error, "HubSpot batch read failed");
        StepError::HubSpot { object_type: object_type.to_string(), error }
    }

    /// How long to wait at least before the next try: what a destination asked for
    /// (`Retry-After`), or until HubSpot's daily limit may have room again.
    pub(super) fn retry_after(&self) -> Option<Duration> {
        match self {
            StepError::HubSpot { error: hubspot::Error::DailyLimitExhausted { .. }, .. } => Some(DAILY_LIMIT_WAIT),
            StepError::Destination { error, .. } => error.retry_after(),
            _ => None,
        }
    }
}
