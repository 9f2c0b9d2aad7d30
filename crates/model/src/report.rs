//! What a receiver tells of each mapping's sync, for the `PropertyMapping` status: the
//! controller reads `GET /sync/status` ([`SYNC_STATUS_PATH`]) of every ready receiver pod and
//! adds the reports up. The receiver builds its report from its stores and its workers'
//! activity (`receiver::sync::report`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Path of the report on the receiver's status port (`statusListen`).
pub const SYNC_STATUS_PATH: &str = "/sync/status";

/// One receiver's report.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncReport {
    /// Webhook events not yet delivered everywhere. Of the whole log: receivers sharing a
    /// JetStream log each report the same figure.
    pub events_pending: u64,
    /// Seconds the oldest of those has been in the log (0 when there is none).
    pub oldest_pending_age_seconds: u64,
    /// By mapping (`namespace/name`): every mapping the receiver runs, and mappings it no
    /// longer runs that still have stored records.
    pub mappings: BTreeMap<String, MappingReport>,
    /// By timeline event type (`namespace/name`): every type the receiver takes occurrences
    /// of, and types it no longer takes that still have stored occurrences.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub timeline_event_types: BTreeMap<String, TimelineReport>,
}

/// What one receiver did and holds for one timeline event type.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TimelineReport {
    /// Occurrences accepted (stored) since the receiver started.
    pub accepted: u64,
    /// Occurrences HubSpot took (or already had) since the receiver started.
    pub delivered: u64,
    /// Occurrences HubSpot refused, held in the timeline store until resent or discarded.
    pub rejected: u64,
    /// Occurrences waiting to be sent to HubSpot.
    pub pending: u64,
    /// When the type's last batch was sent without error (epoch ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success_ms: Option<i64>,
    /// The type's last failed batch (to be retried), with HubSpot's correlation id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<ReportedError>,
}

/// What one receiver did and holds for one mapping.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MappingReport {
    /// Records delivered to a destination since the receiver started (one per destination).
    pub records_delivered: u64,
    /// Records written to HubSpot since the receiver started.
    pub records_written: u64,
    /// Records a destination refused, held in the dead-letter store.
    pub dead_letters: u64,
    /// Records HubSpot refused, held in the reverse sync store.
    pub rejected_records: u64,
    /// Records waiting to be written to HubSpot.
    pub queued_for_hubspot: u64,
    /// When the mapping's last sync step completed without error (epoch ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success_ms: Option<i64>,
    /// The mapping's last error (a step that left work pending, to be retried).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<ReportedError>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportedError {
    pub message: String,
    /// Epoch ms.
    pub at_ms: i64,
    /// HubSpot's correlation id of the failed call, when HubSpot answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
}

/// Whether the last thing a mapping's sync did was fail: its last error is newer than its last
/// completed step.
pub fn failing(last_success_ms: Option<i64>, last_error: Option<&ReportedError>) -> bool {
    match (last_error, last_success_ms) {
        (Some(error), Some(success)) => error.at_ms > success,
        (Some(_), None) => true,
        (None, _) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mapping_is_failing_only_while_its_last_error_is_newer_than_its_last_success() {
        let error = ReportedError { message: "HubSpot answered 503".into(), at_ms: 5, correlation_id: None };
        assert!(!failing(None, None), "nothing happened yet");
        assert!(!failing(Some(5), None));
        assert!(failing(None, Some(&error)), "never succeeded");
        assert!(failing(Some(4), Some(&error)));
        assert!(!failing(Some(6), Some(&error)), "succeeded since");
    }
}
