//! A receiver's report of each mapping's sync ([`model::report::SyncReport`], served on
//! `GET /sync/status`), built from its stores and its workers' activity.
//!
//! Counts of what is stored (dead letters, rejected records, records queued for HubSpot) are read
//! from the stores, so they survive restarts; deliveries, writes and errors are what this process
//! saw since it started ([`MappingActivity`], kept with the metrics). The timeline event types'
//! part ([`TimelineReporter`]) is built the same way from the timeline store and
//! [`TimelineActivity`].

use std::collections::BTreeMap;
use std::sync::Arc;

use model::report::{MappingReport, SyncReport, TimelineReport};

use crate::eventlog::EventLog;
use crate::metrics::{MappingActivity, TimelineActivity};
use crate::reverse::ReverseStore;
use crate::sync::DeadLetterStore;
use crate::timeline::TimelineStore;

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
            timeline_event_types: BTreeMap::new(),
        })
    }
}

/// Builds the timeline event types' part of a receiver's [`SyncReport`].
#[derive(Clone)]
pub struct TimelineReporter {
    pub store: Arc<TimelineStore>,
    pub activity: Arc<TimelineActivity>,
    /// `namespace/name` of the event types the receiver takes: each is reported, even before
    /// it took an occurrence.
    pub types: Vec<String>,
}

impl TimelineReporter {
    pub async fn report(&self) -> anyhow::Result<BTreeMap<String, TimelineReport>> {
        let mut types: BTreeMap<String, TimelineReport> =
            self.types.iter().map(|name| (name.clone(), TimelineReport::default())).collect();
        types.extend(self.activity.snapshot());
        for (name, held) in self.store.held().await? {
            let report = types.entry(name).or_default();
            report.pending = held.pending;
            report.rejected = held.rejected;
        }
        Ok(types)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        log.append(vec![hubspot::WebhookEvent { event_id: 1, object_id: 7, ..Default::default() }]).await.unwrap();

        let report = reporter.report().await.unwrap();
        assert_eq!(report.events_pending, 1);
        let names: Vec<&str> = report.mappings.keys().map(String::as_str).collect();
        assert_eq!(names, ["crm/contacts", "crm/gone", "crm/leads", "crm/quiet"], "run or holding records");
        assert_eq!(report.mappings["crm/contacts"].records_delivered, 2);
        assert_eq!(report.mappings["crm/leads"].queued_for_hubspot, 2);
        assert_eq!(report.mappings["crm/gone"].rejected_records, 1);
        assert_eq!(report.mappings["crm/quiet"], MappingReport::default());
    }
}
