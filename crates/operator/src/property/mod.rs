//! The `HubSpotProperty` reconciler: compares the spec with HubSpot's property (a pure
//! [`plan`]), creates, repairs or only reports per the management policy, and archives the
//! property on deletion when the deletion policy says so.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use super::catalogue::PropertyCatalogue;
use super::events::publish;
use super::kube_api::{object_key, patch_status, scoped_api};
use super::secrets::SecretError;
use super::status::{hubspot_error_reason, mark_paused};
use super::watches::{integration_changes, objects_of};
use super::{Change, Context, Error, ObjectLabels, UNHEALTHY_REQUEUE};
use hubspot::models::{Property, PropertyCreate, PropertyGroup, PropertyOption, PropertyUpdate};
use hubspot::{self, HubSpotClient};
use model::api::conditions::{condition, set_condition};
use model::api::property::condition_types::{READY, SYNCED};
use model::api::property::synced_reasons::*;
use model::api::property::{DeletionPolicy, HubSpotPropertySpec, LastError, ManagementPolicy, PropertyType};
use model::api::{HubSpotProperty, HubSpotPropertyStatus, is_paused};

/// Finalizer that keeps a `HubSpotProperty` until its HubSpot side is dealt with.
pub const FINALIZER: &str = "hubspot.io/property-cleanup";
/// How often HubSpot is read again to detect drift (one read per object per interval).
pub const DRIFT_CHECK_INTERVAL: Duration = Duration::from_secs(5 * 60);

/// What the spec asks of HubSpot, given HubSpot's property of that name.
#[derive(Clone, Debug, PartialEq)]
pub enum Plan {
    /// No such property: create it.
    Create(PropertyCreate),
    /// The listed spec fields differ; `patch` sets exactly them.
    Update { drift: Vec<String>, patch: PropertyUpdate },
    /// Nothing to do.
    InSync,
    /// The spec asks for a change HubSpot does not allow.
    Conflict(String),
    /// HubSpot defines the property; it is never changed. `drift` lists the differences.
    HubSpotDefined { drift: Vec<String> },
}

/// The property HubSpot should have, as a create body.
pub fn desired_create(spec: &HubSpotPropertySpec) -> PropertyCreate {
    PropertyCreate {
        name: spec.name.clone(),
        label: spec.label.clone(),
        type_: spec.type_.as_str().into(),
        field_type: spec.field_type.as_str().into(),
        group_name: spec.group_name.clone(),
        description: spec.description.clone(),
        has_unique_value: spec.has_unique_value,
        options: desired_options(spec),
        hidden: spec.hidden,
        form_field: spec.form_field,
        display_order: spec.display_order,
    }
}

/// The spec's options as HubSpot stores them: an option without `displayOrder` takes its index.
fn desired_options(spec: &HubSpotPropertySpec) -> Vec<PropertyOption> {
    spec.options
        .iter()
        .enumerate()
        .map(|(i, o)| PropertyOption {
            label: o.label.clone(),
            value: o.value.clone(),
            display_order: o.display_order.unwrap_or(i as i32),
            hidden: o.hidden,
        })
        .collect()
}

/// Compares the spec with HubSpot's property. Optional spec fields that are unset are
/// HubSpot's to decide and never count as drift.
pub fn plan(spec: &HubSpotPropertySpec, existing: Option<&Property>) -> Plan {
    let Some(actual) = existing else {
        return Plan::Create(desired_create(spec));
    };
    let mut drift = Vec::new();
    let mut patch = PropertyUpdate::default();
    if spec.label != actual.label {
        drift.push("label".to_string());
        patch.label = Some(spec.label.clone());
    }
    if let Some(description) = spec.description.as_ref().filter(|d| **d != actual.description) {
        drift.push("description".into());
        patch.description = Some(description.clone());
    }
    if spec.group_name != actual.group_name {
        drift.push("groupName".into());
        patch.group_name = Some(spec.group_name.clone());
    }
    if spec.field_type.as_str() != actual.field_type {
        drift.push("fieldType".into());
        patch.field_type = Some(spec.field_type.as_str().into());
    }
    // Non-enumeration properties may carry HubSpot's own options (true/false of a
    // booleancheckbox); they are only compared when the spec lists options.
    let options = desired_options(spec);
    if (spec.type_ == PropertyType::Enumeration || !options.is_empty()) && options != actual.options {
        drift.push("options".into());
        patch.options = Some(options);
    }
    if let Some(hidden) = spec.hidden.filter(|h| *h != actual.hidden) {
        drift.push("hidden".into());
        patch.hidden = Some(hidden);
    }
    if let Some(form_field) = spec.form_field.filter(|f| *f != actual.form_field) {
        drift.push("formField".into());
        patch.form_field = Some(form_field);
    }
    if let Some(order) = spec.display_order.filter(|o| *o != actual.display_order) {
        drift.push("displayOrder".into());
        patch.display_order = Some(order);
    }

    if actual.hubspot_defined == Some(true) {
        return Plan::HubSpotDefined { drift };
    }
    if spec.type_.as_str() != actual.type_ {
        return Plan::Conflict(format!(
            "HubSpot's property {} has type {}, the spec asks for {}; HubSpot cannot change a property's type",
            actual.name,
            actual.type_,
            spec.type_.as_str()
        ));
    }
    if spec.has_unique_value != actual.has_unique_value {
        return Plan::Conflict(format!(
            "HubSpot's property {} has hasUniqueValue {}, the spec asks for {}; HubSpot cannot change it once the property exists",
            actual.name, actual.has_unique_value, spec.has_unique_value
        ));
    }
    if drift.is_empty() { Plan::InSync } else { Plan::Update { drift, patch } }
}

/// How a visit of HubSpot ended.
#[derive(Clone, Debug, PartialEq)]
pub enum SyncOutcome {
    Created,
    /// An existing property was taken over; `updated` lists the fields repaired on the way.
    Adopted {
        updated: Vec<String>,
    },
    Updated(Vec<String>),
    InSync,
    /// Drift left alone (`ObserveOnly`).
    Drifted(Vec<String>),
    /// Missing and not created (`ObserveOnly`).
    NotFound,
    HubSpotDefined {
        drift: Vec<String>,
    },
    Conflict(String),
}

/// Everything a reconcile learned, for the status.
#[derive(Debug)]
pub enum SyncResult {
    IntegrationNotFound(String),
    TokenUnavailable(SecretError),
    /// A HubSpot call failed.
    Failed(hubspot::Error),
    Synced {
        outcome: SyncOutcome,
        hubspot_defined: bool,
    },
}

