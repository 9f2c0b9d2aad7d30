//! What a receiver tells of each mapping's sync, for the `PropertyMapping` status: the
//! controller reads `GET /sync/status` ([`SYNC_STATUS_PATH`]) of every ready receiver pod and
//! adds the reports up (`controller::status::mapping_sync`).
//!
//! Counts of what is stored (dead letters, rejected records, records queued for HubSpot) are read
//! from the stores, so they survive restarts; deliveries, writes and errors are what this process
//! saw since it started ([`MappingActivity`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::eventlog::EventLog;
use crate::reverse::ReverseStore;
use crate::sync::DeadLetterStore;

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

/// Rows of `table` (a store table with a `mapping` column) by mapping.
pub(crate) fn rows_by_mapping(conn: &rusqlite::Connection, table: &str) -> rusqlite::Result<Vec<(String, u64)>> {
    let mut stmt = conn.prepare_cached(&format!("SELECT mapping, count(*) FROM {table} GROUP BY mapping"))?;
    let rows = stmt.query_map([], |row| Ok((row.get(0)?, row.get::<_, i64>(1)? as u64)))?;
    rows.collect()
}

/// What each mapping's sync did since the process started, kept by the sync and reverse
/// workers as they go.
#[derive(Default)]
pub struct MappingActivity {
    mappings: Mutex<HashMap<String, MappingReport>>,
}

impl MappingActivity {
    pub fn delivered(&self, mapping: &str, records: usize) {
        self.update(mapping, |report| report.records_delivered += records as u64);
    }

    pub fn written(&self, mapping: &str, records: usize) {
        self.update(mapping, |report| report.records_written += records as u64);
    }

    /// A step of `mapping` completed: what it took is delivered, dead-lettered or rejected.
    pub fn succeeded(&self, mapping: &str, at_ms: i64) {
        self.update(mapping, |report| report.last_success_ms = Some(at_ms));
    }

    /// A step of `mapping` left work pending because of `message`.
    pub fn failed(&self, mapping: &str, message: &str, at_ms: i64) {
        self.update(mapping, |report| report.last_error = Some(ReportedError { message: message.into(), at_ms }));
    }

    fn update(&self, mapping: &str, change: impl FnOnce(&mut MappingReport)) {
        let mut mappings = self.mappings.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        change(mappings.entry(mapping.to_string()).or_default());
    }

    fn snapshot(&self) -> HashMap<String, MappingReport> {
        self.mappings.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }
}

/// Builds a receiver's [`SyncReport`] from its stores and its workers' activity.
#[derive(Clone)]
pub struct SyncReporter {
    pub log: Arc<dyn EventLog>,
    pub activity: Arc<MappingActivity>,
    pub dead_letters: DeadLetterStore,
    pub reverse: Option<Arc<ReverseStore>>,
    /// `namespace/name` of the mappings the receiver runs: each is reported, even before it
    /// did anything.
    pub mappings: Vec<String>,
}

