//! Pure status decisions: from what was observed (Secrets, HubSpot answers, the StatefulSet) to
//! conditions. The reconcilers and `dev` mode both call these.

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use super::catalogue::PropertyNames;
use super::receiver_reports::ReceiverReports;
use super::resources::{ConfigError, qualified_name};
use super::secrets::SecretError;
use hubspot::{self, TokenInfo};
use model::api::conditions::{condition, set_condition};
use model::api::integration::ReceiverExposureKind;
use model::api::integration::condition_types as integration_conditions;
use model::api::mapping::MappingSync;
use model::api::mapping::condition_types as mapping_conditions;
use model::api::{
    HubSpotIntegration, HubSpotIntegrationStatus, PAUSED_ANNOTATION, PAUSED_REASON, PropertyMapping,
    PropertyMappingStatus, reconcile_request,
};
use model::report::{self, MappingReport};

/// Marks `conditions` paused: the `type_` condition becomes Unknown with reason `Paused`, the
/// others keep what was last observed. Whether anything changed, so that a paused object is
/// written once rather than on every visit.
pub fn mark_paused(conditions: &mut Vec<Condition>, type_: &str, generation: Option<i64>) -> bool {
    let already =
        conditions.iter().any(|c| c.type_ == type_ && c.reason == PAUSED_REASON && c.observed_generation == generation);
    if !already {
        let message = format!("Reconciliation is paused by the {PAUSED_ANNOTATION} annotation; remove it to resume");
        set_condition(conditions, condition(type_, None, PAUSED_REASON, message, generation));
    }
    !already
}

/// How a condition's transitions are announced: the Event reason when it becomes True after
/// having been observed otherwise (for `Ready`, also on the first visit), and the Warning
/// reason when it becomes False.
pub struct Announced {
    pub type_: &'static str,
    pub became_true: Option<&'static str>,
    pub became_false: Option<&'static str>,
}

/// Conditions of a `HubSpotIntegration` announced as Events. `Ready` turning False is
/// announced by the condition that caused it.
pub const INTEGRATION_EVENTS: &[Announced] = &[
    Announced { type_: integration_conditions::READY, became_true: Some("Ready"), became_false: None },
    Announced {
        type_: integration_conditions::AUTHENTICATED,
        became_true: Some("Authenticated"),
        became_false: Some("AuthenticationFailed"),
    },
    Announced {
        type_: integration_conditions::SCOPES_GRANTED,
        became_true: Some("ScopesGranted"),
        became_false: Some("ScopesMissing"),
    },
    Announced {
        type_: integration_conditions::RECEIVER_AVAILABLE,
        became_true: Some("ReceiverAvailable"),
        became_false: Some("ReceiverUnavailable"),
    },
    Announced {
        type_: integration_conditions::WEBHOOKS_READY,
        became_true: Some("WebhooksReady"),
        became_false: Some("WebhooksFailed"),
    },
    Announced {
        type_: integration_conditions::RECEIVER_EXPOSED,
        became_true: Some("ReceiverExposed"),
        became_false: Some("ReceiverNotExposed"),
    },
];

/// Conditions of a `PropertyMapping` announced as Events.
pub const MAPPING_EVENTS: &[Announced] = &[
    Announced { type_: mapping_conditions::READY, became_true: Some("Ready"), became_false: None },
    Announced {
        type_: mapping_conditions::INTEGRATION_FOUND,
        became_true: Some("IntegrationFound"),
        became_false: Some("IntegrationNotFound"),
    },
    Announced {
        type_: mapping_conditions::PROPERTIES_EXIST,
        became_true: Some("PropertiesExist"),
        became_false: Some("PropertiesMissing"),
    },
    Announced { type_: mapping_conditions::SYNCED, became_true: Some("Synced"), became_false: Some("NotSynced") },
];

/// The Events announcing how `current` conditions differ from `previous` ones. A condition
/// that keeps its status is not announced again; one that turns Unknown is not announced.
pub fn condition_events(
    previous: &[Condition],
    current: &[Condition],
    announced: &[Announced],
) -> Vec<super::EventToPublish> {
    let status_of =
        |conditions: &[Condition], type_: &str| conditions.iter().find(|c| c.type_ == type_).map(|c| c.status.clone());
    let mut events = Vec::new();
    for rule in announced {
        let Some(now) = current.iter().find(|c| c.type_ == rule.type_) else { continue };
        let before = status_of(previous, rule.type_);
        if before.as_deref() == Some(now.status.as_str()) {
            continue;
        }
        let first_visit = before.is_none();
        match (now.status.as_str(), rule.became_true, rule.became_false) {
            (model::api::conditions::TRUE, Some(reason), _)
                if !first_visit || rule.type_ == integration_conditions::READY =>
            {
                events.push(super::EventToPublish::normal(reason, now.message.clone()))
            }
            (model::api::conditions::FALSE, _, Some(reason)) => {
                events.push(super::EventToPublish::warning(reason, now.message.clone()))
            }
            _ => {}
        }
    }
    events
}

/// The Event announcing that the receiver runs a new config (credentials rotated, webhook
/// settings or mappings changed), when `previous` was a different one.
pub fn config_change_event(previous: Option<&str>, current: Option<&str>) -> Option<super::EventToPublish> {
    match (previous, current) {
        (Some(before), Some(now)) if before != now => Some(super::EventToPublish::normal(
            "ReceiverConfigChanged",
            "The receiver config changed (a referenced Secret, the webhook settings or a mapping); the receiver pods roll to it",
        )),
        _ => None,
    }
}

