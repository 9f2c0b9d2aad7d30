//! Reconciles of a `HubSpotProperty` against the Kubernetes API stand-in and the HubSpot
//! emulator, for what only a sequence shows: the finalizer, adoption, deletion, the drift
//! schedule. Each checks the end state (the object as the stand-in holds it, the Events, the
//! property in HubSpot) and the calls that matter as counts, not their order.

use std::sync::Arc;
use std::time::Duration;

use hubspot::models::{Property, PropertyCreate, PropertyGroup};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use serde_json::json;
use test_support::ApiCalls;

use super::*;
use crate::fixtures::*;
use crate::mapping;
use model::api::PropertyMapping;
use model::api::property::{DeletionPolicy, ManagementPolicy};

const TOKEN: &str = "pat-na1-11111111-2222-3333-4444-555555555555";
const SCOPES: &[&str] = &["crm.schemas.contacts.read", "crm.schemas.contacts.write"];
const HUBSPOT_PROPERTY: &str = "/crm/v3/properties/contacts/loyalty_tier";
const GROUPS: &str = "/crm/v3/properties/contacts/groups";
const PROPERTIES: &str = "/crm/v3/properties/contacts";

/// A [`Scene`] whose stand-in holds a property.
struct World {
    scene: Scene,
    property: HubSpotProperty,
}

impl std::ops::Deref for World {
    type Target = Scene;

    fn deref(&self) -> &Scene {
        &self.scene
    }
}

impl World {
    /// `property` in a scene whose token has `scopes`.
    async fn with(scopes: &[&str], property: HubSpotProperty) -> World {
        World::holding(scopes, property, []).await
    }

