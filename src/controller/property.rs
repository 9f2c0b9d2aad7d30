//! The `HubSpotProperty` reconciler: compares the spec with HubSpot's property (a pure
//! [`plan`]), creates, repairs or only reports per the management policy, and archives the
//! property on deletion when the deletion policy says so.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};

use super::secrets::SecretError;
use super::status::hubspot_error_reason;
use super::{Context, Error, FIELD_MANAGER, UNHEALTHY_REQUEUE, patch_status, read_secrets, scoped_api};
use crate::api::conditions::{condition, set_condition};
use crate::api::property::condition_types::{READY, SYNCED};
use crate::api::property::synced_reasons::*;
use crate::api::property::{DeletionPolicy, HubSpotPropertySpec, LastError, ManagementPolicy, PropertyType};
use crate::api::{HubSpotIntegration, HubSpotProperty, HubSpotPropertyStatus};
use crate::hubspot::models::{Property, PropertyCreate, PropertyGroup, PropertyOption, PropertyUpdate};
use crate::hubspot::{self, HubSpotClient};

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
    };
    let name = &property.spec.name;
    let (ready, synced): ((bool, String, String), (Option<bool>, String, String)) = match result {
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
    let (ok, reason, message) = ready;
    set_condition(&mut status.conditions, condition(READY, Some(ok), &reason, message, generation));
    let (ok, reason, message) = synced;
    set_condition(&mut status.conditions, condition(SYNCED, ok, &reason, message, generation));
    status
}

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

/// A change made in HubSpot, announced as a Kubernetes Event.
struct Change {
    reason: &'static str,
    note: String,
}

/// The property controller: reconciles on changes of properties and of the integrations they
/// reference.
pub fn controller(client: Client, namespace: Option<&str>) -> Controller<HubSpotProperty> {
    let controller =
        Controller::new(scoped_api::<HubSpotProperty>(client.clone(), namespace), watcher::Config::default());
    let properties = controller.store();
    controller.watches(
        scoped_api::<HubSpotIntegration>(client, namespace),
        watcher::Config::default(),
        move |integration| {
            let (namespace, name) = (integration.namespace(), integration.name_any());
            properties
                .state()
                .into_iter()
                .filter(|p| p.namespace() == namespace && p.spec.integration_ref.name == name)
                .map(|p| ObjectRef::from_obj(p.as_ref()))
                .collect::<Vec<_>>()
        },
    )
}

/// One reconcile of `property`: the finalizer first, then sync or cleanup.
pub async fn reconcile(property: Arc<HubSpotProperty>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = property.namespace().ok_or_else(|| Error::MissingObjectKey(property.name_any(), "namespace"))?;
    let api = Api::<HubSpotProperty>::namespaced(ctx.client.clone(), &namespace);
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

/// A HubSpot client for the property's integration, or why there is none.
async fn hubspot_client(property: &HubSpotProperty, ctx: &Context) -> Result<Result<HubSpotClient, SyncResult>, Error> {
    let namespace = property.namespace().unwrap_or_default();
    let integrations = Api::<HubSpotIntegration>::namespaced(ctx.client.clone(), &namespace);
    let integration_name = &property.spec.integration_ref.name;
    let Some(integration) = integrations.get_opt(integration_name).await? else {
        return Ok(Err(SyncResult::IntegrationNotFound(format!(
            "HubSpotIntegration {integration_name:?} not found in namespace {namespace:?}"
        ))));
    };
    let token_ref = &integration.spec.credentials.private_app_token;
    let secrets = read_secrets(&ctx.client, &namespace, std::slice::from_ref(&token_ref.name)).await?;
    Ok(match secrets.value(token_ref) {
        Ok(token) => Ok(ctx.hubspot_client(&integration, token)),
        Err(e) => Err(SyncResult::TokenUnavailable(e)),
    })
}

async fn sync(property: &HubSpotProperty, api: &Api<HubSpotProperty>, ctx: &Context) -> Result<Action, Error> {
    let mut changes = Vec::new();
    let result = match hubspot_client(property, ctx).await? {
        Err(unavailable) => unavailable,
        Ok(hubspot) => sync_with_hubspot(property, &hubspot, &mut changes).await,
    };
    publish(ctx, property, &changes).await;
    let status = property_status(property, &result, Time(Timestamp::now()));
    patch_status(api, &property.name_any(), property.status.as_ref(), &status).await?;
    let ready = crate::api::conditions::is_true(&status.conditions, READY);
    tracing::info!(property = %format!("{}/{}", property.namespace().unwrap_or_default(), property.name_any()), ready, "reconciled HubSpotProperty");
    Ok(Action::requeue(if ready { DRIFT_CHECK_INTERVAL } else { UNHEALTHY_REQUEUE }))
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
            changes.push(Change {
                reason: "PropertyCreated",
                note: format!("Created HubSpot property {} on {}", spec.name, spec.object_type),
            });
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
            changes.push(Change {
                reason: "PropertyUpdated",
                note: format!("Updated HubSpot property {} on {}: {}", spec.name, spec.object_type, drift.join(", ")),
            });
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
    changes.push(Change {
        reason: "PropertyGroupCreated",
        note: format!("Created HubSpot property group {} on {}", group.name, spec.object_type),
    });
    Ok(())
}

/// On deletion: archives the property when the policies allow it; the finalizer is dropped
/// (by the caller) only when this succeeds. A property HubSpot no longer has counts as archived.
async fn cleanup(property: &HubSpotProperty, api: &Api<HubSpotProperty>, ctx: &Context) -> Result<Action, Error> {
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
        Ok(hubspot) => match hubspot.archive_property(&spec.object_type, &spec.name).await {
            Ok(()) => {
                let change = Change {
                    reason: "PropertyArchived",
                    note: format!("Archived HubSpot property {} on {}", spec.name, spec.object_type),
                };
                publish(ctx, property, &[change]).await;
                return Ok(Action::await_change());
            }
            Err(e) if e.status() == Some(404) => return Ok(Action::await_change()),
            Err(e) => SyncResult::Failed(e),
        },
    };
    // Keep the finalizer, and say why in the status.
    let status = property_status(property, &failure, Time(Timestamp::now()));
    patch_status(api, &property.name_any(), property.status.as_ref(), &status).await?;
    let message = status.conditions.iter().find(|c| c.type_ == READY).map(|c| c.message.clone()).unwrap_or_default();
    Err(Error::Cleanup(message))
}

/// Announces each change as a Normal Event on the property. Events are informative: a
/// failure to publish one is logged, not retried.
async fn publish(ctx: &Context, property: &HubSpotProperty, changes: &[Change]) {
    if changes.is_empty() {
        return;
    }
    let recorder = Recorder::new(ctx.client.clone(), Reporter { controller: FIELD_MANAGER.into(), instance: None });
    let reference = property.object_ref(&());
    for change in changes {
        let event = KubeEvent {
            type_: EventType::Normal,
            reason: change.reason.into(),
            note: Some(change.note.clone()),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(e) = recorder.publish(&event, &reference).await {
            tracing::warn!(reason = change.reason, error = %e, "could not publish a Kubernetes Event");
        }
    }
}