/// What came of checking an integration's token.
#[derive(Debug)]
pub enum Authentication {
    /// The token could not be read from its Secret.
    TokenUnavailable(SecretError),
    /// HubSpot's token introspection failed.
    Failed(hubspot::Error),
    /// HubSpot described the token.
    Succeeded(TokenInfo),
}

/// The receiver's rollout as the operator sees it: not rendered, or deployed with so many pods
/// available.
#[derive(Debug)]
pub enum ReceiverRollout {
    /// No config could be rendered, so nothing was applied.
    NotRendered(ConfigError),
    /// The receiver runs with the current config; counts are from the StatefulSet's status.
    Deployed { available_replicas: i32, desired_replicas: i32 },
}

/// What came of exposing the receiver outside the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReceiverExposure {
    /// `spec.receiver` asks for neither an Ingress nor an HTTPRoute.
    NotRequested,
    /// The Ingress or HTTPRoute was applied.
    Applied(ReceiverExposureKind),
    /// The cluster has no HTTPRoute resource.
    GatewayApiMissing,
}

impl ReceiverExposure {
    /// The kind of object now exposing the receiver.
    pub fn kind(&self) -> Option<ReceiverExposureKind> {
        match self {
            ReceiverExposure::Applied(kind) => Some(*kind),
            _ => None,
        }
    }
}

/// The `ReceiverExposed` condition; `None` when no exposure is asked for.
pub fn exposure_condition(
    integration: &HubSpotIntegration,
    exposure: &ReceiverExposure,
    generation: Option<i64>,
) -> Option<Condition> {
    let name = super::resources::receiver_name(integration);
    let (ok, reason, message) = match exposure {
        ReceiverExposure::NotRequested => return None,
        ReceiverExposure::Applied(kind) => {
            let (kind, reason) = match kind {
                ReceiverExposureKind::Ingress => ("Ingress", "IngressApplied"),
                ReceiverExposureKind::HttpRoute => ("HTTPRoute", "HTTPRouteApplied"),
            };
            let message = match super::resources::receiver_public_url(integration) {
                Some(url) => format!("{kind} {name} routes webhooks to the receiver; HubSpot's target URL is {url}"),
                None => format!("{kind} {name} routes webhooks to the receiver"),
            };
            (true, reason, message)
        }
        ReceiverExposure::GatewayApiMissing => (
            false,
            "GatewayAPINotInstalled",
            format!(
                "HTTPRoute {name} cannot be applied: the cluster has no gateway.networking.k8s.io/v1 HTTPRoute \
                 resource. Install the Gateway API CRDs, or expose the receiver with spec.receiver.ingress"
            ),
        ),
    };
    Some(condition(integration_conditions::RECEIVER_EXPOSED, Some(ok), reason, message, generation))
}

/// A condition reason and message describing a failed HubSpot call. The message carries
/// HubSpot's own words and correlation id, so support can trace the call.
pub fn hubspot_error_reason(error: &hubspot::Error) -> (String, String) {
    match error {
        hubspot::Error::Api(api) => {
            let mut message = format!("HubSpot answered {}: {}", api.status, api.message.trim());
            if !api.required_scopes.is_empty() {
                message.push_str(&format!(" Required scopes: {}.", api.required_scopes.join(", ")));
            }
            if !api.correlation_id.is_empty() {
                message.push_str(&format!(" (correlationId {})", api.correlation_id));
            }
            (condition_reason(&api.category), message)
        }
        hubspot::Error::DailyLimitExhausted { .. } => ("DailyLimitExhausted".into(), error.to_string()),
        hubspot::Error::Transport(_) => ("HubSpotUnreachable".into(), error.to_string()),
        hubspot::Error::Decode(_) => ("UnexpectedResponse".into(), error.to_string()),
        hubspot::Error::SearchCapped { .. } => ("SearchTooBroad".into(), error.to_string()),
    }
}

/// HubSpot's error category as a condition reason, which must match
/// `^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$`.
fn condition_reason(category: &str) -> String {
    let cleaned: String = category.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
    if cleaned.starts_with(|c: char| c.is_ascii_alphabetic()) { cleaned } else { "HubSpotError".into() }
}

/// The `Authenticated` condition. A token of another portal than `portal_id` is refused.
pub fn authenticated_condition(portal_id: Option<u64>, auth: &Authentication, generation: Option<i64>) -> Condition {
    let (ok, reason, message) = match auth {
        Authentication::TokenUnavailable(e) => (false, e.reason().to_string(), format!("Cannot read the token: {e}")),
        Authentication::Failed(e) => {
            let (reason, message) = hubspot_error_reason(e);
            (false, reason, message)
        }
        Authentication::Succeeded(info) => match portal_id {
            Some(expected) if expected != info.hub_id => (
                false,
                "PortalMismatch".into(),
                format!("The token belongs to portal {}, but spec.portalId is {expected}", info.hub_id),
            ),
            _ => {
                (true, "TokenValid".into(), format!("Token of app {} accepted by portal {}", info.app_id, info.hub_id))
            }
        },
    };
    condition(integration_conditions::AUTHENTICATED, Some(ok), &reason, message, generation)
}

