//! When a `HubSpotProperty` is due to be read from HubSpot again, and what this process
//! remembers of its last reads.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use model::api::HubSpotProperty;
use model::api::property::LastError;
use model::api::property::condition_types::READY;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use crate::kube_api::object_key;
use crate::{ObjectLabels, UNHEALTHY_REQUEUE};

/// How long until HubSpot is due to be read again, or `None` when it is due now. It is due
/// once the drift interval passed since the last visit (a failed one: [`UNHEALTHY_REQUEUE`]),
/// and at once when the spec changed since (generation) or a reconcile was requested through
/// `hubspot.io/reconcile-requested-at`. The last visit is the later of `last_read` (what this
/// process remembers: a visit that changes nothing writes no status) and the status's
/// `lastSyncTime` or `lastError.time` (what an earlier process wrote). Every status write
/// triggers a reconcile of its own: without this, a visit that writes would cause the next,
/// and HubSpot would be read in a loop.
pub fn drift_check_wait(
    property: &HubSpotProperty,
    last_read: Option<Timestamp>,
    now: Timestamp,
    drift_interval: Duration,
) -> Option<Duration> {
    let status = property.status.as_ref()?;
    if status.observed_generation != property.metadata.generation
        || model::api::reconcile_request(property) != status.last_handled_reconcile_at
    {
        return None;
    }
    let (written, interval) = match (&status.last_error, &status.last_sync_time) {
        (Some(LastError { time: Some(failed), .. }), _) => (failed.0, UNHEALTHY_REQUEUE),
        (_, Some(synced)) if model::api::conditions::is_true(&status.conditions, READY) => (synced.0, drift_interval),
        (_, Some(synced)) => (synced.0, UNHEALTHY_REQUEUE),
        _ => return None,
    };
    let last_visit = last_read.map_or(written, |read| read.max(written));
    let elapsed = Duration::try_from(now.duration_since(last_visit)).unwrap_or(Duration::ZERO);
    interval.checked_sub(elapsed).filter(|wait| !wait.is_zero())
}

/// When this process last read each property from HubSpot, for the drift schedule, also
/// published as `hubspot_operator_property_last_sync_timestamp_seconds`.
pub struct PropertyReads {
    last: Mutex<HashMap<String, Timestamp>>,
    gauge: Family<ObjectLabels, Gauge<f64, AtomicU64>>,
}

impl PropertyReads {
    pub fn new(gauge: Family<ObjectLabels, Gauge<f64, AtomicU64>>) -> PropertyReads {
        PropertyReads { last: Mutex::default(), gauge }
    }

    pub(super) fn last(&self, property: &HubSpotProperty) -> Option<Timestamp> {
        self.last.lock().expect("property reads lock").get(&object_key(property)).copied()
    }

    pub(super) fn record(&self, property: &HubSpotProperty, at: Timestamp) {
        self.last.lock().expect("property reads lock").insert(object_key(property), at);
        self.gauge.get_or_create(&ObjectLabels::of(property)).set(at.as_millisecond() as f64 / 1000.0);
    }

    pub(super) fn forget(&self, property: &HubSpotProperty) {
        self.last.lock().expect("property reads lock").remove(&object_key(property));
        self.gauge.remove(&ObjectLabels::of(property));
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;
    use crate::fixtures::*;
    use crate::property::DRIFT_CHECK_INTERVAL;

    #[test]
    fn hubspot_is_read_again_after_the_interval_a_spec_change_or_a_request() {
        let visit = Timestamp::from_second(1_800_000_000).unwrap();
        let later = |s: i64| visit.checked_add(k8s_openapi::jiff::SignedDuration::from_secs(s)).unwrap();
        assert_eq!(
            drift_check_wait(&fresh_property(visit, None), None, later(60), DRIFT_CHECK_INTERVAL),
            Some(DRIFT_CHECK_INTERVAL - Duration::from_secs(60))
        );
        assert_eq!(drift_check_wait(&fresh_property(visit, None), None, later(300), DRIFT_CHECK_INTERVAL), None);
        let mut edited = fresh_property(visit, None);
        edited.metadata.generation = Some(3);
        assert_eq!(drift_check_wait(&edited, None, later(60), DRIFT_CHECK_INTERVAL), None);
        let requested = annotated(fresh_property(visit, None), "hubspot.io/reconcile-requested-at", "now");
        assert_eq!(drift_check_wait(&requested, None, later(60), DRIFT_CHECK_INTERVAL), None);
        let handled = annotated(fresh_property(visit, Some("now")), "hubspot.io/reconcile-requested-at", "now");
        assert!(drift_check_wait(&handled, None, later(60), DRIFT_CHECK_INTERVAL).is_some());
        // A failed visit is retried sooner.
        let mut failed = fresh_property(visit, None);
        let status = failed.status.as_mut().unwrap();
        status.last_error =
            Some(LastError { message: "HubSpot answered 500".into(), correlation_id: None, time: Some(Time(visit)) });
        assert_eq!(
            drift_check_wait(&failed, None, later(10), DRIFT_CHECK_INTERVAL),
            Some(UNHEALTHY_REQUEUE - Duration::from_secs(10))
        );
        assert_eq!(drift_check_wait(&failed, None, later(30), DRIFT_CHECK_INTERVAL), None);
        // A later visit that wrote nothing, remembered by this process, counts from its time.
        assert_eq!(
            drift_check_wait(&fresh_property(visit, None), Some(later(300)), later(360), DRIFT_CHECK_INTERVAL),
            Some(DRIFT_CHECK_INTERVAL - Duration::from_secs(60))
        );
        assert_eq!(
            drift_check_wait(&fresh_property(later(300), None), Some(visit), later(360), DRIFT_CHECK_INTERVAL),
            Some(DRIFT_CHECK_INTERVAL - Duration::from_secs(60)),
            "an older memory does not hide a newer status"
        );
    }
}