/// The status after a reconcile that ended in `result`, at `now`.
pub fn property_status(property: &HubSpotProperty, result: &SyncResult, now: Time) -> HubSpotPropertyStatus {
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
    let (ready, synced): ConditionParts = match result {
        SyncResult::IntegrationNotFound(message) => (
            (false, "IntegrationNotFound".into(), message.clone()),
            (None, "IntegrationNotFound".into(), message.clone()),
        ),
        SyncResult::TokenUnavailable(e) => {
            let message = format!("Cannot read the HubSpot token: {e}");
            ((false, e.reason().into(), message.clone()), (None, e.reason().into(), message))
        }
        SyncResult::Failed(e) => {
            let (reason, message) = hubspot_error_reason(e);
            status.last_error = Some(last_error(e, now.clone()));
            ((false, reason, message.clone()), (Some(false), FAILED.into(), message))
        }
        SyncResult::Synced { outcome, hubspot_defined } => {
            status.hubspot_defined = Some(*hubspot_defined);
            status.last_sync_time = Some(now.clone());
            status.drift = match outcome {
                SyncOutcome::Drifted(drift) | SyncOutcome::HubSpotDefined { drift } => drift.clone(),
                _ => vec![],
            };
            synced_conditions(name, outcome)
        }
    };
    // A condition's reason tells of its last transition: a property found in sync that was
    // already Synced (created, adopted, repaired or in sync before) keeps its conditions, so
    // that a visit that finds nothing new changes nothing.
    let in_sync = matches!(result, SyncResult::Synced { outcome: SyncOutcome::InSync, .. });
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

fn synced_conditions(name: &str, outcome: &SyncOutcome) -> ConditionParts {
    let ready = |reason: &str, message: String| {
        ((true, reason.to_string(), message.clone()), (Some(true), reason.to_string(), message))
    };
    let not_ready = |reason: &str, message: String| {
        ((false, reason.to_string(), message.clone()), (Some(false), reason.to_string(), message))
    };
    match outcome {
        SyncOutcome::Created => ready(CREATED, format!("Created property {name} in HubSpot")),
        SyncOutcome::Adopted { updated } if updated.is_empty() => {
            ready(ADOPTED, format!("Adopted the existing property {name}"))
        }
        SyncOutcome::Adopted { updated } => {
            ready(ADOPTED, format!("Adopted the existing property {name} and updated {}", updated.join(", ")))
        }
        SyncOutcome::Updated(fields) => {
            ready(UPDATED, format!("Repaired drift of property {name}: {}", fields.join(", ")))
        }
        SyncOutcome::InSync => ready(IN_SYNC, format!("Property {name} matches the spec")),
        SyncOutcome::Drifted(fields) => (
            (true, "Observed".into(), format!("Observing property {name} (ObserveOnly); nothing is written")),
            (
                Some(false),
                DRIFTED.into(),
                format!("Property {name} differs from the spec in: {} (ObserveOnly: left as is)", fields.join(", ")),
            ),
        ),
        SyncOutcome::NotFound => not_ready(
            NOT_FOUND,
            format!("Property {name} does not exist in HubSpot and ObserveOnly does not create it"),
        ),
        SyncOutcome::HubSpotDefined { drift } => {
            let mut message = format!("Property {name} is defined by HubSpot and is never modified");
            if !drift.is_empty() {
                message.push_str(&format!("; it differs from the spec in: {}", drift.join(", ")));
            }
            not_ready(HUBSPOT_DEFINED, message)
        }
        SyncOutcome::Conflict(message) => not_ready(CONFLICT, message.clone()),
    }
}

fn last_error(error: &hubspot::Error, now: Time) -> LastError {
    let correlation_id = match error {
        hubspot::Error::Api(e) => Some(e.correlation_id.clone()),
        hubspot::Error::DailyLimitExhausted { correlation_id } => Some(correlation_id.clone()),
        _ => None,
    }
    .filter(|id| !id.is_empty());
    LastError { message: hubspot_error_reason(error).1, correlation_id, time: Some(now) }
}

/// The property controller: reconciles on changes of properties and of the integrations they
/// reference (see [`integration_changes`](super::watches::integration_changes)).
pub fn controller(client: Client, namespace: Option<&str>) -> Controller<HubSpotProperty> {
    let controller =
        Controller::new(scoped_api::<HubSpotProperty>(client.clone(), namespace), watcher::Config::default());
    let properties = controller.store();
    controller.watches_stream(integration_changes(client, namespace), move |i| objects_of(&properties, &i))
}

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

    fn last(&self, property: &HubSpotProperty) -> Option<Timestamp> {
        self.last.lock().expect("property reads lock").get(&object_key(property)).copied()
    }

    fn record(&self, property: &HubSpotProperty, at: Timestamp) {
        self.last.lock().expect("property reads lock").insert(object_key(property), at);
        self.gauge.get_or_create(&ObjectLabels::of(property)).set(at.as_millisecond() as f64 / 1000.0);
    }

    fn forget(&self, property: &HubSpotProperty) {
        self.last.lock().expect("property reads lock").remove(&object_key(property));
        self.gauge.remove(&ObjectLabels::of(property));
    }
}