/// Which of `required` scopes are not `granted`, in the order required, and the
/// `ScopesGranted` condition saying so.
pub fn scope_check(required: &[String], granted: &[String], generation: Option<i64>) -> (Vec<String>, Condition) {
    let mut missing: Vec<String> = Vec::new();
    for scope in required {
        if !granted.contains(scope) && !missing.contains(scope) {
            missing.push(scope.clone());
        }
    }
    let condition = if missing.is_empty() {
        condition(
            integration_conditions::SCOPES_GRANTED,
            Some(true),
            "AllScopesGranted",
            format!("All {} required scopes are granted", required.len()),
            generation,
        )
    } else {
        condition(
            integration_conditions::SCOPES_GRANTED,
            Some(false),
            "MissingScopes",
            format!("The token lacks required scopes: {}", missing.join(", ")),
            generation,
        )
    };
    (missing, condition)
}

/// The `ReceiverAvailable` condition.
pub fn receiver_condition(receiver: &ReceiverRollout, generation: Option<i64>) -> Condition {
    let (ok, reason, message) = match receiver {
        ReceiverRollout::NotRendered(e) => (false, e.reason(), format!("The receiver config cannot be rendered: {e}")),
        ReceiverRollout::Deployed { available_replicas, desired_replicas } if *available_replicas >= 1 => {
            (true, "ReceiverAvailable", format!("{available_replicas} of {desired_replicas} receiver pods available"))
        }
        ReceiverRollout::Deployed { desired_replicas, .. } => {
            (false, "ReceiverUnavailable", format!("No receiver pod is available yet ({desired_replicas} desired)"))
        }
    };
    condition(integration_conditions::RECEIVER_AVAILABLE, Some(ok), reason, message, generation)
}

/// The `Ready` condition from the others: True when all are; otherwise the first that is not
/// names the reason.
fn ready_condition(type_: &str, parts: &[&Condition], generation: Option<i64>) -> Condition {
    match parts.iter().find(|c| c.status != model::api::conditions::TRUE) {
        None => condition(type_, Some(true), "Ready", "All conditions are met", generation),
        Some(blocking) => condition(
            type_,
            Some(false),
            &blocking.reason,
            format!("{}: {}", blocking.type_, blocking.message),
            generation,
        ),
    }
}

/// The whole status of `integration` after one reconcile, keeping the transition times of
/// conditions whose status did not change. `exposure` is `None` when the receiver was not
/// applied on this visit, which leaves what was last observed of it.
pub fn integration_status(
    integration: &HubSpotIntegration,
    auth: &Authentication,
    receiver: &ReceiverRollout,
    receiver_url: Option<String>,
    webhooks: Option<Condition>,
    exposure: Option<&ReceiverExposure>,
) -> HubSpotIntegrationStatus {
    let generation = integration.metadata.generation;
    let authenticated = authenticated_condition(integration.spec.portal_id, auth, generation);
    let (token, granted_scopes) = match auth {
        Authentication::Succeeded(info) => (Some(info), info.scopes.clone()),
        _ => (None, Vec::new()),
    };
    let (missing_scopes, scopes) = match token {
        Some(info) => scope_check(&integration.spec.required_scopes, &info.scopes, generation),
        None => (
            Vec::new(),
            condition(
                integration_conditions::SCOPES_GRANTED,
                None,
                "NotAuthenticated",
                "Scopes are checked once the token is accepted",
                generation,
            ),
        ),
    };
    let available = receiver_condition(receiver, generation);
    let exposed = exposure.and_then(|e| exposure_condition(integration, e, generation));
    let mut parts = vec![&authenticated, &scopes, &available];
    parts.extend(webhooks.as_ref());
    parts.extend(exposed.as_ref());
    let ready = ready_condition(integration_conditions::READY, &parts, generation);

    let previous = integration.status.clone().unwrap_or_default();
    let mut conditions = previous.conditions;
    if exposure == Some(&ReceiverExposure::NotRequested) {
        // Nothing is exposed any more, so nothing is left to report on.
        conditions.retain(|c| c.type_ != integration_conditions::RECEIVER_EXPOSED);
    }
    for c in [Some(ready), Some(authenticated), Some(scopes), Some(available), webhooks, exposed].into_iter().flatten()
    {
        set_condition(&mut conditions, c);
    }
    HubSpotIntegrationStatus {
        conditions,
        observed_generation: generation,
        hub_id: token.map(|info| info.hub_id),
        granted_scopes,
        missing_scopes,
        receiver_url,
        receiver_config_hash: previous.receiver_config_hash,
        last_handled_reconcile_at: reconcile_request(integration).or(previous.last_handled_reconcile_at),
        webhook_subscription_ids: previous.webhook_subscription_ids,
        receiver_exposed_by: match exposure {
            Some(exposure) => exposure.kind(),
            None => previous.receiver_exposed_by,
        },
    }
}

/// What came of looking up a mapping's integration and the properties of its object type.
#[derive(Debug)]
pub enum PropertyLookup {
    /// The referenced `HubSpotIntegration` does not exist.
    IntegrationNotFound,
    /// The integration's token could not be read from its Secret.
    TokenUnavailable(SecretError),
    /// HubSpot's property listing failed.
    Failed(hubspot::Error),
    /// The names of the object type's properties in HubSpot.
    Listed(Arc<PropertyNames>),
}

/// The HubSpot properties `mapping` needs (its match key and every field), in spec order.
pub fn required_properties(mapping: &PropertyMapping) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let records = &mapping.spec.records;
    for name in
        std::iter::once(&records.match_key.hubspot_property).chain(records.fields.iter().map(|f| &f.hubspot_property))
    {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    names
}

