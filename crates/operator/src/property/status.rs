//! The status a `HubSpotProperty` visit writes: its conditions from what the visit learnt
//! ([`Visit`]), and whether anything but the time of the visit changed.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use model::api::conditions::{condition, set_condition};
use model::api::property::LastError;
use model::api::property::condition_types::{READY, SYNCED};
use model::api::property::synced_reasons::*;
use model::api::{HubSpotProperty, HubSpotPropertyStatus};

use super::plan::PropertyChange;
use crate::secrets::SecretError;
use crate::status::hubspot_error_reason;

/// Everything a visit learnt, for the status: why HubSpot could not be asked, how it
/// refused, or what became of its property.
#[derive(Debug)]
pub enum Visit {
    IntegrationNotFound(String),
    TokenUnavailable(SecretError),
    /// A HubSpot call failed.
    Failed(hubspot::Error),
    Synced {
        change: PropertyChange,
        hubspot_defined: bool,
    },
}

impl Visit {
    /// Whether HubSpot was asked, whatever it answered: such a visit counts for the drift
    /// schedule.
    pub fn asked_hubspot(&self) -> bool {
        matches!(self, Visit::Synced { .. } | Visit::Failed(_))
    }
}

/// The status after a visit at `now` that learnt `visit`.
pub fn property_status(property: &HubSpotProperty, visit: &Visit, now: Time) -> HubSpotPropertyStatus {
    let generation = property.metadata.generation;
    let previous = property.status.clone().unwrap_or_default();
    let mut status = HubSpotPropertyStatus {
        conditions: previous.conditions,
        observed_generation: generation,
        hubspot_defined: previous.hubspot_defined,
        last_sync_time: previous.last_sync_time,
        drift: previous.drift,
        last_error: None,
        last_handled_reconcile_at: model::api::reconcile_request(property).or(previous.last_handled_reconcile_at),
    };
    let name = &property.spec.name;
    let (ready, synced): ConditionParts = match visit {
        Visit::IntegrationNotFound(message) => (
            (false, "IntegrationNotFound".into(), message.clone()),
            (None, "IntegrationNotFound".into(), message.clone()),
        ),
        Visit::TokenUnavailable(e) => {
            let message = format!("Cannot read the HubSpot token: {e}");
            ((false, e.reason().into(), message.clone()), (None, e.reason().into(), message))
        }
        Visit::Failed(e) => {
            let (reason, message) = hubspot_error_reason(e);
            status.last_error = Some(last_error(e, now.clone()));
            ((false, reason, message.clone()), (Some(false), FAILED.into(), message))
        }
        Visit::Synced { change, hubspot_defined } => {
            status.hubspot_defined = Some(*hubspot_defined);
            status.last_sync_time = Some(now.clone());
            status.drift = match change {
                PropertyChange::Drifted(drift) | PropertyChange::HubSpotDefined { drift } => drift.clone(),
                _ => vec![],
            };
            synced_conditions(name, change)
        }
    };
    // A condition's reason tells of its last transition: a property found in sync that was
    // already Synced (created, adopted, repaired or in sync before) keeps its conditions, so
    // that a visit that finds nothing new changes nothing.
    let in_sync = matches!(visit, Visit::Synced { change: PropertyChange::InSync, .. });
    if in_sync && [READY, SYNCED].iter().all(|type_| still_true(&status.conditions, type_, generation)) {
        return status;
    }
    let (ok, reason, message) = ready;
    set_condition(&mut status.conditions, condition(READY, Some(ok), &reason, message, generation));
    let (ok, reason, message) = synced;
    set_condition(&mut status.conditions, condition(SYNCED, ok, &reason, message, generation));
    status
}

/// Whether the condition `type_` is True for `generation`.
fn still_true(conditions: &[Condition], type_: &str, generation: Option<i64>) -> bool {
    model::api::conditions::find(conditions, type_)
        .is_some_and(|c| c.status == model::api::conditions::TRUE && c.observed_generation == generation)
}