/// One reconcile of `property`: the finalizer first, then sync or cleanup.
pub async fn reconcile(property: Arc<HubSpotProperty>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = property.namespace().ok_or_else(|| Error::MissingObjectKey(property.name_any(), "namespace"))?;
    let api = Api::<HubSpotProperty>::namespaced(ctx.client.clone(), &namespace);
    if is_paused(property.as_ref()) {
        // Neither HubSpot nor the finalizer is touched, also when the object is being deleted.
        let mut status = property.status.clone().unwrap_or_default();
        if mark_paused(&mut status.conditions, SYNCED, property.metadata.generation) {
            patch_status(&api, &property.name_any(), property.status.as_ref(), &status).await?;
        }
        ctx.succeeded(property.as_ref());
        return Ok(Action::await_change());
    }
    let action = finalizer(&api, FINALIZER, property.clone(), |event| async {
        match event {
            Finalizer::Apply(property) => sync(&property, &api, &ctx).await,
            Finalizer::Cleanup(property) => cleanup(&property, &api, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))?;
    ctx.succeeded(property.as_ref());
    Ok(action)
}

/// A HubSpot client for the property's integration and the integration's catalogue of the
/// property's object type, or why there are none.
async fn hubspot_client(
    property: &HubSpotProperty,
    ctx: &Context,
) -> Result<Result<(HubSpotClient, Arc<PropertyCatalogue>), SyncResult>, Error> {
    let namespace = property.namespace().unwrap_or_default();
    let integration_name = &property.spec.integration_ref.name;
    let Some(integration) = ctx.integrations.get(&namespace, integration_name).await? else {
        return Ok(Err(SyncResult::IntegrationNotFound(format!(
            "HubSpotIntegration {integration_name:?} not found in namespace {namespace:?}"
        ))));
    };
    Ok(match ctx.integrations.token(&ctx.client, &integration).await? {
        Ok(token) => Ok((
            ctx.hubspot_client(&integration, token),
            ctx.property_catalogue(&integration, &property.spec.object_type),
        )),
        Err(e) => Err(SyncResult::TokenUnavailable(e)),
    })
}

async fn sync(property: &HubSpotProperty, api: &Api<HubSpotProperty>, ctx: &Context) -> Result<Action, Error> {
    let now = Timestamp::now();
    if let Some(wait) = drift_check_wait(property, ctx.property_reads.last(property), now, ctx.drift_interval) {
        return Ok(Action::requeue(wait));
    }
    let mut changes = Vec::new();
    let result = match hubspot_client(property, ctx).await? {
        Err(unavailable) => unavailable,
        Ok((hubspot, catalogue)) => {
            let result = sync_with_hubspot(property, &hubspot, &mut changes).await;
            // Before the status write that tells the mappings waiting for this property.
            if let SyncResult::Synced { outcome, .. } = &result {
                catalogue.record(&property.spec.name, *outcome != SyncOutcome::NotFound).await;
            }
            result
        }
    };
    publish(ctx, property, &changes).await;
    let status = property_status(property, &result, Time(now));
    if !only_heartbeat_changed(property.status.as_ref(), &status) {
        patch_status(api, &property.name_any(), property.status.as_ref(), &status).await?;
    }
    if matches!(result, SyncResult::Synced { .. } | SyncResult::Failed(_)) {
        ctx.property_reads.record(property, now);
    }
    let ready = model::api::conditions::is_true(&status.conditions, READY);
    tracing::info!(property = %format!("{}/{}", property.namespace().unwrap_or_default(), property.name_any()), ready, "reconciled HubSpotProperty");
    Ok(Action::requeue(if ready { ctx.drift_interval } else { UNHEALTHY_REQUEUE }))
}

/// Reads HubSpot's property and acts on the [`plan`] as the management policy allows.
async fn sync_with_hubspot(
    property: &HubSpotProperty,
    hubspot: &HubSpotClient,
    changes: &mut Vec<Change>,
) -> SyncResult {
    let spec = &property.spec;
    let existing = match hubspot.get_property(&spec.object_type, &spec.name).await {
        Ok(existing) => existing,
        Err(e) => return SyncResult::Failed(e),
    };
    let hubspot_defined = existing.as_ref().and_then(|p| p.hubspot_defined).unwrap_or(false);
    // Never read successfully before: a property found now existed before this resource.
    let first_visit = property.status.as_ref().and_then(|s| s.last_sync_time.as_ref()).is_none();
    let observe_only = spec.management_policy == ManagementPolicy::ObserveOnly;
    let outcome = match plan(spec, existing.as_ref()) {
        Plan::Create(_) if observe_only => SyncOutcome::NotFound,
        Plan::Create(create) => {
            if let Err(e) = ensure_group(spec, hubspot, changes).await {
                return SyncResult::Failed(e);
            }
            if let Err(e) = hubspot.create_property(&spec.object_type, &create).await {
                return SyncResult::Failed(e);
            }
            changes.push(Change::normal(
                "PropertyCreated",
                format!("Created HubSpot property {} on {}", spec.name, spec.object_type),
            ));
            SyncOutcome::Created
        }
        Plan::Update { drift, .. } if observe_only => SyncOutcome::Drifted(drift),
        Plan::Update { drift, patch } => {
            if patch.group_name.is_some()
                && let Err(e) = ensure_group(spec, hubspot, changes).await
            {
                return SyncResult::Failed(e);
            }
            if let Err(e) = hubspot.update_property(&spec.object_type, &spec.name, &patch).await {
                return SyncResult::Failed(e);
            }
            changes.push(Change::normal(
                "PropertyUpdated",
                format!("Updated HubSpot property {} on {}: {}", spec.name, spec.object_type, drift.join(", ")),
            ));
            if first_visit { SyncOutcome::Adopted { updated: drift } } else { SyncOutcome::Updated(drift) }
        }
        Plan::InSync if first_visit => SyncOutcome::Adopted { updated: vec![] },
        Plan::InSync => SyncOutcome::InSync,
        Plan::Conflict(message) => SyncOutcome::Conflict(message),
        Plan::HubSpotDefined { drift } => SyncOutcome::HubSpotDefined { drift },
    };
    SyncResult::Synced { outcome, hubspot_defined }
}

/// Creates the spec's property group when HubSpot does not have it.
async fn ensure_group(
    spec: &HubSpotPropertySpec,
    hubspot: &HubSpotClient,
    changes: &mut Vec<Change>,
) -> Result<(), hubspot::Error> {
    let Some(group) = &spec.group else { return Ok(()) };
    let groups = hubspot.list_property_groups(&spec.object_type).await?;
    if groups.iter().any(|g| g.name == group.name) {
        return Ok(());
    }
    let create = PropertyGroup { name: group.name.clone(), label: group.label.clone(), display_order: None };
    hubspot.create_property_group(&spec.object_type, &create).await?;
    changes.push(Change::normal(
        "PropertyGroupCreated",
        format!("Created HubSpot property group {} on {}", group.name, spec.object_type),
    ));
    Ok(())
}

/// On deletion: archives the property when the policies allow it; the finalizer is dropped
/// (by the caller) only when this succeeds. A property HubSpot no longer has counts as archived.
async fn cleanup(property: &HubSpotProperty, api: &Api<HubSpotProperty>, ctx: &Context) -> Result<Action, Error> {
    // A property being deleted is not checked for drift any more, whatever its policies.
    ctx.property_reads.forget(property);
    let spec = &property.spec;
    let hubspot_defined = property.status.as_ref().and_then(|s| s.hubspot_defined).unwrap_or(false);
    if spec.deletion_policy == DeletionPolicy::Orphan
        || spec.management_policy == ManagementPolicy::ObserveOnly
        || hubspot_defined
    {
        return Ok(Action::await_change());
    }
    let failure = match hubspot_client(property, ctx).await? {
        Err(unavailable) => unavailable,
        Ok((hubspot, catalogue)) => match hubspot.archive_property(&spec.object_type, &spec.name).await {
            Ok(()) => {
                catalogue.record(&spec.name, false).await;
                let change = Change::normal(
                    "PropertyArchived",
                    format!("Archived HubSpot property {} on {}", spec.name, spec.object_type),
                );
                publish(ctx, property, &[change]).await;
                return Ok(Action::await_change());
            }
            Err(e) if e.status() == Some(404) => {
                catalogue.record(&spec.name, false).await;
                return Ok(Action::await_change());
            }
            Err(e) => SyncResult::Failed(e),
        },
    };
    // Keep the finalizer, and say why in the status.
    let status = property_status(property, &failure, Time(Timestamp::now()));
    patch_status(api, &property.name_any(), property.status.as_ref(), &status).await?;
    let message = status.conditions.iter().find(|c| c.type_ == READY).map(|c| c.message.clone()).unwrap_or_default();
    Err(Error::Cleanup(message))
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::fixtures::*;
    use crate::mapping;
    use hubspot::models::PropertyOption;
    use model::api::property::FieldType;

    const PROPERTY: &str = "/apis/hubspot.io/v1alpha1/namespaces/default/hubspotproperties/loyalty-tier";
    const STATUS: &str = "/apis/hubspot.io/v1alpha1/namespaces/default/hubspotproperties/loyalty-tier/status";
    const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/default/events";
    const TOKEN_SECRET: &str = "/api/v1/namespaces/default/secrets/hubspot";
    const TOKEN: &str = "pat-na1-11111111-2222-3333-4444-555555555555";
    const SCOPES: &[&str] = &["crm.schemas.contacts.read", "crm.schemas.contacts.write"];
    const HUBSPOT_PROPERTY: &str = "/crm/v3/properties/contacts/loyalty_tier";

    /// HubSpot's property exactly as `property_spec()` declares it.
    fn hubspot_property() -> Property {
        Property {
            name: "loyalty_tier".into(),
            label: "Loyalty tier".into(),
            type_: "enumeration".into(),
            field_type: "select".into(),
            group_name: "loyalty".into(),
            description: "Tier in the loyalty programme".into(),
            has_unique_value: false,
            hubspot_defined: None,
            options: vec![
                PropertyOption { label: "Gold".into(), value: "gold".into(), display_order: 0, hidden: false },
                PropertyOption { label: "Silver".into(), value: "silver".into(), display_order: 1, hidden: false },
            ],
            hidden: false,
            form_field: true,
            display_order: -1,
        }
    }

    // ------------------------------------------------------------ pure plan

    #[test]
    fn missing_property_is_created_with_every_declared_field() {
        let Plan::Create(create) = plan(&property_spec(), None) else { panic!("expected a create") };
        assert_eq!(
            serde_json::to_value(&create).unwrap(),
            json!({
                "name": "loyalty_tier", "label": "Loyalty tier", "type": "enumeration", "fieldType": "select",
                "groupName": "loyalty", "description": "Tier in the loyalty programme", "formField": true,
                "options": [
                    {"label": "Gold", "value": "gold", "displayOrder": 0, "hidden": false},
                    {"label": "Silver", "value": "silver", "displayOrder": 1, "hidden": false}
                ]
            })
        );
    }

    #[test]
    fn matching_property_is_in_sync() {
        assert_eq!(plan(&property_spec(), Some(&hubspot_property())), Plan::InSync);
    }

    #[test]
    fn unset_optional_fields_are_hubspots_to_decide() {
        let mut spec = property_spec();
        (spec.description, spec.form_field) = (None, None);
        let mut actual = hubspot_property();
        (actual.description, actual.form_field, actual.hidden) = ("Edited in HubSpot".into(), false, true);
        assert_eq!(plan(&spec, Some(&actual)), Plan::InSync);
    }

    #[test]
    fn drift_in_label_description_and_options_patches_exactly_those() {
        let mut actual = hubspot_property();
        actual.label = "Tier".into();
        actual.description = "old".into();
        actual.options.pop();
        let Plan::Update { drift, patch } = plan(&property_spec(), Some(&actual)) else { panic!("expected an update") };
        assert_eq!(drift, ["label", "description", "options"]);
        // The whole option list is sent: HubSpot replaces it.
        assert_eq!(
            serde_json::to_value(&patch).unwrap(),
            json!({
                "label": "Loyalty tier", "description": "Tier in the loyalty programme",
                "options": [
                    {"label": "Gold", "value": "gold", "displayOrder": 0, "hidden": false},
                    {"label": "Silver", "value": "silver", "displayOrder": 1, "hidden": false}
                ]
            })
        );
    }

    #[test]
    fn type_and_uniqueness_changes_are_conflicts() {
        let mut actual = hubspot_property();
        actual.type_ = "string".into();
        let Plan::Conflict(message) = plan(&property_spec(), Some(&actual)) else { panic!("expected a conflict") };
        assert!(message.contains("has type string, the spec asks for enumeration"), "{message}");
        let mut actual = hubspot_property();
        actual.has_unique_value = true;
        let Plan::Conflict(message) = plan(&property_spec(), Some(&actual)) else { panic!("expected a conflict") };
        assert!(message.contains("hasUniqueValue true, the spec asks for false"), "{message}");
    }

    #[test]
    fn hubspot_defined_property_is_never_changed() {
        let mut actual = hubspot_property();
        actual.hubspot_defined = Some(true);
        assert_eq!(plan(&property_spec(), Some(&actual)), Plan::HubSpotDefined { drift: vec![] });
        actual.label = "Tier".into();
        actual.type_ = "string".into();
        assert_eq!(plan(&property_spec(), Some(&actual)), Plan::HubSpotDefined { drift: vec!["label".into()] });
    }

    #[test]
    fn failed_call_keeps_hubspots_correlation_id_in_the_status() {
        let property = HubSpotProperty::new("loyalty-tier", property_spec());
        let error = hubspot::Error::Api(hubspot::ApiError::from_body(
            400,
            br#"{"status":"error","message":"Property group loyalty does not exist.","correlationId":"c-42","category":"VALIDATION_ERROR"}"#,
        ));
        let status = property_status(&property, &SyncResult::Failed(error), Time(Timestamp::UNIX_EPOCH));
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

    // ------------------------------------------------------------ CRD rules (client-side CEL)

    fn object(edit: impl FnOnce(&mut HubSpotPropertySpec)) -> HubSpotProperty {
        let mut spec = property_spec();
        edit(&mut spec);
        HubSpotProperty::new("loyalty-tier", spec)
    }

    fn cel_errors(object: &HubSpotProperty, old: Option<&HubSpotProperty>) -> String {
        let outcome = match old {
            None => kube::core::cel::validate_cel(object),
            Some(old) => kube::core::cel::validate_cel_update(object, old),
        };
        outcome.err().map(|e| format!("{e:?}")).unwrap_or_default()
    }

    #[test]
    fn cel_accepts_valid_type_field_type_pairs() {
        let pairs = [
            (PropertyType::Bool, FieldType::Booleancheckbox),
            (PropertyType::Enumeration, FieldType::Radio),
            (PropertyType::Date, FieldType::Date),
            (PropertyType::Datetime, FieldType::Date),
            (PropertyType::String, FieldType::Textarea),
            (PropertyType::Number, FieldType::Number),
            (PropertyType::PhoneNumber, FieldType::Phonenumber),
        ];
        for (type_, field_type) in pairs {
            let o = object(|s| (s.type_, s.field_type) = (type_, field_type));
            assert_eq!(cel_errors(&o, None), "", "{type_:?}/{field_type:?}");
        }
    }

    #[test]
    fn cel_refuses_invalid_pairs_enumerations_without_options_and_bad_names() {
        let o = object(|s| (s.type_, s.field_type) = (PropertyType::Number, FieldType::Text));
        assert!(cel_errors(&o, None).contains("fieldType is not valid for this type"));
        let o = object(|s| s.options.clear());
        assert!(cel_errors(&o, None).contains("a property of type enumeration needs options"));
        let o = object(|s| s.name = "Loyalty Tier".into());
        assert!(cel_errors(&o, None).contains("name must start with a lowercase letter"));
        let o = object(|s| s.group.as_mut().unwrap().name = "other".into());
        assert!(cel_errors(&o, None).contains("group.name must equal groupName"));
    }

    #[test]
    fn cel_keeps_name_and_uniqueness_immutable() {
        let old = object(|_| {});
        assert_eq!(cel_errors(&object(|s| s.label = "Tier".into()), Some(&old)), "");
        assert!(cel_errors(&object(|s| s.name = "tier".into()), Some(&old)).contains("name is immutable"));
        assert!(cel_errors(&object(|s| s.has_unique_value = true), Some(&old)).contains("hasUniqueValue is immutable"));
    }

    // ------------------------------------------------------------ reconciler scenarios

    /// The resource as seen after an earlier successful sync.
    fn synced_before(mut p: HubSpotProperty) -> HubSpotProperty {
        p.status = Some(HubSpotPropertyStatus {
            last_sync_time: Some(Time(Timestamp::UNIX_EPOCH)),
            hubspot_defined: Some(false),
            ..Default::default()
        });
        p
    }

    fn deleting(mut p: HubSpotProperty, policy: DeletionPolicy) -> HubSpotProperty {
        p.spec.deletion_policy = policy;
        p.metadata.deletion_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
        p
    }

    /// Gives the emulator `spec`'s group and property as `edit` changes it, then forgets those calls.
    async fn seed(hubspot: &emulator::RunningEmulator, edit: impl FnOnce(&mut PropertyCreate)) {
        let client = emulator_client(hubspot, TOKEN);
        let group = PropertyGroup { name: "loyalty".into(), label: "Loyalty".into(), display_order: None };
        client.create_property_group("contacts", &group).await.unwrap();
        let mut create = desired_create(&property_spec());
        edit(&mut create);
        client.create_property("contacts", &create).await.unwrap();
        reqwest::Client::new().delete(format!("{}/_emulator/requests", hubspot.base_url())).send().await.unwrap();
    }

    /// `(method, path, status)` of each HubSpot API call the emulator received, and the bodies.
    async fn hubspot_calls(hubspot: &emulator::RunningEmulator) -> (Vec<(String, String, u64)>, Vec<Value>) {
        let log: Vec<Value> = reqwest::Client::new()
            .get(format!("{}/_emulator/requests", hubspot.base_url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let calls = log
            .iter()
            .map(|r| {
                (
                    r["method"].as_str().unwrap().into(),
                    r["path"].as_str().unwrap().into(),
                    r["status"].as_u64().unwrap(),
                )
            })
            .collect();
        (calls, log.iter().map(|r| r["body"].clone()).collect())
    }

    fn calls(expected: &[(&str, &str, u64)]) -> Vec<(String, String, u64)> {
        expected.iter().map(|(m, p, s)| (m.to_string(), p.to_string(), *s)).collect()
    }

    /// The token Secret read, once per integration while the cached token is fresh.
    async fn token_read(api: &mut ApiServer) {
        api.get(TOKEN_SECRET, Some(hubspot_secret(&[("token", TOKEN)]))).await;
    }

    #[tokio::test]
    async fn first_visit_only_adds_the_finalizer() {
        let hubspot = hubspot(&[(TOKEN, SCOPES)]).await;
        let mut property = property_resource(property_spec());
        property.metadata.finalizers = None;
        let (ctx, api) = test_context();
        let object = to_json(&property);
        let action = run_scenario(api, reconcile(Arc::new(property), ctx), |mut api| async move {
            let patch = api.json_patch(PROPERTY, object).await;
            assert_eq!(
                patch,
                json!([
                    {"op": "test", "path": "/metadata/finalizers", "value": null},
                    {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]}
                ])
            );
            api
        })
        .await
        .expect("reconcile succeeds");
        assert_eq!(action, Action::await_change());
        assert_eq!(hubspot_calls(&hubspot).await.0, calls(&[]));
    }

    #[tokio::test]
    async fn missing_property_and_group_are_created_with_events() {
        let hubspot = hubspot(&[(TOKEN, SCOPES)]).await;
        let property = property_resource(property_spec());
        let integration = to_json(&integration(&hubspot.base_url(), &[]));
        let (ctx, api) = test_context();
        given_integrations(&ctx, [integration.clone()]);
        let object = to_json(&property);
        let action = run_scenario(api, reconcile(Arc::new(property), ctx), |mut api| async move {
            token_read(&mut api).await;
            let event = api.create(EVENTS).await;
            assert_eq!(
                (event["reason"].as_str(), event["type"].as_str()),
                (Some("PropertyGroupCreated"), Some("Normal"))
            );
            let event = api.create(EVENTS).await;
            assert_eq!(event["reason"], "PropertyCreated");
            assert_eq!(event["note"], "Created HubSpot property loyalty_tier on contacts");
            assert_eq!(event["regarding"]["name"], "loyalty-tier");
            let patch = api.merge_status(STATUS, object).await;
            assert_eq!(condition_state(&patch, "Synced"), ("True".into(), "Created".into()));
            assert_eq!(condition_state(&patch, "Ready"), ("True".into(), "Created".into()));
            assert_eq!(patch["status"]["observedGeneration"], 2);
            assert_eq!(patch["status"]["hubspotDefined"], false);
            assert!(patch["status"]["lastSyncTime"].is_string());
            api
        })
        .await
        .expect("reconcile succeeds");
        assert_eq!(action, Action::requeue(DRIFT_CHECK_INTERVAL));
        let (log, bodies) = hubspot_calls(&hubspot).await;
        assert_eq!(
            log,
            calls(&[
                ("GET", HUBSPOT_PROPERTY, 404),
                ("GET", "/crm/v3/properties/contacts/groups", 200),
                ("POST", "/crm/v3/properties/contacts/groups", 201),
                ("POST", "/crm/v3/properties/contacts", 201),
            ])
        );
        assert_eq!(bodies[2], json!({"name": "loyalty", "label": "Loyalty"}));
        assert_eq!(bodies[3], serde_json::to_value(desired_create(&property_spec())).unwrap());
    }

    #[tokio::test]
    async fn a_mapping_waiting_for_a_created_property_finds_it_without_listing_again() {
        const MAPPING_STATUS: &str = "/apis/hubspot.io/v1alpha1/namespaces/default/propertymappings/contacts/status";
        const LIST: &str = "/crm/v3/properties/contacts";
        let hubspot = hubspot(&[(TOKEN, SCOPES)]).await;
        let integration = to_json(&integration(&hubspot.base_url(), &[]));
        let waiting = mapping("crm", &["loyalty_tier"]);
        let mut found_missing = waiting.clone();
        let listed = Arc::new(["email"].map(String::from).into_iter().collect());
        found_missing.status = Some(crate::status::mapping_status(
            &waiting,
            &crate::status::PropertyLookup::Listed(listed),
            &crate::receiver_reports::ReceiverReports::not_available(),
        ));
        let property = property_resource(property_spec());
        let objects = [to_json(&waiting), to_json(&property), to_json(&found_missing)];
        let (ctx, api) = test_context();
        given_integrations(&ctx, [integration.clone()]);
        let visits = async move {
            mapping::reconcile(Arc::new(waiting), ctx.clone()).await?;
            reconcile(Arc::new(property), ctx.clone()).await?;
            mapping::reconcile(Arc::new(found_missing), ctx).await
        };
        let action = run_scenario(api, visits, |mut api| async move {
            let [waiting, property, found_missing] = objects;
            token_read(&mut api).await;
            api.event("Warning", "PropertiesMissing").await;
            let patch = api.merge_status(MAPPING_STATUS, waiting).await;
            assert_eq!(patch["status"]["missingProperties"], json!(["loyalty_tier"]));
            api.event("Normal", "PropertyGroupCreated").await;
            api.event("Normal", "PropertyCreated").await;
            api.merge_status(STATUS, property).await;
            api.event("Normal", "Ready").await;
            api.event("Normal", "PropertiesExist").await;
            let patch = api.merge_status(MAPPING_STATUS, found_missing).await;
            assert_eq!(condition_state(&patch, "Ready").0, "True");
            assert_eq!(patch["status"]["missingProperties"], Value::Null);
            api
        })
        .await
        .expect("reconciles succeed");
        assert_eq!(action, Action::requeue(crate::SYNC_REFRESH));
        assert_eq!(
            hubspot_calls(&hubspot).await.0,
            calls(&[
                ("GET", LIST, 200),
                ("GET", HUBSPOT_PROPERTY, 404),
                ("GET", "/crm/v3/properties/contacts/groups", 200),
                ("POST", "/crm/v3/properties/contacts/groups", 201),
                ("POST", "/crm/v3/properties/contacts", 201),
            ]),
            "the created property is in the catalogue: no second listing"
        );
    }

    #[tokio::test]
    async fn steady_state_reads_once_and_writes_nothing() {
        let hubspot = hubspot(&[(TOKEN, SCOPES)]).await;
        seed(&hubspot, |_| {}).await;
        let property = synced_before(property_resource(property_spec()));
        let integration = to_json(&integration(&hubspot.base_url(), &[]));
        let (ctx, api) = test_context();
        given_integrations(&ctx, [integration.clone()]);
        let object = to_json(&property);
        let action = run_scenario(api, reconcile(Arc::new(property), ctx), |mut api| async move {
            token_read(&mut api).await;
            let patch = api.merge_status(STATUS, object).await;
            assert_eq!(condition_state(&patch, "Synced"), ("True".into(), "InSync".into()));
            assert_eq!(condition_state(&patch, "Ready"), ("True".into(), "InSync".into()));
            api
        })
        .await
        .expect("reconcile succeeds");
        assert_eq!(action, Action::requeue(DRIFT_CHECK_INTERVAL));
        assert_eq!(hubspot_calls(&hubspot).await.0, calls(&[("GET", HUBSPOT_PROPERTY, 200)]));
    }

    /// A visit that finds HubSpot as the status already says reads HubSpot and writes nothing:
    /// the time of the visit goes to a metric, not to the object.
    #[tokio::test]
    async fn an_unchanged_property_is_read_each_interval_without_a_status_write() {
        let hubspot = hubspot(&[(TOKEN, SCOPES)]).await;
        seed(&hubspot, |_| {}).await;
        let mut property = property_resource(property_spec());
        let in_sync = SyncResult::Synced { outcome: SyncOutcome::InSync, hubspot_defined: false };
        property.status = Some(property_status(&property, &in_sync, Time(Timestamp::UNIX_EPOCH)));
        let integration = to_json(&integration(&hubspot.base_url(), &[]));
        let (mut ctx, api) = test_context();
        Arc::get_mut(&mut ctx).unwrap().drift_interval = Duration::from_secs(60);
        given_integrations(&ctx, [integration.clone()]);
        let heartbeats = ctx.metrics.property_last_sync.clone();
        let action = run_scenario(api, reconcile(Arc::new(property), ctx), |mut api| async move {
            token_read(&mut api).await;
            api
        })
        .await
        .expect("reconcile succeeds");
        assert_eq!(action, Action::requeue(Duration::from_secs(60)));
        assert_eq!(hubspot_calls(&hubspot).await.0, calls(&[("GET", HUBSPOT_PROPERTY, 200)]));
        let labels = crate::ObjectLabels { namespace: NAMESPACE.into(), name: "loyalty-tier".into() };
        let at = heartbeats.get_or_create(&labels).get();
        assert!((Timestamp::now().as_second() as f64 - at).abs() < 60.0, "heartbeat at {at}");
    }

    #[test]
    fn only_the_time_of_a_visit_is_a_heartbeat() {
        let property = property_resource(property_spec());
        let in_sync = SyncResult::Synced { outcome: SyncOutcome::InSync, hubspot_defined: false };
        let then = property_status(&property, &in_sync, Time(Timestamp::UNIX_EPOCH));
        assert!(!only_heartbeat_changed(None, &then), "a first status is written");
        let mut visited = property.clone();
        visited.status = Some(then.clone());
        let now = property_status(&visited, &in_sync, Time(Timestamp::now()));
        assert_ne!(now.last_sync_time, then.last_sync_time);
        assert!(only_heartbeat_changed(Some(&then), &now));
        let drifted =
            SyncResult::Synced { outcome: SyncOutcome::Drifted(vec!["label".into()]), hubspot_defined: false };
        assert!(!only_heartbeat_changed(Some(&then), &property_status(&visited, &drifted, Time(Timestamp::now()))));
        // A property created on the last visit and found in sync on this one keeps its
        // conditions: their reason tells of the last transition.
        let created = SyncResult::Synced { outcome: SyncOutcome::Created, hubspot_defined: false };
        visited.status = Some(property_status(&property, &created, Time(Timestamp::UNIX_EPOCH)));
        let found = property_status(&visited, &in_sync, Time(Timestamp::now()));
        assert!(only_heartbeat_changed(visited.status.as_ref(), &found));
        assert_eq!(model::api::conditions::find(&found.conditions, SYNCED).unwrap().reason, CREATED);
    }

    #[tokio::test]
    async fn drift_is_repaired_with_one_patch() {
        let hubspot = hubspot(&[(TOKEN, SCOPES)]).await;
        seed(&hubspot, |p| {
            p.label = "Tier".into();
            p.options.truncate(1);
        })
        .await;
        let property = synced_before(property_resource(property_spec()));
        let integration = to_json(&integration(&hubspot.base_url(), &[]));
        let (ctx, api) = test_context();
        given_integrations(&ctx, [integration.clone()]);
        let object = to_json(&property);
        run_scenario(api, reconcile(Arc::new(property), ctx), |mut api| async move {
            token_read(&mut api).await;
            let event = api.create(EVENTS).await;
            assert_eq!(event["reason"], "PropertyUpdated");
            assert_eq!(event["note"], "Updated HubSpot property loyalty_tier on contacts: label, options");
            let patch = api.merge_status(STATUS, object).await;
            assert_eq!(condition_state(&patch, "Synced"), ("True".into(), "Updated".into()));
            api
        })
        .await
        .expect("reconcile succeeds");
        let (log, bodies) = hubspot_calls(&hubspot).await;
        assert_eq!(log, calls(&[("GET", HUBSPOT_PROPERTY, 200), ("PATCH", HUBSPOT_PROPERTY, 200)]));
        assert_eq!(bodies[1]["label"], "Loyalty tier");
        assert_eq!(bodies[1]["options"].as_array().unwrap().len(), 2);
        let repaired =
            emulator_client(&hubspot, TOKEN).get_property("contacts", "loyalty_tier").await.unwrap().unwrap();
        assert_eq!(plan(&property_spec(), Some(&repaired)), Plan::InSync);
    }

    #[tokio::test]
    async fn existing_property_is_adopted_without_writes() {
        let hubspot = hubspot(&[(TOKEN, SCOPES)]).await;
        seed(&hubspot, |_| {}).await;
        let property = property_resource(property_spec());
        let integration = to_json(&integration(&hubspot.base_url(), &[]));
        let (ctx, api) = test_context();
        given_integrations(&ctx, [integration.clone()]);
        let object = to_json(&property);
        run_scenario(api, reconcile(Arc::new(property), ctx), |mut api| async move {
            token_read(&mut api).await;
            let patch = api.merge_status(STATUS, object).await;
            assert_eq!(condition_state(&patch, "Synced"), ("True".into(), "Adopted".into()));
            assert_eq!(
                crate::fixtures::condition(&patch, "Synced")["message"],
                "Adopted the existing property loyalty_tier"
            );
            api
        })
        .await
        .expect("reconcile succeeds");
        assert_eq!(hubspot_calls(&hubspot).await.0, calls(&[("GET", HUBSPOT_PROPERTY, 200)]));
    }

    #[tokio::test]
    async fn observe_only_reports_drift_and_writes_nothing() {
        let hubspot = hubspot(&[(TOKEN, SCOPES)]).await;
        seed(&hubspot, |p| p.label = "Tier".into()).await;
        let mut spec = property_spec();
        spec.management_policy = ManagementPolicy::ObserveOnly;
        let property = property_resource(spec);
        let integration = to_json(&integration(&hubspot.base_url(), &[]));
        let (ctx, api) = test_context();
        given_integrations(&ctx, [integration.clone()]);
        let object = to_json(&property);
        run_scenario(api, reconcile(Arc::new(property), ctx), |mut api| async move {
            token_read(&mut api).await;
            let patch = api.merge_status(STATUS, object).await;
            assert_eq!(condition_state(&patch, "Synced"), ("False".into(), "Drifted".into()));
            assert_eq!(condition_state(&patch, "Ready"), ("True".into(), "Observed".into()));
            assert_eq!(patch["status"]["drift"], json!(["label"]));
            api
        })
        .await
        .expect("reconcile succeeds");
        assert_eq!(hubspot_calls(&hubspot).await.0, calls(&[("GET", HUBSPOT_PROPERTY, 200)]));
    }

    #[tokio::test]
    async fn deletion_with_delete_policy_archives_then_drops_the_finalizer() {
        let hubspot = hubspot(&[(TOKEN, SCOPES)]).await;
        seed(&hubspot, |_| {}).await;
        let property = deleting(synced_before(property_resource(property_spec())), DeletionPolicy::Delete);
        let integration = to_json(&integration(&hubspot.base_url(), &[]));
        let (ctx, api) = test_context();
        given_integrations(&ctx, [integration.clone()]);
        let mut released = to_json(&property);
        released["metadata"]["finalizers"] = json!([]);
        let action = run_scenario(api, reconcile(Arc::new(property), ctx), |mut api| async move {
            token_read(&mut api).await;
            let event = api.create(EVENTS).await;
            assert_eq!(event["reason"], "PropertyArchived");
            let patch = api.json_patch(PROPERTY, released).await;
            assert_eq!(
                patch,
                json!([
                    {"op": "test", "path": "/metadata/finalizers/0", "value": FINALIZER},
                    {"op": "remove", "path": "/metadata/finalizers/0"}
                ])
            );
            api
        })
        .await
        .expect("reconcile succeeds");
        assert_eq!(action, Action::await_change());
        assert_eq!(hubspot_calls(&hubspot).await.0, calls(&[("DELETE", HUBSPOT_PROPERTY, 204)]));
        assert_eq!(emulator_client(&hubspot, TOKEN).get_property("contacts", "loyalty_tier").await.unwrap(), None);
    }

    #[tokio::test]
    async fn deletion_keeps_the_finalizer_while_hubspot_refuses() {
        let hubspot = hubspot(&[(TOKEN, &["crm.schemas.contacts.read"])]).await;
        let property = deleting(synced_before(property_resource(property_spec())), DeletionPolicy::Delete);
        let integration = to_json(&integration(&hubspot.base_url(), &[]));
        let (ctx, api) = test_context();
        given_integrations(&ctx, [integration.clone()]);
        let object = to_json(&property);
        let outcome = run_scenario(api, reconcile(Arc::new(property), ctx), |mut api| async move {
            token_read(&mut api).await;
            let patch = api.merge_status(STATUS, object).await;
            assert_eq!(condition_state(&patch, "Ready"), ("False".into(), "MISSING_SCOPES".into()));
            assert!(patch["status"]["lastError"]["correlationId"].is_string(), "{patch}");
            api
        })
        .await;
        assert!(matches!(outcome, Err(Error::Finalizer(_))), "{outcome:?}");
        assert_eq!(hubspot_calls(&hubspot).await.0, calls(&[("DELETE", HUBSPOT_PROPERTY, 403)]));
    }

    #[tokio::test]
    async fn deletion_with_orphan_policy_leaves_hubspot_alone() {
        let hubspot = hubspot(&[(TOKEN, SCOPES)]).await;
        seed(&hubspot, |_| {}).await;
        let property = deleting(synced_before(property_resource(property_spec())), DeletionPolicy::Orphan);
        let (ctx, api) = test_context();
        let mut released = to_json(&property);
        released["metadata"]["finalizers"] = json!([]);
        run_scenario(api, reconcile(Arc::new(property), ctx), |mut api| async move {
            api.json_patch(PROPERTY, released).await;
            api
        })
        .await
        .expect("reconcile succeeds");
        assert_eq!(hubspot_calls(&hubspot).await.0, calls(&[]));
        assert!(emulator_client(&hubspot, TOKEN).get_property("contacts", "loyalty_tier").await.unwrap().is_some());
    }

    #[tokio::test]
    async fn paused_property_keeps_its_finalizer_and_hubspot_untouched_even_when_deleted() {
        let hubspot = hubspot(&[(TOKEN, SCOPES)]).await;
        seed(&hubspot, |_| {}).await;
        let property = annotated(
            deleting(synced_before(property_resource(property_spec())), DeletionPolicy::Delete),
            "hubspot.io/paused",
            "true",
        );
        let (ctx, api) = test_context();
        let object = to_json(&property);
        let action = run_scenario(api, reconcile(Arc::new(property), ctx), |mut api| async move {
            // No integration or Secret read, no finalizer patch: only the status.
            let patch = api.merge_status(STATUS, object).await;
            assert_eq!(condition_state(&patch, "Synced"), ("Unknown".into(), "Paused".into()));
            api
        })
        .await
        .expect("reconcile succeeds");
        assert_eq!(action, Action::await_change());
        assert_eq!(hubspot_calls(&hubspot).await.0, calls(&[]));
        assert!(emulator_client(&hubspot, TOKEN).get_property("contacts", "loyalty_tier").await.unwrap().is_some());
    }

    /// The resource as seen right after a successful visit at `at` that handled `request`.
    fn fresh(at: Timestamp, request: Option<&str>) -> HubSpotProperty {
        let mut p = property_resource(property_spec());
        let ready = model::api::conditions::condition(READY, Some(true), IN_SYNC, "in sync", Some(2));
        p.status = Some(HubSpotPropertyStatus {
            conditions: vec![ready],
            observed_generation: Some(2),
            last_sync_time: Some(Time(at)),
            hubspot_defined: Some(false),
            last_handled_reconcile_at: request.map(String::from),
            ..Default::default()
        });
        p
    }

    #[test]
    fn hubspot_is_read_again_after_the_interval_a_spec_change_or_a_request() {
        let visit = Timestamp::from_second(1_800_000_000).unwrap();
        let later = |s: i64| visit.checked_add(k8s_openapi::jiff::SignedDuration::from_secs(s)).unwrap();
        assert_eq!(
            drift_check_wait(&fresh(visit, None), None, later(60), DRIFT_CHECK_INTERVAL),
            Some(DRIFT_CHECK_INTERVAL - Duration::from_secs(60))
        );
        assert_eq!(drift_check_wait(&fresh(visit, None), None, later(300), DRIFT_CHECK_INTERVAL), None);
        let mut edited = fresh(visit, None);
        edited.metadata.generation = Some(3);
        assert_eq!(drift_check_wait(&edited, None, later(60), DRIFT_CHECK_INTERVAL), None);
        let requested = annotated(fresh(visit, None), "hubspot.io/reconcile-requested-at", "now");
        assert_eq!(drift_check_wait(&requested, None, later(60), DRIFT_CHECK_INTERVAL), None);
        let handled = annotated(fresh(visit, Some("now")), "hubspot.io/reconcile-requested-at", "now");
        assert!(drift_check_wait(&handled, None, later(60), DRIFT_CHECK_INTERVAL).is_some());
        // A failed visit is retried sooner.
        let mut failed = fresh(visit, None);
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
            drift_check_wait(&fresh(visit, None), Some(later(300)), later(360), DRIFT_CHECK_INTERVAL),
            Some(DRIFT_CHECK_INTERVAL - Duration::from_secs(60))
        );
        assert_eq!(
            drift_check_wait(&fresh(later(300), None), Some(visit), later(360), DRIFT_CHECK_INTERVAL),
            Some(DRIFT_CHECK_INTERVAL - Duration::from_secs(60)),
            "an older memory does not hide a newer status"
        );
    }

    #[tokio::test]
    async fn a_fresh_status_makes_no_call_but_a_reconcile_request_checks_drift_at_once() {
        let hubspot = hubspot(&[(TOKEN, SCOPES)]).await;
        seed(&hubspot, |p| p.label = "Tier".into()).await;
        let (ctx, api) = test_context();
        let action =
            run_scenario(api, reconcile(Arc::new(fresh(Timestamp::now(), None)), ctx), |api| async move { api })
                .await
                .expect("reconcile succeeds");
        assert_ne!(action, Action::await_change(), "visited again when the drift check is due");
        assert_eq!(hubspot_calls(&hubspot).await.0, calls(&[]));

        let requested =
            annotated(fresh(Timestamp::now(), None), "hubspot.io/reconcile-requested-at", "2026-11-26T21:00:00Z");
        let integration = to_json(&integration(&hubspot.base_url(), &[]));
        let object = to_json(&requested);
        let (ctx, api) = test_context();
        given_integrations(&ctx, [integration.clone()]);
        run_scenario(api, reconcile(Arc::new(requested), ctx), |mut api| async move {
            token_read(&mut api).await;
            let event = api.create(EVENTS).await;
            assert_eq!(event["reason"], "PropertyUpdated");
            let patch = api.merge_status(STATUS, object).await;
            assert_eq!(condition_state(&patch, "Synced"), ("True".into(), "Updated".into()));
            assert_eq!(patch["status"]["lastHandledReconcileAt"], "2026-11-26T21:00:00Z");
            api
        })
        .await
        .expect("reconcile succeeds");
        assert_eq!(
            hubspot_calls(&hubspot).await.0,
            calls(&[("GET", HUBSPOT_PROPERTY, 200), ("PATCH", HUBSPOT_PROPERTY, 200)])
        );
    }
}