/// Which properties `mapping` needs that are not among `properties`, and the `PropertiesExist`
/// condition saying so.
pub fn mapping_property_check(
    mapping: &PropertyMapping,
    properties: &PropertyNames,
    generation: Option<i64>,
) -> (Vec<String>, Condition) {
    let required = required_properties(mapping);
    let missing: Vec<String> = required.iter().filter(|name| !properties.contains(*name)).cloned().collect();
    let object_type = &mapping.spec.records.object_type;
    let condition = if missing.is_empty() {
        condition(
            mapping_conditions::PROPERTIES_EXIST,
            Some(true),
            "PropertiesExist",
            format!("All {} mapped properties exist on {object_type}", required.len()),
            generation,
        )
    } else {
        condition(
            mapping_conditions::PROPERTIES_EXIST,
            Some(false),
            "PropertiesMissing",
            format!("Properties missing on {object_type}: {}", missing.join(", ")),
            generation,
        )
    };
    (missing, condition)
}

/// The whole status of `mapping` after one reconcile.
pub fn mapping_status(
    mapping: &PropertyMapping,
    lookup: &PropertyLookup,
    receivers: &ReceiverReports,
) -> PropertyMappingStatus {
    let generation = mapping.metadata.generation;
    let integration = &mapping.spec.integration_ref.name;
    let found = match lookup {
        PropertyLookup::IntegrationNotFound => condition(
            mapping_conditions::INTEGRATION_FOUND,
            Some(false),
            "IntegrationNotFound",
            format!(
                "HubSpotIntegration {integration:?} not found in namespace {:?}",
                mapping.namespace().unwrap_or_default()
            ),
            generation,
        ),
        _ => condition(
            mapping_conditions::INTEGRATION_FOUND,
            Some(true),
            "IntegrationFound",
            format!("HubSpotIntegration {integration:?} found"),
            generation,
        ),
    };
    let (missing_properties, exist) = match lookup {
        PropertyLookup::IntegrationNotFound => (
            Vec::new(),
            condition(
                mapping_conditions::PROPERTIES_EXIST,
                None,
                "IntegrationNotFound",
                "Properties are checked once the integration exists",
                generation,
            ),
        ),
        PropertyLookup::TokenUnavailable(e) => (
            Vec::new(),
            condition(
                mapping_conditions::PROPERTIES_EXIST,
                None,
                e.reason(),
                format!("Cannot read the integration's token: {e}"),
                generation,
            ),
        ),
        PropertyLookup::Failed(e) => {
            let (reason, message) = hubspot_error_reason(e);
            (Vec::new(), condition(mapping_conditions::PROPERTIES_EXIST, Some(false), &reason, message, generation))
        }
        PropertyLookup::Listed(properties) => mapping_property_check(mapping, properties, generation),
    };
    let ready = ready_condition(mapping_conditions::READY, &[&found, &exist], generation);

    let (synced, sync) = mapping_sync(&qualified_name(mapping), receivers, generation);

    let previous = mapping.status.clone().unwrap_or_default();
    let mut conditions = previous.conditions;
    for c in [ready, found, exist, synced] {
        set_condition(&mut conditions, c);
    }
    PropertyMappingStatus {
        conditions,
        observed_generation: generation,
        missing_properties,
        last_handled_reconcile_at: reconcile_request(mapping).or(previous.last_handled_reconcile_at),
        sync,
    }
}

