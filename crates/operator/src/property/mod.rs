//! The `HubSpotProperty` reconciler. A visit goes dereference (the integration and its token,
//! in `hubspot_side`) → read HubSpot's property → decide (pure: [`plan()`], [`decide`]) → write
//! to HubSpot → status ([`property_status`], written only when more than the time of the
//! visit changed). On deletion the property is archived when the policies say so, and the
//! finalizer goes only once that succeeded.

mod hubspot_side;
mod plan;
#[cfg(test)]
mod scenarios;
mod schedule;
mod status;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};

use super::events::publish;
use super::kube_api::{patch_status, scoped_api};
use super::status::mark_paused;
use super::watches::{integration_changes, objects_of};
use super::{Context, Error, UNHEALTHY_REQUEUE};
use hubspot_side::{archive, connect, visit_hubspot};
use model::api::property::condition_types::{READY, SYNCED};
use model::api::property::{DeletionPolicy, ManagementPolicy};
use model::api::{HubSpotProperty, HubSpotPropertyStatus, is_paused};

pub use plan::{Decision, Plan, PropertyChange, Write, decide, desired_create, plan};
pub use schedule::{PropertyReads, drift_check_wait};
pub(crate) use status::last_error;
pub use status::{Visit, only_heartbeat_changed, property_status};

/// Finalizer that keeps a `HubSpotProperty` until its HubSpot side is dealt with.
pub const FINALIZER: &str = "hubspot.io/property-cleanup";
/// How often HubSpot is read again to detect drift (one read per object per interval).
pub const DRIFT_CHECK_INTERVAL: Duration = Duration::from_secs(5 * 60);

/// The property controller: reconciles on changes of properties and of the integrations they
/// reference (see `watches::integration_changes`).
pub fn controller(client: Client, namespace: Option<&str>) -> Controller<HubSpotProperty> {
    let controller =
        Controller::new(scoped_api::<HubSpotProperty>(client.clone(), namespace), watcher::Config::default());
    let properties = controller.store();
    controller.watches_stream(integration_changes(client, namespace), move |i| objects_of(&properties, &i))
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

/// A visit, when the drift schedule says HubSpot is due to be read.
async fn sync(property: &HubSpotProperty, api: &Api<HubSpotProperty>, ctx: &Context) -> Result<Action, Error> {
    let now = Timestamp::now();
    if let Some(wait) = drift_check_wait(property, ctx.property_reads.last(property), now, ctx.drift_interval) {
        return Ok(Action::requeue(wait));
    }
    let mut changes = Vec::new();
    let visit = match connect(property, ctx).await? {
        Err(unavailable) => unavailable,
        Ok(hubspot) => visit_hubspot(property, &hubspot, &mut changes).await,
    };
    publish(ctx, property, &changes).await;
    let status = property_status(property, &visit, Time(now));
    if !only_heartbeat_changed(property.status.as_ref(), &status) {
        patch_status(api, &property.name_any(), property.status.as_ref(), &status).await?;
    }
    if visit.asked_hubspot() {
        ctx.property_reads.record(property, now);
    }
    let ready = model::api::conditions::is_true(&status.conditions, READY);
    tracing::info!(property = %format!("{}/{}", property.namespace().unwrap_or_default(), property.name_any()), ready, "reconciled HubSpotProperty");
    Ok(Action::requeue(if ready { ctx.drift_interval } else { UNHEALTHY_REQUEUE }))
}

/// Whether deleting `property` archives HubSpot's property: not when the deletion policy
/// orphans it, the property is only observed, or HubSpot defines it.
pub fn archived_on_deletion(property: &HubSpotProperty) -> bool {
    let spec = &property.spec;
    let hubspot_defined = property.status.as_ref().and_then(|s| s.hubspot_defined).unwrap_or(false);
    spec.deletion_policy == DeletionPolicy::Delete
        && spec.management_policy != ManagementPolicy::ObserveOnly
        && !hubspot_defined
}

/// On deletion: archives the property when [`archived_on_deletion`]; the finalizer is dropped
/// (by the caller) only when this succeeds.
async fn cleanup(property: &HubSpotProperty, api: &Api<HubSpotProperty>, ctx: &Context) -> Result<Action, Error> {
    // A property being deleted is not checked for drift any more, whatever its policies.
    ctx.property_reads.forget(property);
    if !archived_on_deletion(property) {
        return Ok(Action::await_change());
    }
    let failure = match connect(property, ctx).await? {
        Err(unavailable) => unavailable,
        Ok(hubspot) => match archive(&property.spec, &hubspot).await {
            Ok(changes) => {
                publish(ctx, property, &changes).await;
                return Ok(Action::await_change());
            }
            Err(e) => Visit::Failed(e),
        },
    };
    // Keep the finalizer, and say why in the status.
    let status = property_status(property, &failure, Time(Timestamp::now()));
    patch_status(api, &property.name_any(), property.status.as_ref(), &status).await?;
    Err(Error::Cleanup(ready_message(&status)))
}

/// The message of the `Ready` condition of `status`.
fn ready_message(status: &HubSpotPropertyStatus) -> String {
    status.conditions.iter().find(|c| c.type_ == READY).map(|c| c.message.clone()).unwrap_or_default()
}