/// `(status, reason, message)` of the `Ready` and `Synced` conditions.
type ConditionParts = ((bool, String, String), (Option<bool>, String, String));

fn synced_conditions(name: &str, change: &PropertyChange) -> ConditionParts {
    let ready = |reason: &str, message: String| {
        ((true, reason.to_string(), message.clone()), (Some(true), reason.to_string(), message))
    };
    let not_ready = |reason: &str, message: String| {
        ((false, reason.to_string(), message.clone()), (Some(false), reason.to_string(), message))
    };
    match change {
        PropertyChange::Created => ready(CREATED, format!("Created property {name} in HubSpot")),
        PropertyChange::Adopted { updated } if updated.is_empty() => {
            ready(ADOPTED, format!("Adopted the existing property {name}"))
        }
        PropertyChange::Adopted { updated } => {
            ready(ADOPTED, format!("Adopted the existing property {name} and updated {}", updated.join(", ")))
        }
        PropertyChange::Updated(fields) => {
            ready(UPDATED, format!("Repaired drift of property {name}: {}", fields.join(", ")))
        }
        PropertyChange::InSync => ready(IN_SYNC, format!("Property {name} matches the spec")),
        PropertyChange::Drifted(fields) => (
            (true, "Observed".into(), format!("Observing property {name} (ObserveOnly); nothing is written")),
            (
                Some(false),
                DRIFTED.into(),
                format!("Property {name} differs from the spec in: {} (ObserveOnly: left as is)", fields.join(", ")),
            ),
        ),
        PropertyChange::NotFound => not_ready(
            NOT_FOUND,
            format!("Property {name} does not exist in HubSpot and ObserveOnly does not create it"),
        ),
        PropertyChange::HubSpotDefined { drift } => {
            let mut message = format!("Property {name} is defined by HubSpot and is never modified");
            if !drift.is_empty() {
                message.push_str(&format!("; it differs from the spec in: {}", drift.join(", ")));
            }
            not_ready(HUBSPOT_DEFINED, message)
        }
        PropertyChange::Conflict(message) => not_ready(CONFLICT, message.clone()),
    }
}

pub(crate) fn last_error(error: &hubspot::Error, now: Time) -> LastError {
    let correlation_id = match error {
        hubspot::Error::Api(e) => Some(e.correlation_id.clone()),
        hubspot::Error::DailyLimitExhausted { correlation_id } => Some(correlation_id.clone()),
        _ => None,
    }
    .filter(|id| !id.is_empty());
    LastError { message: hubspot_error_reason(error).1, correlation_id, time: Some(now) }
}

/// Whether `new` says nothing `previous` does not, but for the time of the visit
/// (`lastSyncTime`, `lastError.time`): a heartbeat, which goes to a metric rather than the
/// object, so that an unchanged property costs no write and no watch event.
pub fn only_heartbeat_changed(previous: Option<&HubSpotPropertyStatus>, new: &HubSpotPropertyStatus) -> bool {
    let Some(previous) = previous else { return false };
    let mut new = new.clone();
    new.last_sync_time.clone_from(&previous.last_sync_time);
    if let (Some(error), Some(previous_error)) = (new.last_error.as_mut(), previous.last_error.as_ref()) {
        error.time.clone_from(&previous_error.time);
    }
    *previous == new
}

#[cfg(test)]
mod tests {
    use k8s_openapi::jiff::Timestamp;

    use super::*;
    use crate::fixtures::*;

    fn synced(change: PropertyChange) -> Visit {
        Visit::Synced { change, hubspot_defined: false }
    }

    /// `(status, reason, message)` of the condition `type_`.
    fn state(status: &HubSpotPropertyStatus, type_: &str) -> (String, String, String) {
        let c = model::api::conditions::find(&status.conditions, type_).unwrap_or_else(|| panic!("no {type_}"));
        (c.status.clone(), c.reason.clone(), c.message.clone())
    }