impl SyncReporter {
    pub async fn report(&self) -> anyhow::Result<SyncReport> {
        let mut mappings: BTreeMap<String, MappingReport> =
            self.mappings.iter().map(|name| (name.clone(), MappingReport::default())).collect();
        mappings.extend(self.activity.snapshot());
        for (mapping, count) in self.dead_letters.count_by_mapping().await? {
            mappings.entry(mapping).or_default().dead_letters = count;
        }
        if let Some(reverse) = &self.reverse {
            for (mapping, count) in reverse.rejected_by_mapping().await? {
                mappings.entry(mapping).or_default().rejected_records = count;
            }
            for (mapping, count) in reverse.queued_by_mapping().await? {
                mappings.entry(mapping).or_default().queued_for_hubspot = count;
            }
        }
        let oldest = self.log.oldest_pending_age().await?;
        Ok(SyncReport {
            events_pending: self.log.pending_count().await?,
            oldest_pending_age_seconds: oldest.map_or(0, |age| age.as_secs()),
            mappings,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mapping_is_failing_only_while_its_last_error_is_newer_than_its_last_success() {
        let error = ReportedError { message: "HubSpot answered 503".into(), at_ms: 5 };
        assert!(!failing(None, None), "nothing happened yet");
        assert!(!failing(Some(5), None));
        assert!(failing(None, Some(&error)), "never succeeded");
        assert!(failing(Some(4), Some(&error)));
        assert!(!failing(Some(6), Some(&error)), "succeeded since");
    }

    #[tokio::test]
    async fn a_report_counts_what_the_stores_hold_for_each_mapping() {
        use crate::reverse::store::{IngestRecord, Rejection};
        let dir = tempfile::tempdir().unwrap();
        let log: Arc<dyn EventLog> =
            Arc::new(crate::eventlog::EmbeddedEventLog::open(&dir.path().join("events.db")).unwrap());
        let reverse = Arc::new(ReverseStore::open(&dir.path().join("reverse.db")).unwrap());
        let record = |mapping: &str, key: &str| IngestRecord {
            mapping: mapping.into(),
            key: key.into(),
            properties: [("phone".to_string(), "555-1".to_string())].into_iter().collect(),
            changed_at: 1_000,
        };
        reverse
            .enqueue(vec![record("crm/leads", "a@example.com"), record("crm/leads", "b@example.com")])
            .await
            .unwrap();
        let rejection = Rejection {
            mapping: "crm/gone".into(),
            key: "c@example.com".into(),
            properties: Default::default(),
            status: 0,
            category: crate::reverse::store::INVALID_RECORD.into(),
            message: "match key field `email` is missing".into(),
            correlation_id: String::new(),
            rejected_at: 2_000,
            changed_at: 2_000,
        };
        reverse.polled("crm/gone/0", vec![], vec![rejection], "c1".into()).await.unwrap();
        let activity = Arc::new(MappingActivity::default());
        activity.delivered("crm/contacts", 2);
        let reporter = SyncReporter {
            log: log.clone(),
            activity,
            dead_letters: DeadLetterStore::open(&dir.path().join("dead-letters.db"), Default::default()).unwrap(),
            reverse: Some(reverse),
            mappings: vec!["crm/contacts".into(), "crm/leads".into(), "crm/quiet".into()],
        };
        log.append(vec![crate::hubspot::WebhookEvent { event_id: 1, object_id: 7, ..Default::default() }])
            .await
            .unwrap();

        let report = reporter.report().await.unwrap();
        assert_eq!(report.events_pending, 1);
        let names: Vec<&str> = report.mappings.keys().map(String::as_str).collect();
        assert_eq!(names, ["crm/contacts", "crm/gone", "crm/leads", "crm/quiet"], "run or holding records");
        assert_eq!(report.mappings["crm/contacts"].records_delivered, 2);
        assert_eq!(report.mappings["crm/leads"].queued_for_hubspot, 2);
        assert_eq!(report.mappings["crm/gone"].rejected_records, 1);
        assert_eq!(report.mappings["crm/quiet"], MappingReport::default());
    }

    #[test]
    fn activity_adds_up_per_mapping() {
        let activity = MappingActivity::default();
        activity.delivered("default/contacts", 3);
        activity.delivered("default/contacts", 2);
        activity.written("default/leads", 7);
        activity.failed("default/contacts", "destination http-0: 503", 10);
        activity.succeeded("default/contacts", 11);
        let snapshot = activity.snapshot();
        let contacts = &snapshot["default/contacts"];
        assert_eq!((contacts.records_delivered, contacts.records_written), (5, 0));
        assert_eq!(contacts.last_success_ms, Some(11));
        assert_eq!(contacts.last_error.as_ref().map(|e| e.at_ms), Some(10));
        assert_eq!(snapshot["default/leads"].records_written, 7);
    }
}
