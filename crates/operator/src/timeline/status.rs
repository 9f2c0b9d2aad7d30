//! The status a `HubSpotTimelineEventType` visit writes (pure): its conditions from what the
//! visit learnt ([`Visit`]) and the occurrences its integration's receivers report.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use model::api::HubSpotTimelineEventType;
use model::api::conditions::{condition, set_condition};
use model::api::timeline::condition_types::{READY, REGISTERED, RENDERED};
use model::api::timeline::{Carrier, HubSpotTimelineEventTypeStatus, OccurrenceCounts};
use model::report::TimelineReport;

use crate::property::last_error;
use crate::receiver_reports::ReceiverReports;
use crate::secrets::SecretError;
use crate::status::hubspot_error_reason;

/// What became of HubSpot's side of the event type on a visit that reached it.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    Created,
    /// An existing template or definition of the same name was taken over (and brought in line).
    Adopted {
        updated: Vec<String>,
    },
    /// HubSpot's side differed in these fields and was updated.
    Updated(Vec<String>),
    InSync,
    /// HubSpot's side differs in fields its API cannot change; occurrences still reach it
    /// when `usable`.
    Drifted {
        fields: Vec<String>,
        usable: bool,
    },
}

/// Everything a visit learnt, for the status.
#[derive(Debug)]
pub enum Visit {
    IntegrationNotFound(String),
    /// The spec cannot work with this integration (reason, message).
    Invalid(&'static str, String),
    /// The integration's token or the developer API key could not be read.
    SecretUnavailable(&'static str, SecretError),
    /// A HubSpot call failed.
    Failed(hubspot::Error),
    /// The app event's file is in its ConfigMap.
    Rendered {
        config_map: String,
        hubspot_name: Option<String>,
    },
    /// HubSpot holds the template (`template_id`) or custom event definition.
    Registered {
        change: Change,
        template_id: Option<String>,
        hubspot_name: String,
    },
}

/// The status after a visit at `now` that learnt `visit`, with `carrier` (when the integration
/// is known) and the occurrences `receivers` report.
pub fn event_type_status(
    event_type: &HubSpotTimelineEventType,
    carrier: Option<Carrier>,
    visit: &Visit,
    receivers: &ReceiverReports,
    now: Time,
) -> HubSpotTimelineEventTypeStatus {
    let generation = event_type.metadata.generation;
    let previous = event_type.status.clone().unwrap_or_default();
    let mut status = HubSpotTimelineEventTypeStatus {
        conditions: previous.conditions,
        observed_generation: generation,
        carrier,
        template_id: previous.template_id,
        hubspot_name: previous.hubspot_name,
        config_map: previous.config_map,
        drift: previous.drift,
        occurrences: occurrences(&object_key(event_type), receivers),
        last_error: None,
    };
    let name = &event_type.spec.name;
    // The condition telling how HubSpot learns of the type.
    let known_as = if event_type.spec.registration == model::api::timeline::Registration::Rendered
        && carrier == Some(Carrier::AppEvents)
    {
        RENDERED
    } else {
        REGISTERED
    };
    // (the condition `known_as`, Ready, reason, message)
    let (known, ready, reason, message): (Option<bool>, bool, String, String) = match visit {
        Visit::IntegrationNotFound(message) => (None, false, "IntegrationNotFound".into(), message.clone()),
        Visit::Invalid(reason, message) => (Some(false), false, reason.to_string(), message.clone()),
        Visit::SecretUnavailable(what, e) => (None, false, e.reason().into(), format!("Cannot read {what}: {e}")),
        Visit::Failed(e) => {
            status.last_error = Some(last_error(e, now));
            let (reason, message) = hubspot_error_reason(e);
            (Some(false), false, reason, message)
        }
        Visit::Rendered { config_map, hubspot_name } => {
            status.config_map = Some(config_map.clone());
            status.hubspot_name = hubspot_name.clone();
            status.template_id = None;
            status.drift = vec![];
            let message =
                format!("The app event {name} is in ConfigMap {config_map}; deploy it with the HubSpot project");
            (Some(true), true, "Rendered".into(), message)
        }
        Visit::Registered { change, template_id, hubspot_name } => {
            status.template_id = template_id.clone();
            status.hubspot_name = Some(hubspot_name.clone());
            status.config_map = None;
            let (ready, reason, message, drift) = registered(name, template_id.is_some(), change);
            status.drift = drift;
            let registered = !matches!(change, Change::Drifted { .. });
            (Some(registered), ready, reason.into(), message)
        }
    };
    set_condition(&mut status.conditions, condition(known_as, known, &reason, message.clone(), generation));
    set_condition(&mut status.conditions, condition(READY, Some(ready), &reason, message, generation));
    // A type switching between rendered and registered keeps only the condition that applies.
    let stale = if known_as == RENDERED { REGISTERED } else { RENDERED };
    status.conditions.retain(|c| c.type_ != stale);
    status
}

/// `(Ready, reason, message, drift)` of a type HubSpot holds as a template (`template`) or a
/// custom event definition.
fn registered(name: &str, template: bool, change: &Change) -> (bool, &'static str, String, Vec<String>) {
    let what = if template { "event template" } else { "custom event definition" };
    match change {
        Change::Created => (true, "Created", format!("Created the {what} {name} in HubSpot"), vec![]),
        Change::Adopted { updated } if updated.is_empty() => {
            (true, "Adopted", format!("Adopted the existing {what} {name}"), vec![])
        }
        Change::Adopted { updated } => (
            true,
            "Adopted",
            format!("Adopted the existing {what} {name} and updated {}", updated.join(", ")),
            updated.clone(),
        ),
        Change::Updated(fields) => {
            (true, "Updated", format!("Updated the {what} {name}: {}", fields.join(", ")), fields.clone())
        }
        Change::InSync => (true, "InSync", format!("The {what} {name} matches the spec"), vec![]),
        Change::Drifted { fields, usable } => (
            *usable,
            "Drifted",
            format!(
                "The {what} {name} differs from the spec in {}, which HubSpot's API cannot change; \
                 recreate it in HubSpot or change the spec",
                fields.join(", ")
            ),
            fields.clone(),
        ),
    }
}

/// `namespace/name`, the key of the type in the receivers' reports.
fn object_key(event_type: &HubSpotTimelineEventType) -> String {
    format!("{}/{}", event_type.namespace().unwrap_or_default(), event_type.name_any())
}

/// The occurrences of the type `key` added up over the receivers that report it; `None` when
/// none does (no receiver runs, or the type is not in their configuration yet).
pub fn occurrences(key: &str, receivers: &ReceiverReports) -> Option<OccurrenceCounts> {
    let ReceiverReports::Read { reports, .. } = receivers else { return None };
    let mine: Vec<&TimelineReport> = reports.iter().filter_map(|r| r.timeline_event_types.get(key)).collect();
    if mine.is_empty() {
        return None;
    }
    let total = |count: fn(&TimelineReport) -> u64| mine.iter().map(|r| count(r)).sum::<u64>() as i64;
    Some(OccurrenceCounts {
        accepted: total(|r| r.accepted),
        delivered: total(|r| r.delivered),
        rejected: total(|r| r.rejected),
        pending: total(|r| r.pending),
    })
}
