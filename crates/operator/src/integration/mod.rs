//! The `HubSpotIntegration` reconciler, as five steps with typed hand-offs:
//! [`dereference`] (the mappings and the referenced Secrets) → [`authenticate`] (HubSpot, and
//! the OAuth access token) → [`build`] (pure: every object of the receiver and the webhook
//! configuration) → [`apply`] (writing only what the API server does not hold yet) →
//! [`status`] (pure), whose Events are published and which is patched only when it changed.

mod apply;
mod auth;
mod build;
mod children;
mod dereference;
mod status;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};

use crate::events::publish;
use crate::kube_api::{patch_status, scoped_api};
use crate::status::mark_paused;
use crate::watches::changes_in;
use crate::{Context, Error, UNHEALTHY_REQUEUE};
use model::api::conditions::is_true;
use model::api::integration::condition_types::READY;
use model::api::timeline::Carrier;
use model::api::{HubSpotIntegration, HubSpotTimelineEventType, PropertyMapping, is_paused};

pub use apply::{Applied, apply_desired as apply};
pub use auth::authenticate;
pub use build::{BuildSettings, Desired, Exposure, ReceiverObjects, WebhooksPlan, build};
pub use children::{APPLIED_HASH_ANNOTATION, ChildCaches, holds};
pub use dereference::{Dereferenced, dereference};
pub use status::{announcements, status};

/// The integration controller: reconciles on changes of integrations, of the children it owns
/// and of the specs of the `PropertyMapping`s that reference it (their creation and deletion
/// too): it renders the mappings' specs and reads nothing of their status, which the mapping
/// reconciler writes. Likewise for its `HubSpotTimelineEventType`s, whose spec and HubSpot
/// name (from their status) go into the receiver config. The watches of the children and the mappings fill `ctx.children`, which
/// the reconciles read.
pub fn controller(ctx: &Context, namespace: Option<&str>) -> Controller<HubSpotIntegration> {
    let client = ctx.client.clone();
    let controller =
        Controller::new(scoped_api::<HubSpotIntegration>(client.clone(), namespace), watcher::Config::default());
    let Some(writers) = ctx.children.take_writers() else {
        // Another controller fills this context's caches already; this one watches without.
        tracing::warn!("the integration controller's caches are filled by another controller");
        let mappings = crate::watches::spec_changes::<PropertyMapping>(client.clone(), namespace);
        let event_types = changes_in(
            watcher::watcher(scoped_api::<HubSpotTimelineEventType>(client, namespace), watcher::Config::default()),
            as_rendered,
        );
        return controller
            .watches_stream(mappings, integration_of_mapping)
            .watches_stream(event_types, integration_of_event_type);
    };
    // Only the specs are rendered: the cache keeps neither the status the mapping reconciler
    // writes nor managedFields.
    let mappings =
        watcher::watcher(scoped_api::<PropertyMapping>(client.clone(), namespace), watcher::Config::default())
            .default_backoff()
            .modify(|mapping| {
                mapping.managed_fields_mut().clear();
                mapping.status = None;
            });
    let mappings = kube::runtime::reflector::reflector(writers.mappings, mappings);
    let event_types =
        watcher::watcher(scoped_api::<HubSpotTimelineEventType>(client.clone(), namespace), watcher::Config::default())
            .default_backoff()
            .modify(|event_type| event_type.managed_fields_mut().clear());
    let event_types = kube::runtime::reflector::reflector(writers.event_types, event_types);
    controller
        .owns_stream(children::reflected(writers.secrets, client.clone(), namespace))
        .owns_stream(children::reflected(writers.statefulsets, client.clone(), namespace))
        .owns_stream(children::reflected(writers.services, client.clone(), namespace))
        .owns_stream(children::reflected(writers.budgets, client.clone(), namespace))
        .owns_stream(children::reflected(writers.network_policies, client.clone(), namespace))
        .owns_stream(children::reflected(writers.ingresses, client.clone(), namespace))
        .owns_stream(children::reflected(writers.config_maps, client, namespace))
        .watches_stream(changes_in(mappings, |m: &PropertyMapping| m.meta().generation), integration_of_mapping)
        .watches_stream(changes_in(event_types, as_rendered), integration_of_event_type)
}