    fn of(status: &str, reason: &str, message: &str) -> (String, String, String) {
        (status.into(), reason.into(), message.into())
    }

    #[test]
    fn each_change_of_hubspots_property_has_its_conditions() {
        let property = property_resource(property_spec());
        let now = Time(Timestamp::UNIX_EPOCH);
        let cases = [
            (PropertyChange::Created, ("True", CREATED, "Created property loyalty_tier in HubSpot"), None),
            (
                PropertyChange::Adopted { updated: vec![] },
                ("True", ADOPTED, "Adopted the existing property loyalty_tier"),
                None,
            ),
            (
                PropertyChange::Adopted { updated: vec!["label".into()] },
                ("True", ADOPTED, "Adopted the existing property loyalty_tier and updated label"),
                None,
            ),
            (
                PropertyChange::Updated(vec!["label".into(), "options".into()]),
                ("True", UPDATED, "Repaired drift of property loyalty_tier: label, options"),
                None,
            ),
            (PropertyChange::InSync, ("True", IN_SYNC, "Property loyalty_tier matches the spec"), None),
            (
                PropertyChange::Drifted(vec!["label".into()]),
                ("False", DRIFTED, "Property loyalty_tier differs from the spec in: label (ObserveOnly: left as is)"),
                Some(("True", "Observed", "Observing property loyalty_tier (ObserveOnly); nothing is written")),
            ),
            (
                PropertyChange::NotFound,
                (
                    "False",
                    NOT_FOUND,
                    "Property loyalty_tier does not exist in HubSpot and ObserveOnly does not create it",
                ),
                None,
            ),
            (
                PropertyChange::HubSpotDefined { drift: vec!["label".into()] },
                (
                    "False",
                    HUBSPOT_DEFINED,
                    "Property loyalty_tier is defined by HubSpot and is never modified; it differs from the spec in: label",
                ),
                None,
            ),
            (PropertyChange::Conflict("no".into()), ("False", CONFLICT, "no"), None),
        ];
        for (change, (ok, reason, message), ready) in cases {
            let status = property_status(&property, &synced(change.clone()), now.clone());
            assert_eq!(state(&status, SYNCED), of(ok, reason, message), "{change:?}");
            // Ready follows Synced but when only observed.
            let (ok, reason, message) = ready.unwrap_or((ok, reason, message));
            assert_eq!(state(&status, READY), of(ok, reason, message), "{change:?}");
            assert_eq!(status.observed_generation, Some(2));
            assert_eq!(status.last_sync_time, Some(now.clone()));
            assert_eq!(status.hubspot_defined, Some(false));
            assert_eq!(status.last_error, None);
            let drift = match change {
                PropertyChange::Drifted(drift) | PropertyChange::HubSpotDefined { drift } => drift,
                _ => vec![],
            };
            assert_eq!(status.drift, drift);
        }
    }

    #[test]
    fn without_hubspot_the_conditions_say_why_and_the_last_sync_stays() {
        let mut property = property_resource(property_spec());
        property.status = Some(HubSpotPropertyStatus {
            last_sync_time: Some(Time(Timestamp::UNIX_EPOCH)),
            drift: vec!["label".into()],
            ..Default::default()
        });
        let now = Time(Timestamp::now());
        let missing = Visit::IntegrationNotFound("HubSpotIntegration \"crm\" not found".into());
        let status = property_status(&property, &missing, now.clone());
        assert_eq!(state(&status, READY).0, "False");
        assert_eq!(
            state(&status, SYNCED),
            of("Unknown", "IntegrationNotFound", "HubSpotIntegration \"crm\" not found")
        );
        assert_eq!(status.last_sync_time, Some(Time(Timestamp::UNIX_EPOCH)), "kept");
        assert_eq!(status.drift, ["label"], "kept");
        let no_secret = Visit::TokenUnavailable(SecretError::NotFound { name: "hubspot".into() });
        let status = property_status(&property, &no_secret, now);
        assert_eq!(state(&status, READY).1, "SecretNotFound");
        assert!(state(&status, READY).2.starts_with("Cannot read the HubSpot token: "), "{status:?}");
        assert_eq!(state(&status, SYNCED).0, "Unknown");
    }

