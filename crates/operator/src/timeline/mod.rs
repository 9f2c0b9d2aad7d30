//! `HubSpotTimelineEventType`: how HubSpot learns of an event type. Rendered (the default):
//! for an OAuth app, the app event's `*-hsmeta.json` in a ConfigMap for the user's HubSpot
//! project; for a private app, a custom event definition kept through
//! `/events/v3/event-definitions`. API (legacy public apps): the event template kept through
//! `/integrators/timeline/v3/{appId}/event-templates`.
//!
//! A visit goes dereference and validate (the integration, its kind of app, its secrets, in
//! `hubspot_side`) → build (pure, in `build`) → apply (ConfigMap, template or definition) →
//! status (pure, [`event_type_status`]), written only when it changed. With registration Api
//! and deletion policy Delete a finalizer keeps the resource until HubSpot deleted the template.

pub mod build;
mod hubspot_side;
#[cfg(test)]
mod scenarios;
mod status;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::{self, reflector};
use kube::runtime::watcher::{self, watcher};
use kube::{Client, ResourceExt};

use super::events::publish;
use super::kube_api::{patch_status, scoped_api};
use super::receiver_reports::ReceiverReports;
use super::status::mark_paused;
use super::watches::{changes_in, integration_changes, objects_of};
use super::{Context, Error, UNHEALTHY_REQUEUE};
use model::api::conditions::is_true;
use model::api::property::DeletionPolicy;
use model::api::timeline::Registration;
use model::api::timeline::condition_types::READY;
use model::api::{HubSpotTimelineEventType, is_paused};

pub use hubspot_side::{definition_drift, event_definition, keep_definition};
pub use status::{Change, Visit, event_type_status, occurrences};

/// Finalizer that keeps a `HubSpotTimelineEventType` until HubSpot deleted its template.
pub const FINALIZER: &str = "hubspot.io/timeline-event-type-cleanup";

/// The event type controller: reconciles on changes of the spec and annotations of event
/// types (not their status writes, which carry the receivers' ever-changing counts) and of the
/// integrations they reference; every `SYNC_REFRESH` while ready.
pub fn controller(client: Client, namespace: Option<&str>) -> Controller<HubSpotTimelineEventType> {
    let (store, writer) = reflector::store();
    let event_types = reflector(
        writer,
        watcher(scoped_api::<HubSpotTimelineEventType>(client.clone(), namespace), watcher::Config::default()),
    );
    let controller = Controller::for_stream(
        changes_in(event_types, |e: &HubSpotTimelineEventType| {
            (e.metadata.generation, e.metadata.annotations.clone(), e.metadata.deletion_timestamp.clone())
        }),
        store,
    );
    let of_integration = controller.store();
    controller.watches_stream(integration_changes(client, namespace), move |i| objects_of(&of_integration, &i))
}

/// Whether deleting `event_type` deletes HubSpot's template: a finalizer keeps it until then.
pub fn deleted_in_hubspot(event_type: &HubSpotTimelineEventType) -> bool {
    event_type.spec.registration == Registration::Api && event_type.spec.deletion_policy == DeletionPolicy::Delete
}