/// The `Synced` condition and the figures of the mapping `name` (`namespace/name`), from its
/// integration's receivers: counts are added up over the pods that answered; the event log's
/// figures are the largest any pod gave, since pods sharing a JetStream log each report all of
/// it.
pub fn mapping_sync(
    name: &str,
    receivers: &ReceiverReports,
    generation: Option<i64>,
) -> (Condition, Option<MappingSync>) {
    let synced =
        |ok, reason: &str, message: String| condition(mapping_conditions::SYNCED, ok, reason, message, generation);
    let (ready, reports, errors) = match receivers {
        ReceiverReports::NotRunning { reason, message } => return (synced(None, reason, message.clone()), None),
        ReceiverReports::Read { ready: 0, .. } => {
            return (synced(None, "ReceiverNotReady", "No receiver pod is ready".into()), None);
        }
        ReceiverReports::Read { reports, errors, .. } if reports.is_empty() => {
            let message = format!("No receiver pod answered: {}", errors.join("; "));
            return (synced(None, "ReceiverUnreachable", message), None);
        }
        ReceiverReports::Read { ready, reports, errors } => (ready, reports, errors),
    };
    let mine: Vec<&MappingReport> = reports.iter().filter_map(|r| r.mappings.get(name)).collect();
    if mine.is_empty() {
        let message = "The receivers do not run this mapping yet; its configuration is being rolled out".to_string();
        return (synced(None, "NotYetRunning", message), None);
    }
    let total = |count: fn(&MappingReport) -> u64| mine.iter().map(|r| count(r)).sum::<u64>();
    let last_success_ms = mine.iter().filter_map(|r| r.last_success_ms).max();
    let last_error = mine.iter().filter_map(|r| r.last_error.as_ref()).max_by_key(|e| e.at_ms);
    let time = |ms: i64| Timestamp::from_millisecond(ms).ok().map(Time);
    let sync = MappingSync {
        receivers: format!("{}/{ready}", reports.len()),
        records_delivered: total(|r| r.records_delivered),
        records_written: total(|r| r.records_written),
        dead_letters: total(|r| r.dead_letters),
        rejected_records: total(|r| r.rejected_records),
        queued_for_hubspot: total(|r| r.queued_for_hubspot),
        pending_events: reports.iter().map(|r| r.events_pending).max().unwrap_or(0),
        lag_seconds: reports.iter().map(|r| r.oldest_pending_age_seconds).max().unwrap_or(0),
        last_success_time: last_success_ms.and_then(time),
        last_error: last_error.map(|e| e.message.clone()),
        last_error_time: last_error.and_then(|e| time(e.at_ms)),
    };
    let failing = report::failing(last_success_ms, last_error);
    let unanswered = match errors.len() {
        0 => String::new(),
        n => format!(" ({n} of {ready} receiver pods did not answer: {})", errors.join("; ")),
    };
    let condition = if failing {
        let error = last_error.map_or("", |e| e.message.as_str());
        synced(Some(false), "SyncFailing", format!("{error}; retrying{unanswered}"))
    } else if sync.dead_letters + sync.rejected_records > 0 {
        let message = format!(
            "{} records refused by a destination (hubspot-operator dead-letters list), {} refused by HubSpot \
             (hubspot-operator rejected list){unanswered}",
            sync.dead_letters, sync.rejected_records
        );
        synced(Some(false), "RecordsRefused", message)
    } else {
        let message = format!(
            "{} records delivered, {} written to HubSpot; {} events pending, {} s behind{unanswered}",
            sync.records_delivered, sync.records_written, sync.pending_events, sync.lag_seconds
        );
        synced(Some(true), "InSync", message)
    };
    (condition, Some(sync))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;
    use hubspot::ApiError;
    use model::api::SecretKeyRef;
    use model::api::integration::{Credentials, HubSpotIntegrationSpec};
    use model::api::mapping::{Direction, FieldMapping, MappedRecords, MatchKey, PropertyMappingSpec};
    use model::report::{ReportedError, SyncReport};

    fn not_available() -> ReceiverReports {
        ReceiverReports::not_available()
    }

    const CONTACTS: &str = "default/contacts";

    /// One pod's report of `CONTACTS`, with `events_pending` events pending for `age_s`.
    fn pod(mapping: MappingReport, events_pending: u64, age_s: u64) -> SyncReport {
        SyncReport {
            events_pending,
            oldest_pending_age_seconds: age_s,
            mappings: [(CONTACTS.to_string(), mapping)].into_iter().collect(),
            ..Default::default()
        }
    }

    fn read(reports: Vec<SyncReport>, errors: &[&str]) -> ReceiverReports {
        let ready = reports.len() + errors.len();
        ReceiverReports::Read { ready, reports, errors: errors.iter().map(|e| e.to_string()).collect() }
    }

    fn synced(receivers: &ReceiverReports) -> (String, String, String, Option<MappingSync>) {
        let (c, sync) = mapping_sync(CONTACTS, receivers, Some(3));
        assert_eq!((c.type_.as_str(), c.observed_generation), ("Synced", Some(3)));
        (c.status, c.reason, c.message, sync)
    }

    #[test]
    fn sync_figures_add_up_over_the_pods_that_answered() {
        let one = MappingReport {
            records_delivered: 10,
            records_written: 1,
            last_success_ms: Some(1_764_000_000_000),
            ..Default::default()
        };
        let other = MappingReport { records_delivered: 5, queued_for_hubspot: 2, ..Default::default() };
        // Pods sharing a JetStream log each report all of it: the largest figure, not the sum.
        let (status, reason, message, sync) =
            synced(&read(vec![pod(one, 7, 3), pod(other, 7, 4)], &["pod-2: timed out"]));
        assert_eq!((status.as_str(), reason.as_str()), ("True", "InSync"));
        assert_eq!(
            message,
            "15 records delivered, 1 written to HubSpot; 7 events pending, 4 s behind \
             (1 of 3 receiver pods did not answer: pod-2: timed out)"
        );
        let sync = sync.unwrap();
        assert_eq!(sync.receivers, "2/3");
        assert_eq!((sync.records_delivered, sync.records_written, sync.queued_for_hubspot), (15, 1, 2));
        assert_eq!((sync.pending_events, sync.lag_seconds), (7, 4));
        assert_eq!(sync.last_success_time.unwrap().0.to_string(), "2025-11-24T16:00:00Z");
        assert_eq!(sync.last_error, None);
    }

    #[test]
    fn an_error_newer_than_the_last_success_is_reported_until_a_step_succeeds() {
        let error = ReportedError {
            message: "reading contacts from HubSpot: HubSpot answered 403".into(),
            at_ms: 20,
            correlation_id: None,
        };
        let failing =
            MappingReport { last_success_ms: Some(10), last_error: Some(error.clone()), ..Default::default() };
        let (status, reason, message, sync) = synced(&read(vec![pod(failing, 1, 9)], &[]));
        assert_eq!((status.as_str(), reason.as_str()), ("False", "SyncFailing"));
        assert_eq!(message, "reading contacts from HubSpot: HubSpot answered 403; retrying");
        let sync = sync.unwrap();
        assert_eq!(sync.last_error.as_deref(), Some(error.message.as_str()));
        assert_eq!(sync.last_error_time.unwrap().0.as_millisecond(), 20);

        // Another pod succeeded since: the newest of each counts.
        let recovered = MappingReport { last_success_ms: Some(30), ..Default::default() };
        let failing = MappingReport { last_error: Some(error), ..Default::default() };
        assert_eq!(synced(&read(vec![pod(failing, 0, 0), pod(recovered, 0, 0)], &[])).1, "InSync");
    }

    #[test]
    fn refused_records_keep_a_mapping_from_being_synced() {
        let refused = MappingReport { dead_letters: 2, rejected_records: 1, ..Default::default() };
        let (status, reason, message, sync) = synced(&read(vec![pod(refused, 0, 0)], &[]));
        assert_eq!((status.as_str(), reason.as_str()), ("False", "RecordsRefused"));
        assert_eq!(
            message,
            "2 records refused by a destination (hubspot-operator dead-letters list), 1 refused by HubSpot \
             (hubspot-operator rejected list)"
        );
        assert_eq!(sync.unwrap().dead_letters, 2);
    }

    #[test]
    fn without_an_answer_about_the_mapping_its_sync_is_unknown() {
        let unknown = |receivers: &ReceiverReports| {
            let (status, reason, message, sync) = synced(receivers);
            assert_eq!(status, "Unknown");
            assert_eq!(sync, None);
            (reason, message)
        };
        assert_eq!(unknown(&not_available()).0, "ReceiverNotAvailable");
        assert_eq!(unknown(&ReceiverReports::integration_not_found()).0, "IntegrationNotFound");
        assert_eq!(unknown(&read(vec![], &[])), ("ReceiverNotReady".into(), "No receiver pod is ready".into()));
        assert_eq!(
            unknown(&read(vec![], &["http://10.0.0.7:8080/sync/status: connection refused"])),
            (
                "ReceiverUnreachable".into(),
                "No receiver pod answered: http://10.0.0.7:8080/sync/status: connection refused".into()
            )
        );
        let other_mapping = SyncReport {
            mappings: [("default/leads".to_string(), MappingReport::default())].into_iter().collect(),
            ..Default::default()
        };
        assert_eq!(unknown(&read(vec![other_mapping], &[])).0, "NotYetRunning");
    }

    fn integration(required: &[&str], portal: Option<u64>) -> HubSpotIntegration {
        let mut i = HubSpotIntegration::new(
            "crm",
            HubSpotIntegrationSpec {
                portal_id: portal,
                api: Default::default(),
                credentials: Credentials {
                    private_app_token: Some(SecretKeyRef { name: "hubspot".into(), key: "token".into() }),
                    oauth: None,
                },
                required_scopes: required.iter().map(|s| s.to_string()).collect(),
                webhooks: None,
                receiver: Default::default(),
            },
        );
        i.metadata.namespace = Some("sales".into());
        i.metadata.generation = Some(3);
        i
    }

    fn token(hub_id: u64, scopes: &[&str]) -> Authentication {
        Authentication::Succeeded(TokenInfo {
            user_id: 1,
            hub_id,
            app_id: 77,
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
        })
    }

    const DEPLOYED: ReceiverRollout = ReceiverRollout::Deployed { available_replicas: 1, desired_replicas: 1 };

    fn find<'a>(conditions: &'a [Condition], type_: &str) -> &'a Condition {
        conditions.iter().find(|c| c.type_ == type_).unwrap_or_else(|| panic!("no {type_} condition"))
    }

    #[test]
    fn healthy_integration_is_ready_with_every_condition_set() {
        let i = integration(&["crm.objects.contacts.read"], Some(62515));
        let status =
            integration_status(&i, &token(62515, &["crm.objects.contacts.read", "oauth"]), &DEPLOYED, None, None, None);
        assert_eq!(status.conditions.len(), 4);
        for c in &status.conditions {
            assert_eq!(c.status, "True", "{c:?}");
            assert_eq!(c.observed_generation, Some(3));
        }
        assert_eq!(status.observed_generation, Some(3));
        assert_eq!(status.hub_id, Some(62515));
        assert_eq!(status.granted_scopes, ["crm.objects.contacts.read", "oauth"]);
        assert!(status.missing_scopes.is_empty());
    }

    #[test]
    fn exposure_is_reported_while_asked_for_and_kept_when_the_receiver_is_not_applied() {
        let mut i = integration(&[], None);
        i.spec.receiver.ingress =
            Some(serde_json::from_value(serde_json::json!({ "host": "hooks.example.com" })).unwrap());
        let applied = ReceiverExposure::Applied(ReceiverExposureKind::Ingress);
        let status = integration_status(&i, &token(1, &[]), &DEPLOYED, None, None, Some(&applied));
        let exposed = find(&status.conditions, "ReceiverExposed");
        assert_eq!((exposed.status.as_str(), exposed.reason.as_str()), ("True", "IngressApplied"));
        assert_eq!(
            exposed.message,
            "Ingress crm-receiver routes webhooks to the receiver; HubSpot's target URL is http://hooks.example.com/webhooks/hubspot"
        );
        assert_eq!(status.receiver_exposed_by, Some(ReceiverExposureKind::Ingress));

        i.status = Some(status);
        let unrendered = ReceiverRollout::NotRendered(ConfigError::WebhooksNotConfigured);
        let status = integration_status(&i, &token(1, &[]), &unrendered, None, None, None);
        assert_eq!(find(&status.conditions, "ReceiverExposed").status, "True", "last observed");
        assert_eq!(
            status.receiver_exposed_by,
            Some(ReceiverExposureKind::Ingress),
            "still to be deleted when unwanted"
        );

        i.spec.receiver.ingress = None;
        let status =
            integration_status(&i, &token(1, &[]), &DEPLOYED, None, None, Some(&ReceiverExposure::NotRequested));
        assert!(status.conditions.iter().all(|c| c.type_ != "ReceiverExposed"), "{:?}", status.conditions);
        assert_eq!(status.receiver_exposed_by, None);
        assert_eq!(find(&status.conditions, "Ready").status, "True");
    }

    #[test]
    fn missing_scopes_are_listed_in_condition_and_status() {
        let i = integration(&["crm.objects.contacts.read", "crm.objects.deals.write", "oauth"], None);
        let status = integration_status(&i, &token(1, &["crm.objects.contacts.read"]), &DEPLOYED, None, None, None);
        assert_eq!(status.missing_scopes, ["crm.objects.deals.write", "oauth"]);
        let scopes = find(&status.conditions, "ScopesGranted");
        assert_eq!((scopes.status.as_str(), scopes.reason.as_str()), ("False", "MissingScopes"));
        assert_eq!(scopes.message, "The token lacks required scopes: crm.objects.deals.write, oauth");
        let ready = find(&status.conditions, "Ready");
        assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", "MissingScopes"));
        assert_eq!(find(&status.conditions, "Authenticated").status, "True");
    }

    #[test]
    fn token_of_another_portal_is_not_authenticated() {
        let i = integration(&[], Some(62515));
        let status = integration_status(&i, &token(99, &[]), &DEPLOYED, None, None, None);
        let auth = find(&status.conditions, "Authenticated");
        assert_eq!((auth.status.as_str(), auth.reason.as_str()), ("False", "PortalMismatch"));
        assert_eq!(auth.message, "The token belongs to portal 99, but spec.portalId is 62515");
        assert_eq!(find(&status.conditions, "Ready").reason, "PortalMismatch");
    }

    #[test]
    fn hubspot_refusal_keeps_category_message_and_correlation_id() {
        let i = integration(&["oauth"], None);
        let refused = Authentication::Failed(hubspot::Error::Api(ApiError::from_body(
            401,
            br#"{"status":"error","message":"Authentication credentials not found.","correlationId":"4b5c-1","category":"INVALID_AUTHENTICATION"}"#,
        )));
        let status = integration_status(&i, &refused, &DEPLOYED, None, None, None);
        let auth = find(&status.conditions, "Authenticated");
        assert_eq!(auth.reason, "INVALID_AUTHENTICATION");
        assert_eq!(auth.message, "HubSpot answered 401: Authentication credentials not found. (correlationId 4b5c-1)");
        let scopes = find(&status.conditions, "ScopesGranted");
        assert_eq!((scopes.status.as_str(), scopes.reason.as_str()), ("Unknown", "NotAuthenticated"));
        assert_eq!(status.hub_id, None);
    }

    #[test]
    fn missing_token_secret_names_the_secret() {
        let i = integration(&[], None);
        let auth =
            Authentication::TokenUnavailable(SecretError::KeyMissing { name: "hubspot".into(), key: "token".into() });
        let c = authenticated_condition(None, &auth, Some(1));
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("False", "SecretKeyMissing"));
        assert_eq!(c.message, r#"Cannot read the token: Secret "hubspot" has no key "token""#);
        let status = integration_status(
            &i,
            &auth,
            &ReceiverRollout::NotRendered(ConfigError::WebhooksNotConfigured),
            None,
            None,
            None,
        );
        let receiver = find(&status.conditions, "ReceiverAvailable");
        assert_eq!((receiver.status.as_str(), receiver.reason.as_str()), ("False", "WebhooksNotConfigured"));
    }

    #[test]
    fn receiver_without_available_pods_is_not_available() {
        let c = receiver_condition(&ReceiverRollout::Deployed { available_replicas: 0, desired_replicas: 2 }, None);
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("False", "ReceiverUnavailable"));
    }

    #[test]
    fn unchanged_condition_keeps_its_transition_time() {
        let mut i = integration(&[], None);
        let first = integration_status(&i, &token(1, &[]), &DEPLOYED, None, None, None);
        let mut earlier = first.clone();
        let old_time = Time("2020-01-01T00:00:00Z".parse().unwrap());
        for c in &mut earlier.conditions {
            c.last_transition_time = old_time.clone();
        }
        i.status = Some(earlier);
        let second = integration_status(
            &i,
            &token(1, &[]),
            &ReceiverRollout::Deployed { available_replicas: 0, desired_replicas: 1 },
            None,
            None,
            None,
        );
        assert_eq!(find(&second.conditions, "Authenticated").last_transition_time, old_time);
        assert_ne!(find(&second.conditions, "ReceiverAvailable").last_transition_time, old_time);
        assert_eq!(second.conditions.len(), 4);
    }

    #[test]
    fn odd_categories_become_valid_reasons() {
        assert_eq!(condition_reason("MISSING_SCOPES"), "MISSING_SCOPES");
        assert_eq!(condition_reason("rate-limit"), "ratelimit");
        assert_eq!(condition_reason(""), "HubSpotError");
        assert_eq!(condition_reason("429"), "HubSpotError");
    }

    fn mapping(fields: &[&str]) -> PropertyMapping {
        let mut m = PropertyMapping::new(
            "contacts",
            PropertyMappingSpec::new(
                "crm",
                MappedRecords::new(
                    "contacts",
                    MatchKey::new("email", "email"),
                    fields.iter().map(|f| FieldMapping::new(*f, *f, Direction::Both)).collect(),
                ),
            ),
        );
        m.metadata.namespace = Some("sales".into());
        m.metadata.generation = Some(2);
        m
    }

    fn names(list: &[&str]) -> PropertyNames {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn missing_properties_are_listed() {
        let m = mapping(&["firstname", "loyalty_tier", "email"]);
        let (missing, c) = mapping_property_check(&m, &names(&["email", "firstname"]), Some(2));
        assert_eq!(missing, ["loyalty_tier"]);
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("False", "PropertiesMissing"));
        assert_eq!(c.message, "Properties missing on contacts: loyalty_tier");

        let status = mapping_status(&m, &PropertyLookup::Listed(Arc::new(names(&["firstname"]))), &not_available());
        assert_eq!(status.missing_properties, ["email", "loyalty_tier"]);
        assert_eq!(find(&status.conditions, "Ready").reason, "PropertiesMissing");
        assert_eq!(find(&status.conditions, "IntegrationFound").status, "True");
    }

    #[test]
    fn mapping_with_all_properties_is_ready() {
        let m = mapping(&["firstname"]);
        let status =
            mapping_status(&m, &PropertyLookup::Listed(Arc::new(names(&["email", "firstname"]))), &not_available());
        assert!(status.missing_properties.is_empty());
        assert_eq!(status.conditions.len(), 4);
        let (synced, others): (Vec<_>, Vec<_>) = status.conditions.iter().partition(|c| c.type_ == "Synced");
        assert!(others.iter().all(|c| c.status == "True" && c.observed_generation == Some(2)));
        assert_eq!((synced[0].status.as_str(), synced[0].reason.as_str()), ("Unknown", "ReceiverNotAvailable"));
    }

    #[test]
    fn mapping_without_integration_is_not_ready() {
        let status = mapping_status(
            &mapping(&["firstname"]),
            &PropertyLookup::IntegrationNotFound,
            &ReceiverReports::integration_not_found(),
        );
        let found = find(&status.conditions, "IntegrationFound");
        assert_eq!((found.status.as_str(), found.reason.as_str()), ("False", "IntegrationNotFound"));
        assert_eq!(found.message, r#"HubSpotIntegration "crm" not found in namespace "sales""#);
        assert_eq!(find(&status.conditions, "PropertiesExist").status, "Unknown");
        assert_eq!(find(&status.conditions, "Ready").reason, "IntegrationNotFound");
    }

    #[test]
    fn missing_scope_answer_lists_the_required_scopes() {
        let err = hubspot::Error::Api(ApiError::from_body(
            403,
            br#"{"status":"error","message":"This app hasn't been granted all required scopes to make this call.","correlationId":"c-9","errors":[{"message":"One or more of the following scopes are required.","context":{"requiredScopes":["crm.schemas.contacts.read"]}}],"category":"MISSING_SCOPES"}"#,
        ));
        let status = mapping_status(&mapping(&[]), &PropertyLookup::Failed(err), &not_available());
        let exist = find(&status.conditions, "PropertiesExist");
        assert_eq!((exist.status.as_str(), exist.reason.as_str()), ("False", "MISSING_SCOPES"));
        assert_eq!(
            exist.message,
            "HubSpot answered 403: This app hasn't been granted all required scopes to make this call. \
             Required scopes: crm.schemas.contacts.read. (correlationId c-9)"
        );
    }

    fn with(type_: &str, ok: Option<bool>, message: &str) -> Condition {
        condition(type_, ok, "Reason", message, Some(1))
    }

    #[test]
    fn condition_transitions_are_announced_once_and_unknown_is_not() {
        let events = |before: &[Condition], after: &[Condition]| -> Vec<(bool, &'static str, String)> {
            condition_events(before, after, INTEGRATION_EVENTS)
                .into_iter()
                .map(|c| (c.warning, c.reason, c.note))
                .collect()
        };
        // First visit: Ready announced; a False condition warned about; True ones are the normal case.
        let first = [with("Ready", Some(true), "all good"), with("Authenticated", Some(true), "token ok")];
        assert_eq!(events(&[], &first), [(false, "Ready", "all good".to_string())]);
        let failing = [with("Ready", Some(false), "x"), with("ScopesGranted", Some(false), "lacks timeline")];
        assert_eq!(events(&[], &failing), [(true, "ScopesMissing", "lacks timeline".to_string())]);
        // Unchanged: nothing.
        assert_eq!(events(&first, &first), []);
        // Lost and regained.
        let lost = [with("Ready", Some(false), "x"), with("Authenticated", Some(false), "HubSpot answered 401")];
        assert_eq!(events(&first, &lost), [(true, "AuthenticationFailed", "HubSpot answered 401".to_string())]);
        assert_eq!(
            events(&lost, &first),
            [(false, "Ready", "all good".to_string()), (false, "Authenticated", "token ok".to_string())]
        );
        // Turning Unknown (paused, or not checked) is not announced.
        assert_eq!(events(&first, &[with("Ready", None, "paused")]), []);
        // Mappings announce missing properties.
        let missing = [with("PropertiesExist", Some(false), "Properties missing on contacts: tier")];
        let mapping = condition_events(&[], &missing, MAPPING_EVENTS);
        assert_eq!(
            mapping,
            [crate::EventToPublish::warning("PropertiesMissing", "Properties missing on contacts: tier")]
        );
    }

    #[test]
    fn a_new_receiver_config_is_announced_but_not_the_first_one() {
        assert_eq!(config_change_event(None, Some("a")), None);
        assert_eq!(config_change_event(Some("a"), Some("a")), None);
        assert_eq!(config_change_event(Some("a"), None), None);
        assert_eq!(
            config_change_event(Some("a"), Some("b")).map(|c| (c.warning, c.reason)),
            Some((false, "ReceiverConfigChanged"))
        );
    }
}