/// What the receiver config takes of an event type (its spec, and how HubSpot names it):
/// only a change of these re-renders the config, not the occurrence counts in its status.
fn as_rendered(event_type: &HubSpotTimelineEventType) -> (Option<i64>, Option<String>, Option<Carrier>) {
    let status = event_type.status.as_ref();
    (event_type.meta().generation, status.and_then(|s| s.hubspot_name.clone()), status.and_then(|s| s.carrier))
}

fn integration_of_event_type(event_type: HubSpotTimelineEventType) -> Option<ObjectRef<HubSpotIntegration>> {
    let namespace = event_type.namespace()?;
    Some(ObjectRef::new(&event_type.spec.integration_ref.name).within(&namespace))
}

fn integration_of_mapping(mapping: PropertyMapping) -> Option<ObjectRef<HubSpotIntegration>> {
    let namespace = mapping.namespace()?;
    Some(ObjectRef::new(&mapping.spec.integration_ref.name).within(&namespace))
}

/// One reconcile of `integration`.
pub async fn reconcile(integration: Arc<HubSpotIntegration>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace =
        integration.namespace().ok_or_else(|| Error::MissingObjectKey(integration.name_any(), "namespace"))?;
    let name = integration.name_any();
    let api = Api::<HubSpotIntegration>::namespaced(ctx.client.clone(), &namespace);
    if is_paused(integration.as_ref()) {
        let mut status = integration.status.clone().unwrap_or_default();
        if mark_paused(&mut status.conditions, READY, integration.metadata.generation) {
            patch_status(&api, &name, integration.status.as_ref(), &status).await?;
        }
        ctx.succeeded(integration.as_ref());
        return Ok(Action::await_change());
    }

    let dereferenced = dereference(&integration, &ctx).await?;
    let (auth, token_refresh_at) = authenticate(&integration, &dereferenced.secrets, &ctx).await?;
    let desired = build(&dereferenced, &ctx.build_settings())?;
    let applied = apply(&integration, &desired, &ctx).await?;
    let status = status(&integration, &auth, &applied);

    let previous = integration.status.clone().unwrap_or_default();
    publish(&ctx, integration.as_ref(), &announcements(&previous, &status)).await;
    // Unchanged (a periodic visit finding the same): nothing to write, and no watch event for
    // every watcher of integrations.
    if integration.status.as_ref() != Some(&status) {
        patch_status(&api, &name, integration.status.as_ref(), &status).await?;
    }
    ctx.succeeded(integration.as_ref());

    let ready = is_true(&status.conditions, READY);
    tracing::info!(integration = %format!("{namespace}/{name}"), ready, "reconciled HubSpotIntegration");
    Ok(Action::requeue(requeue_after(ready, token_refresh_at, Timestamp::now(), ctx.drift_interval)))
}

/// When to visit again: after the drift interval (`healthy`, [`crate::HEALTHY_REQUEUE`] unless
/// shortened) when ready, sooner while not, and no later than when the managed access token is
/// due for replacement, so the receivers never hold an expired one.
fn requeue_after(ready: bool, token_refresh_at: Option<Timestamp>, now: Timestamp, healthy: Duration) -> Duration {
    let requeue = if ready { healthy } else { UNHEALTHY_REQUEUE.min(healthy) };
    match token_refresh_at {
        Some(at) => {
            let until_due = Duration::try_from(at.duration_since(now)).unwrap_or(Duration::ZERO);
            requeue.min(until_due.max(MIN_TOKEN_REQUEUE))
        }
        None => requeue,
    }
}

/// The shortest wait before replacing a managed access token, so that a token HubSpot issues
/// with a very short lifetime does not make the reconciler spin.
const MIN_TOKEN_REQUEUE: Duration = Duration::from_secs(5);