/// One reconcile of `event_type`.
pub async fn reconcile(event_type: Arc<HubSpotTimelineEventType>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace =
        event_type.namespace().ok_or_else(|| Error::MissingObjectKey(event_type.name_any(), "namespace"))?;
    let api = Api::<HubSpotTimelineEventType>::namespaced(ctx.client.clone(), &namespace);
    if is_paused(event_type.as_ref()) {
        let mut status = event_type.status.clone().unwrap_or_default();
        if mark_paused(&mut status.conditions, READY, event_type.metadata.generation) {
            patch_status(&api, &event_type.name_any(), event_type.status.as_ref(), &status).await?;
        }
        ctx.succeeded(event_type.as_ref());
        return Ok(Action::await_change());
    }
    let has_finalizer = event_type.finalizers().iter().any(|f| f == FINALIZER);
    let action = if deleted_in_hubspot(&event_type) || has_finalizer {
        finalizer(&api, FINALIZER, event_type.clone(), |event| async {
            match event {
                Finalizer::Apply(event_type) => sync(&event_type, &api, &ctx).await,
                Finalizer::Cleanup(event_type) => cleanup(&event_type, &api, &ctx).await,
            }
        })
        .await
        .map_err(|e| Error::Finalizer(Box::new(e)))?
    } else if event_type.metadata.deletion_timestamp.is_some() {
        // Orphan (or rendered): nothing of HubSpot's is touched; Kubernetes removes the object.
        Action::await_change()
    } else {
        sync(&event_type, &api, &ctx).await?
    };
    ctx.succeeded(event_type.as_ref());
    Ok(action)
}

/// A visit: HubSpot's side (or the ConfigMap) brought in line, then the status.
async fn sync(
    event_type: &HubSpotTimelineEventType,
    api: &Api<HubSpotTimelineEventType>,
    ctx: &Context,
) -> Result<Action, Error> {
    let mut changes = Vec::new();
    let (carrier, visit, receivers) = match hubspot_side::dereference(event_type, ctx).await? {
        Err(visit) => (None, visit, ReceiverReports::integration_not_found()),
        Ok(reached) => {
            let visit = hubspot_side::register(event_type, &reached, ctx, &mut changes).await?;
            let receivers =
                ctx.integrations.receiver_reports(&ctx.client, &ctx.receiver_http, &reached.integration).await?;
            (Some(reached.carrier), visit, receivers)
        }
    };
    if let Visit::Failed(e) = &visit {
        let (reason, message) = crate::status::hubspot_error_reason(e);
        tracing::warn!(event_type = %event_type.name_any(), %reason, "a HubSpot call for the event type failed");
        changes.push(crate::EventToPublish::warning("HubSpotCallFailed", message));
    }
    publish(ctx, event_type, &changes).await;
    let status = event_type_status(event_type, carrier, &visit, &receivers, Time(Timestamp::now()));
    if event_type.status.as_ref() != Some(&status) {
        patch_status(api, &event_type.name_any(), event_type.status.as_ref(), &status).await?;
    }
    let ready = is_true(&status.conditions, READY);
    tracing::info!(event_type = %format!("{}/{}", event_type.namespace().unwrap_or_default(), event_type.name_any()), ready, "reconciled HubSpotTimelineEventType");
    Ok(Action::requeue(if ready { ctx.sync_refresh.min(ctx.drift_interval) } else { UNHEALTHY_REQUEUE }))
}

/// On deletion with policy Delete: deletes the template; the finalizer goes (by the caller)
/// only once HubSpot confirmed.
async fn cleanup(
    event_type: &HubSpotTimelineEventType,
    api: &Api<HubSpotTimelineEventType>,
    ctx: &Context,
) -> Result<Action, Error> {
    if !deleted_in_hubspot(event_type) {
        return Ok(Action::await_change());
    }
    let failure = match hubspot_side::delete_template(event_type, ctx).await? {
        Ok(()) => {
            let note = format!("Deleted event template {}", event_type.spec.name);
            publish(ctx, event_type, &[crate::EventToPublish::normal("EventTemplateDeleted", note)]).await;
            return Ok(Action::await_change());
        }
        Err(visit) => visit,
    };
    let status = event_type_status(
        event_type,
        event_type.status.as_ref().and_then(|s| s.carrier),
        &failure,
        &ReceiverReports::integration_not_found(),
        Time(Timestamp::now()),
    );
    patch_status(api, &event_type.name_any(), event_type.status.as_ref(), &status).await?;
    let message = status.conditions.iter().find(|c| c.type_ == READY).map(|c| c.message.clone()).unwrap_or_default();
    Err(Error::Cleanup(message))
}