    /// [`World::with`], the stand-in also holding `objects` (`(plural, object)`).
    async fn holding(
        scopes: &[&str],
        property: HubSpotProperty,
        objects: impl IntoIterator<Item = (&'static str, serde_json::Value)>,
    ) -> World {
        let property_object = ("hubspotproperties", to_json(&property));
        let scene = Scene::new(TOKEN, scopes, |i| i, std::iter::once(property_object).chain(objects)).await;
        World { scene, property }
    }

    /// Gives HubSpot the spec's group and property as `edit` changes it, then forgets those calls.
    async fn seed(&self, edit: impl FnOnce(&mut PropertyCreate)) {
        let client = emulator_client(&self.hubspot, TOKEN);
        let group = PropertyGroup { name: "loyalty".into(), label: "Loyalty".into(), display_order: None };
        client.create_property_group("contacts", &group).await.unwrap();
        let mut create = desired_create(&property_spec());
        edit(&mut create);
        client.create_property("contacts", &create).await.unwrap();
        forget_hubspot_requests(&self.hubspot).await;
    }

    /// One reconcile of the property as the stand-in holds it.
    async fn reconcile(&self) -> Result<Action, Error> {
        reconcile(Arc::new(self.stored()), self.ctx.clone()).await
    }

    fn stored(&self) -> HubSpotProperty {
        stored(&self.api, &self.property)
    }

    fn status(&self) -> HubSpotPropertyStatus {
        self.stored().status.expect("a status")
    }

    /// `(status, reason)` of the stored condition `type_`.
    fn condition(&self, type_: &str) -> (String, String) {
        let status = self.status();
        let c = model::api::conditions::find(&status.conditions, type_).unwrap_or_else(|| panic!("no {type_}"));
        (c.status.clone(), c.reason.clone())
    }

    fn finalizers(&self) -> Vec<String> {
        self.stored().metadata.finalizers.unwrap_or_default()
    }

    /// HubSpot's property `loyalty_tier` now.
    async fn in_hubspot(&self) -> Option<Property> {
        emulator_client(&self.hubspot, TOKEN).get_property("contacts", "loyalty_tier").await.unwrap()
    }
}

fn state(status: &str, reason: &str) -> (String, String) {
    (status.into(), reason.into())
}

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

#[tokio::test]
async fn a_first_visit_only_adds_the_finalizer() {
    let mut property = property_resource(property_spec());
    property.metadata.finalizers = None;
    let world = World::with(SCOPES, property).await;
    assert_eq!(world.reconcile().await.expect("reconcile succeeds"), Action::await_change());
    assert_eq!(world.finalizers(), [FINALIZER]);
    assert_eq!(world.stored().status, None);
    let calls = world.api.calls();
    assert_eq!((calls.other_patches, calls.status_patches, calls.events), (1, 0, 0), "{calls:?}");
    assert_eq!(hubspot_requests(&world.hubspot).await, requests(&[]));
}

#[tokio::test]
async fn a_missing_property_and_its_group_are_created_and_announced() {
    let world = World::with(SCOPES, property_resource(property_spec())).await;
    assert_eq!(world.reconcile().await.expect("reconcile succeeds"), Action::requeue(DRIFT_CHECK_INTERVAL));

    assert_eq!(
        hubspot_requests(&world.hubspot).await,
        requests(&[
            ("GET", HUBSPOT_PROPERTY, 404),
            ("GET", GROUPS, 200),
            ("POST", GROUPS, 201),
            ("POST", PROPERTIES, 201)
        ])
    );
    let in_hubspot = world.in_hubspot().await.expect("the property was created");
    assert_eq!(plan(&property_spec(), Some(&in_hubspot)), Plan::InSync);
    let groups = emulator_client(&world.hubspot, TOKEN).list_property_groups("contacts").await.unwrap();
    assert!(groups.iter().any(|g| g.name == "loyalty" && g.label == "Loyalty"), "{groups:?}");

    assert_eq!(
        event_reasons(&world.api),
        reasons(&[("Normal", "PropertyGroupCreated"), ("Normal", "PropertyCreated")])
    );
    let created = event(&world.api, "PropertyCreated");
    assert_eq!(created["note"], "Created HubSpot property loyalty_tier on contacts");
    assert_eq!(created["regarding"]["name"], "loyalty-tier");
    assert_eq!(event(&world.api, "PropertyGroupCreated")["note"], "Created HubSpot property group loyalty on contacts");

    assert_eq!(world.condition("Synced"), state("True", "Created"));
    assert_eq!(world.condition("Ready"), state("True", "Created"));
    let status = world.status();
    assert_eq!(status.observed_generation, Some(2));
    assert_eq!(status.hubspot_defined, Some(false));
    assert!(status.last_sync_time.is_some());
    assert_eq!(world.finalizers(), [FINALIZER], "kept");
}

#[tokio::test]
async fn a_mapping_waiting_for_a_created_property_finds_it_without_listing_again() {
    let waiting = mapping("crm", &["loyalty_tier"]);
    let world =
        World::holding(SCOPES, property_resource(property_spec()), [("propertymappings", to_json(&waiting))]).await;
    let stored_mapping = || stored::<PropertyMapping>(&world.api, &waiting);
    mapping::reconcile(Arc::new(stored_mapping()), world.ctx.clone()).await.expect("mapping reconcile succeeds");
    assert_eq!(stored_mapping().status.unwrap().missing_properties, ["loyalty_tier"]);

    world.reconcile().await.expect("property reconcile succeeds");
    let action =
        mapping::reconcile(Arc::new(stored_mapping()), world.ctx.clone()).await.expect("mapping reconcile succeeds");

    assert_eq!(action, Action::requeue(crate::SYNC_REFRESH));
    let status = stored_mapping().status.unwrap();
    assert!(model::api::conditions::is_true(&status.conditions, "Ready"), "{status:?}");
    assert!(status.missing_properties.is_empty());
    let listings = hubspot_requests(&world.hubspot).await.into_iter().filter(|(_, path, _)| path == PROPERTIES);
    assert_eq!(
        listings.filter(|(method, ..)| method == "GET").count(),
        1,
        "the created property is in the catalogue: no second listing"
    );
}

#[tokio::test]
async fn a_visit_reads_hubspot_once_and_waits_for_the_drift_interval() {
    let world = World::with(SCOPES, synced_before(property_resource(property_spec()))).await;
    world.seed(|_| {}).await;
    assert_eq!(world.reconcile().await.expect("reconcile succeeds"), Action::requeue(DRIFT_CHECK_INTERVAL));
    assert_eq!(world.condition("Synced"), state("True", "InSync"));
    assert_eq!(world.condition("Ready"), state("True", "InSync"));
    assert_eq!(hubspot_requests(&world.hubspot).await, requests(&[("GET", HUBSPOT_PROPERTY, 200)]));
    assert_eq!(event_reasons(&world.api), reasons(&[]), "nothing happened to announce");

    // The visit its own status write causes is not due yet: no call at all.
    let before = world.api.calls();
    world.reconcile().await.expect("reconcile succeeds");
    assert_eq!(world.api.calls(), before);
    assert_eq!(hubspot_requests(&world.hubspot).await.len(), 1);
}

/// A visit that finds HubSpot as the status already says reads HubSpot and writes nothing:
/// the time of the visit goes to a metric, not to the object.
#[tokio::test]
async fn an_unchanged_property_is_read_each_interval_without_a_status_write() {
    let mut property = property_resource(property_spec());
    let in_sync = Visit::Synced { change: PropertyChange::InSync, hubspot_defined: false };
    property.status = Some(property_status(&property, &in_sync, Time(Timestamp::UNIX_EPOCH)));
    let mut world = World::with(SCOPES, property).await;
    world.seed(|_| {}).await;
    Arc::get_mut(&mut world.scene.ctx).expect("the only context").drift_interval = Duration::from_secs(60);
    let heartbeats = world.ctx.metrics.property_last_sync.clone();

    assert_eq!(world.reconcile().await.expect("reconcile succeeds"), Action::requeue(Duration::from_secs(60)));
    assert_eq!(hubspot_requests(&world.hubspot).await, requests(&[("GET", HUBSPOT_PROPERTY, 200)]));
    let calls = world.api.calls();
    assert_eq!((calls.status_patches, calls.other_patches, calls.events), (0, 0, 0), "{calls:?}");
    let labels = crate::ObjectLabels { namespace: NAMESPACE.into(), name: "loyalty-tier".into() };
    let at = heartbeats.get_or_create(&labels).get();
    assert!((Timestamp::now().as_second() as f64 - at).abs() < 60.0, "heartbeat at {at}");
}

#[tokio::test]
async fn drift_is_repaired_with_one_patch() {
    let world = World::with(SCOPES, synced_before(property_resource(property_spec()))).await;
    world
        .seed(|p| {
            p.label = "Tier".into();
            p.options.truncate(1);
        })
        .await;
    world.reconcile().await.expect("reconcile succeeds");

    assert_eq!(
        hubspot_requests(&world.hubspot).await,
        requests(&[("GET", HUBSPOT_PROPERTY, 200), ("PATCH", HUBSPOT_PROPERTY, 200)])
    );
    let repaired = world.in_hubspot().await.unwrap();
    assert_eq!(plan(&property_spec(), Some(&repaired)), Plan::InSync);
    assert_eq!(event_reasons(&world.api), reasons(&[("Normal", "PropertyUpdated")]));
    assert_eq!(
        event(&world.api, "PropertyUpdated")["note"],
        "Updated HubSpot property loyalty_tier on contacts: label, options"
    );
    assert_eq!(world.condition("Synced"), state("True", "Updated"));
}

#[tokio::test]
async fn an_existing_property_is_adopted_without_writes() {
    let world = World::with(SCOPES, property_resource(property_spec())).await;
    world.seed(|_| {}).await;
    world.reconcile().await.expect("reconcile succeeds");
    assert_eq!(hubspot_requests(&world.hubspot).await, requests(&[("GET", HUBSPOT_PROPERTY, 200)]));
    assert_eq!(world.condition("Synced"), state("True", "Adopted"));
    let status = world.status();
    let synced = model::api::conditions::find(&status.conditions, "Synced").unwrap();
    assert_eq!(synced.message, "Adopted the existing property loyalty_tier");
    assert_eq!(event_reasons(&world.api), reasons(&[]));
}

#[tokio::test]
async fn observe_only_reports_drift_and_writes_nothing() {
    let mut spec = property_spec();
    spec.management_policy = ManagementPolicy::ObserveOnly;
    let world = World::with(SCOPES, property_resource(spec)).await;
    world.seed(|p| p.label = "Tier".into()).await;
    world.reconcile().await.expect("reconcile succeeds");
    assert_eq!(hubspot_requests(&world.hubspot).await, requests(&[("GET", HUBSPOT_PROPERTY, 200)]));
    assert_eq!(world.in_hubspot().await.unwrap().label, "Tier", "left as is");
    assert_eq!(world.condition("Synced"), state("False", "Drifted"));
    assert_eq!(world.condition("Ready"), state("True", "Observed"));
    assert_eq!(world.status().drift, ["label"]);
    assert_eq!(event_reasons(&world.api), reasons(&[]));
}

#[tokio::test]
async fn deletion_with_the_delete_policy_drops_the_finalizer_once_hubspot_archived_the_property() {
    let world =
        World::with(SCOPES, deleting(synced_before(property_resource(property_spec())), DeletionPolicy::Delete)).await;
    world.seed(|_| {}).await;
    assert_eq!(world.reconcile().await.expect("reconcile succeeds"), Action::await_change());
    assert_eq!(hubspot_requests(&world.hubspot).await, requests(&[("DELETE", HUBSPOT_PROPERTY, 204)]));
    assert_eq!(world.in_hubspot().await, None);
    assert_eq!(event_reasons(&world.api), reasons(&[("Normal", "PropertyArchived")]));
    assert_eq!(world.finalizers(), Vec::<String>::new());
    assert_eq!(world.api.calls().status_patches, 0);
}

#[tokio::test]
async fn deletion_keeps_the_finalizer_while_hubspot_refuses() {
    let property = deleting(synced_before(property_resource(property_spec())), DeletionPolicy::Delete);
    let world = World::with(&["crm.schemas.contacts.read"], property).await;
    let outcome = world.reconcile().await;
    assert!(matches!(outcome, Err(Error::Finalizer(_))), "{outcome:?}");
    assert_eq!(world.finalizers(), [FINALIZER]);
    assert_eq!(hubspot_requests(&world.hubspot).await, requests(&[("DELETE", HUBSPOT_PROPERTY, 403)]));
    assert_eq!(world.condition("Ready"), state("False", "MISSING_SCOPES"));
    let last_error = world.status().last_error.expect("the refusal");
    assert!(last_error.correlation_id.as_ref().is_some_and(|id| !id.is_empty()), "{last_error:?}");
}

#[tokio::test]
async fn deletion_with_the_orphan_policy_leaves_hubspot_alone() {
    let world =
        World::with(SCOPES, deleting(synced_before(property_resource(property_spec())), DeletionPolicy::Orphan)).await;
    world.seed(|_| {}).await;
    world.reconcile().await.expect("reconcile succeeds");
    assert_eq!(world.finalizers(), Vec::<String>::new());
    assert_eq!(hubspot_requests(&world.hubspot).await, requests(&[]));
    assert!(world.in_hubspot().await.is_some());
    let calls = world.api.calls();
    assert_eq!((calls.gets, calls.status_patches, calls.events), (0, 0, 0), "no token read, no status: {calls:?}");
}

#[test]
fn only_a_managed_property_of_ours_with_the_delete_policy_is_archived() {
    let delete = |edit: fn(&mut HubSpotProperty)| {
        let mut property = property_resource(property_spec());
        property.spec.deletion_policy = DeletionPolicy::Delete;
        edit(&mut property);
        archived_on_deletion(&property)
    };
    assert!(delete(|_| {}));
    assert!(!delete(|p| p.spec.deletion_policy = DeletionPolicy::Orphan));
    assert!(!delete(|p| p.spec.management_policy = ManagementPolicy::ObserveOnly));
    assert!(!delete(|p| {
        p.status = Some(HubSpotPropertyStatus { hubspot_defined: Some(true), ..Default::default() })
    }));
}

#[tokio::test]
async fn a_paused_property_keeps_its_finalizer_and_hubspot_untouched_even_when_deleted() {
    let property = annotated(
        deleting(synced_before(property_resource(property_spec())), DeletionPolicy::Delete),
        "hubspot.io/paused",
        "true",
    );
    let world = World::with(SCOPES, property).await;
    world.seed(|_| {}).await;
    assert_eq!(world.reconcile().await.expect("reconcile succeeds"), Action::await_change());
    assert_eq!(world.condition("Synced"), state("Unknown", "Paused"));
    assert_eq!(world.finalizers(), [FINALIZER]);
    assert_eq!(hubspot_requests(&world.hubspot).await, requests(&[]));
    assert!(world.in_hubspot().await.is_some());
    let calls = world.api.calls();
    assert_eq!(
        (calls.gets, calls.other_patches, calls.status_patches, calls.events),
        (0, 0, 1, 0),
        "no integration or Secret read, no finalizer patch: only the status"
    );
}

#[tokio::test]
async fn a_fresh_status_makes_no_call_but_a_reconcile_request_checks_drift_at_once() {
    let world = World::with(SCOPES, fresh_property(Timestamp::now(), None)).await;
    world.seed(|p| p.label = "Tier".into()).await;
    let action = world.reconcile().await.expect("reconcile succeeds");
    assert_ne!(action, Action::await_change(), "visited again when the drift check is due");
    assert_eq!(world.api.calls(), ApiCalls::default(), "no Kubernetes call");
    assert_eq!(hubspot_requests(&world.hubspot).await, requests(&[]));

    let request =
        json!({ "metadata": { "annotations": { "hubspot.io/reconcile-requested-at": "2026-11-26T21:00:00Z" } } });
    let properties = Api::<HubSpotProperty>::namespaced(world.ctx.client.clone(), NAMESPACE);
    properties.patch("loyalty-tier", &PatchParams::default(), &Patch::Merge(&request)).await.unwrap();
    world.reconcile().await.expect("reconcile succeeds");
    assert_eq!(
        hubspot_requests(&world.hubspot).await,
        requests(&[("GET", HUBSPOT_PROPERTY, 200), ("PATCH", HUBSPOT_PROPERTY, 200)])
    );
    assert_eq!(event_reasons(&world.api), reasons(&[("Normal", "PropertyUpdated")]));
    assert_eq!(world.condition("Synced"), state("True", "Updated"));
    assert_eq!(world.status().last_handled_reconcile_at.as_deref(), Some("2026-11-26T21:00:00Z"));
}