    #[test]
    fn a_reconcile_request_is_recorded_as_handled_and_kept_until_the_next() {
        let requested = annotated(property_resource(property_spec()), "hubspot.io/reconcile-requested-at", "now");
        let status = property_status(&requested, &synced(PropertyChange::InSync), Time(Timestamp::UNIX_EPOCH));
        assert_eq!(status.last_handled_reconcile_at.as_deref(), Some("now"));
        let mut later = property_resource(property_spec());
        later.status = Some(status);
        let status = property_status(&later, &synced(PropertyChange::InSync), Time(Timestamp::now()));
        assert_eq!(status.last_handled_reconcile_at.as_deref(), Some("now"));
    }

    #[test]
    fn only_visits_that_asked_hubspot_count_for_the_drift_schedule() {
        let refused = hubspot::Error::Api(hubspot::ApiError::from_body(500, b"{}"));
        assert!(Visit::Failed(refused).asked_hubspot());
        assert!(synced(PropertyChange::NotFound).asked_hubspot());
        assert!(!Visit::IntegrationNotFound(String::new()).asked_hubspot());
        assert!(!Visit::TokenUnavailable(SecretError::NotFound { name: "hubspot".into() }).asked_hubspot());
    }

    #[test]
    fn failed_call_keeps_hubspots_correlation_id_in_the_status() {
        let property = HubSpotProperty::new("loyalty-tier", property_spec());
        let error = hubspot::Error::Api(hubspot::ApiError::from_body(
            400,
            br#"{"status":"error","message":"Property group loyalty does not exist.","correlationId":"c-42","category":"VALIDATION_ERROR"}"#,
        ));
        let status = property_status(&property, &Visit::Failed(error), Time(Timestamp::UNIX_EPOCH));
        let last_error = status.last_error.unwrap();
        assert_eq!(last_error.correlation_id.as_deref(), Some("c-42"));
        assert_eq!(
            last_error.message,
            "HubSpot answered 400: Property group loyalty does not exist. (correlationId c-42)"
        );
        let synced = status.conditions.iter().find(|c| c.type_ == SYNCED).unwrap();
        assert_eq!((synced.status.as_str(), synced.reason.as_str()), ("False", FAILED));
        let ready = status.conditions.iter().find(|c| c.type_ == READY).unwrap();
        assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", "VALIDATION_ERROR"));
        assert_eq!(status.last_sync_time, None);
    }

    #[test]
    fn only_the_time_of_a_visit_is_a_heartbeat() {
        let property = property_resource(property_spec());
        let in_sync = synced(PropertyChange::InSync);
        let then = property_status(&property, &in_sync, Time(Timestamp::UNIX_EPOCH));
        assert!(!only_heartbeat_changed(None, &then), "a first status is written");
        let mut visited = property.clone();
        visited.status = Some(then.clone());
        let now = property_status(&visited, &in_sync, Time(Timestamp::now()));
        assert_ne!(now.last_sync_time, then.last_sync_time);
        assert!(only_heartbeat_changed(Some(&then), &now));
        let drifted = synced(PropertyChange::Drifted(vec!["label".into()]));
        assert!(!only_heartbeat_changed(Some(&then), &property_status(&visited, &drifted, Time(Timestamp::now()))));
        // A property created on the last visit and found in sync on this one keeps its
        // conditions: their reason tells of the last transition.
        let created = synced(PropertyChange::Created);
        visited.status = Some(property_status(&property, &created, Time(Timestamp::UNIX_EPOCH)));
        let found = property_status(&visited, &in_sync, Time(Timestamp::now()));
        assert!(only_heartbeat_changed(visited.status.as_ref(), &found));
        assert_eq!(model::api::conditions::find(&found.conditions, SYNCED).unwrap().reason, CREATED);
    }
}
