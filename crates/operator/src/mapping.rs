//! The `PropertyMapping` reconciler: checks that the referenced integration exists and that
//! every mapped property exists in HubSpot (in the integration's shared
//! [`PropertyCatalogue`](super::catalogue::PropertyCatalogue)), and reports conditions.

use std::sync::Arc;

use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, reflector};
use kube::runtime::watcher::{self, watcher};
use kube::{Client, ResourceExt};

use super::events::publish;
use super::kube_api::{patch_status, scoped_api};
use super::receiver_reports::ReceiverReports;
use super::status::{
    MAPPING_EVENTS, PropertyLookup, condition_events, mapping_status, mark_paused, required_properties,
};
use super::watches::{changes_in, integration_changes, objects_of};
use super::{Context, Error, UNHEALTHY_REQUEUE};
use model::api::conditions::is_true;
use model::api::mapping::condition_types::READY;
use model::api::{HubSpotIntegration, HubSpotProperty, PropertyMapping, is_paused, reconcile_request};

/// The mapping controller: reconciles on changes of mappings, of the integrations they
/// reference (an integration appearing or going, its spec changing, or HubSpot starting or
/// ceasing to accept its credentials: see `watches::integration_changes`),
/// and of the `HubSpotProperty` objects they wait for (see [`waiting_for`]).
/// The mapping's own status writes do not reconcile it: the sync figures it shows change
/// with every refresh, so each write would cause the next. A mapping is reconciled when its
/// spec or annotations (pause, reconcile request) change, and every [`SYNC_REFRESH`] while
/// ready.
///
/// [`SYNC_REFRESH`]: super::SYNC_REFRESH
pub fn controller(client: Client, namespace: Option<&str>) -> Controller<PropertyMapping> {
    let (store, writer) = reflector::store();
    let mappings = reflector(
        writer,
        watcher(scoped_api::<PropertyMapping>(client.clone(), namespace), watcher::Config::default()),
    );
    let controller = Controller::for_stream(
        changes_in(mappings, |m: &PropertyMapping| (m.metadata.generation, m.metadata.annotations.clone())),
        store,
    );
    let (of_integration, of_property) = (controller.store(), controller.store());
    controller
        .watches_stream(integration_changes(client.clone(), namespace), move |i| objects_of(&of_integration, &i))
        .watches(scoped_api::<HubSpotProperty>(client, namespace), watcher::Config::default(), move |property| {
            of_property
                .state()
                .into_iter()
                .filter(|m| waiting_for(m, &property))
                .map(|m| ObjectRef::from_obj(m.as_ref()))
                .collect::<Vec<_>>()
        })
}

/// Whether `mapping` was found lacking the property that the ready `property` manages. Such a
/// mapping is checked as soon as the property exists rather than at its next retry; other
/// property changes (every drift check writes the status) concern no mapping.
pub fn waiting_for(mapping: &PropertyMapping, property: &HubSpotProperty) -> bool {
    let ready = property.status.as_ref().is_some_and(|s| is_true(&s.conditions, READY));
    ready
        && mapping.namespace() == property.namespace()
        && mapping.spec.integration_ref.name == property.spec.integration_ref.name
        && mapping.spec.records.object_type == property.spec.object_type
        && mapping.status.as_ref().is_some_and(|s| s.missing_properties.contains(&property.spec.name))
}

/// One reconcile of `mapping`: dereference (the integration, HubSpot's properties through the
/// catalogue, the receivers' reports) → status (pure: [`mapping_status`]) → Events and the
/// status write, when the status changed.
pub async fn reconcile(mapping: Arc<PropertyMapping>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = mapping.namespace().ok_or_else(|| Error::MissingObjectKey(mapping.name_any(), "namespace"))?;
    let name = mapping.name_any();
    let api = Api::<PropertyMapping>::namespaced(ctx.client.clone(), &namespace);
    if is_paused(mapping.as_ref()) {
        let mut status = mapping.status.clone().unwrap_or_default();
        if mark_paused(&mut status.conditions, READY, mapping.metadata.generation) {
            patch_status(&api, &name, mapping.status.as_ref(), &status).await?;
        }
        ctx.succeeded(mapping.as_ref());
        return Ok(Action::await_change());
    }

    let integration = ctx.integrations.get(&namespace, &mapping.spec.integration_ref.name).await?;
    let lookup = look_up_properties(&mapping, integration.as_ref(), &ctx).await?;
    let receivers = match &integration {
        None => ReceiverReports::integration_not_found(),
        Some(integration) => ctx.integrations.receiver_reports(&ctx.client, &ctx.receiver_http, integration).await?,
    };

    let status = mapping_status(&mapping, &lookup, &receivers);
    let previous = mapping.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or_default();
    publish(&ctx, mapping.as_ref(), &condition_events(previous, &status.conditions, MAPPING_EVENTS)).await;
    // Unchanged (a visit caused by the last status write, or a periodic one finding the same):
    // nothing to write.
    if mapping.status.as_ref() != Some(&status) {
        patch_status(&api, &name, mapping.status.as_ref(), &status).await?;
    }
    ctx.succeeded(mapping.as_ref());

    let ready = is_true(&status.conditions, READY);
    tracing::info!(mapping = %format!("{namespace}/{name}"), ready, "reconciled PropertyMapping");
    Ok(Action::requeue(if ready { ctx.sync_refresh.min(ctx.drift_interval) } else { UNHEALTHY_REQUEUE }))
}

/// Looks the properties `mapping` needs up in its integration's catalogue; the lookup's end
/// when the integration or its token is unavailable.
async fn look_up_properties(
    mapping: &PropertyMapping,
    integration: Option<&Arc<HubSpotIntegration>>,
    ctx: &Context,
) -> Result<PropertyLookup, Error> {
    let Some(integration) = integration else { return Ok(PropertyLookup::IntegrationNotFound) };
    let token = match ctx.integrations.token(&ctx.client, integration).await? {
        Ok(token) => token,
        Err(e) => return Ok(PropertyLookup::TokenUnavailable(e)),
    };
    let hubspot = ctx.hubspot_client(integration, token);
    let object_type = &mapping.spec.records.object_type;
    let catalogue = ctx.property_catalogue(integration, object_type);
    let required = required_properties(mapping);
    let refresh = reconcile_requested(mapping);
    Ok(match catalogue.lookup(&hubspot, object_type, &required, ctx.catalogue_freshness(), refresh).await {
        Ok(names) => PropertyLookup::Listed(names),
        Err(e) => PropertyLookup::Failed(e),
    })
}

/// Whether `mapping` carries a reconcile request it has not handled yet: such a visit asks
/// for HubSpot's current properties, not the catalogue's.
pub fn reconcile_requested(mapping: &PropertyMapping) -> bool {
    reconcile_request(mapping).is_some_and(|request| {
        mapping.status.as_ref().and_then(|s| s.last_handled_reconcile_at.as_ref()) != Some(&request)
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use kube::api::{Patch, PatchParams};
    use serde_json::{Value, json};

    use super::*;
    use crate::fixtures::*;
    use emulator::RunningEmulator;
    use model::api::HubSpotIntegration;
    use test_support::FakeApiServer;

    const TOKEN: &str = "pat-na1-11111111-2222-3333-4444-555555555555";
    const SCHEMA_READ: &str = "crm.schemas.contacts.read";
    const PROPERTIES: &str = "/crm/v3/properties/contacts";

    /// A [`Scene`] whose stand-in holds mappings.
    struct World(Scene);

    impl std::ops::Deref for World {
        type Target = Scene;

        fn deref(&self) -> &Scene {
            &self.0
        }
    }

    impl World {
        /// Integration `crm` (as `edit` makes it), its token Secret and `mappings`, the token
        /// having `scopes`.
        async fn with(
            scopes: &[&str],
            edit: impl FnOnce(HubSpotIntegration) -> HubSpotIntegration,
            mappings: &[&PropertyMapping],
        ) -> World {
            let objects = mappings.iter().map(|m| ("propertymappings", to_json(m)));
            World(Scene::new(TOKEN, scopes, edit, objects.collect::<Vec<_>>()).await)
        }

        /// One reconcile of `mapping` as the stand-in holds it.
        async fn reconcile(&self, mapping: &PropertyMapping) -> Result<Action, Error> {
            reconcile(Arc::new(stored(&self.api, mapping)), self.ctx.clone()).await
        }

        /// `mapping` as the stand-in holds it, as JSON.
        fn stored(&self, mapping: &PropertyMapping) -> Value {
            let path = format!("/apis/hubspot.io/v1alpha1/namespaces/default/propertymappings/{}", mapping.name_any());
            self.api.get(&path).expect("a stored mapping")
        }

        /// Sets the annotation `key` of `mapping` to `value` (`null` removes it).
        async fn annotate(&self, mapping: &PropertyMapping, key: &str, value: Value) {
            let patch = json!({ "metadata": { "annotations": { key: value } } });
            let mappings = Api::<PropertyMapping>::namespaced(self.ctx.client.clone(), NAMESPACE);
            mappings.patch(&mapping.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
        }
    }

    fn state(status: &str, reason: &str) -> (String, String) {
        (status.into(), reason.into())
    }

    fn as_is(integration: HubSpotIntegration) -> HubSpotIntegration {
        integration
    }

    #[tokio::test]
    async fn mapping_whose_properties_exist_is_ready() {
        let mut mapping = mapping("crm", &["firstname", "lastname"]);
        // A previous visit found properties missing; the status write must clear the list.
        mapping.status = Some(model::api::PropertyMappingStatus {
            missing_properties: vec!["lastname".into()],
            ..Default::default()
        });
        let world = World::with(&[SCHEMA_READ, "crm.objects.contacts.read"], as_is, &[&mapping]).await;
        let action = world.reconcile(&mapping).await.expect("reconcile succeeds");
        assert_eq!(action, Action::requeue(crate::SYNC_REFRESH), "the sync figures are read again");
        let stored = world.stored(&mapping);
        for type_ in ["Ready", "IntegrationFound", "PropertiesExist"] {
            let c = condition(&stored, type_);
            assert_eq!(c["status"], "True", "{c}");
            assert_eq!(c["observedGeneration"], 4, "{c}");
        }
        assert_eq!(stored["status"].get("missingProperties"), None, "{stored}");
        assert_eq!(event_reasons(&world.api), reasons(&[("Normal", "Ready")]));
    }

    #[tokio::test]
    async fn mappings_share_one_property_listing_and_an_unchanged_status_is_not_written() {
        let contacts = mapping("crm", &["firstname"]);
        let mut leads = mapping("crm", &["lastname"]);
        leads.metadata.name = Some("leads".into());
        let world = World::with(&[SCHEMA_READ], as_is, &[&contacts, &leads]).await;
        world.reconcile(&contacts).await.expect("reconcile succeeds");
        world.reconcile(&leads).await.expect("reconcile succeeds");
        assert_eq!(hubspot_calls(&world.hubspot).await, [PROPERTIES], "one listing for both mappings");
        assert_eq!(world.api.calls().gets, 1, "one read of the token Secret serves every mapping of the integration");
        for mapping in [&contacts, &leads] {
            assert_eq!(condition_state(&world.stored(mapping), "PropertiesExist").0, "True");
        }
        assert_eq!(event_reasons(&world.api), reasons(&[("Normal", "Ready"), ("Normal", "Ready")]));

        // The visit its own status write causes: the same status, so nothing is read or written.
        let before = world.api.calls();
        world.reconcile(&contacts).await.expect("reconcile succeeds");
        assert_eq!(world.api.calls(), before);
        assert_eq!(hubspot_calls(&world.hubspot).await, [PROPERTIES]);

        // A reconcile request reads HubSpot again, and is recorded as handled.
        world.annotate(&contacts, "hubspot.io/reconcile-requested-at", json!("now")).await;
        world.reconcile(&contacts).await.expect("reconcile succeeds");
        assert_eq!(hubspot_calls(&world.hubspot).await, [PROPERTIES, PROPERTIES]);
        assert_eq!(world.stored(&contacts)["status"]["lastHandledReconcileAt"], "now");
    }

    #[test]
    fn only_an_unhandled_reconcile_request_refreshes_the_catalogue() {
        let plain = mapping("crm", &["firstname"]);
        assert!(!reconcile_requested(&plain));
        let mut requested = annotated(plain, "hubspot.io/reconcile-requested-at", "now");
        assert!(reconcile_requested(&requested));
        requested.status = Some(model::api::PropertyMappingStatus {
            last_handled_reconcile_at: Some("now".into()),
            ..Default::default()
        });
        assert!(!reconcile_requested(&requested), "already handled");
    }

    /// `integration` as its reconciler leaves it once the receiver is up.
    fn with_receiver_available(mut integration: HubSpotIntegration) -> HubSpotIntegration {
        use model::api::integration::condition_types::RECEIVER_AVAILABLE;
        let available = model::api::conditions::condition(
            RECEIVER_AVAILABLE,
            Some(true),
            "ReceiverAvailable",
            "2 of 2 receiver pods available",
            Some(1),
        );
        integration.status =
            Some(model::api::HubSpotIntegrationStatus { conditions: vec![available], ..Default::default() });
        integration
    }

    /// `slice` under another name, of the receiver Service `service`.
    fn renamed(mut slice: Value, name: &str, service: &str) -> Value {
        slice["metadata"]["name"] = json!(name);
        slice["metadata"]["labels"]["kubernetes.io/service-name"] = json!(service);
        slice
    }

    #[tokio::test]
    async fn a_mapping_shows_what_the_receiver_pods_report_of_it() {
        let receiver = ReportingReceiver::start(&["default/contacts"]).await;
        receiver.metrics.activity.delivered("default/contacts", 4);
        receiver.metrics.activity.succeeded("default/contacts", 1_764_000_000_000);
        // A second ready pod that does not answer, and a pod of another integration's receiver.
        let gone = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let slices = [
            receiver.endpoints(),
            renamed(receiver_endpoints(&["127.0.0.1"], gone, gone), "crm-receiver-b9c4d", "crm-receiver"),
            renamed(receiver.endpoints(), "erp-receiver-q2w3e", "erp-receiver"),
        ];

        let mapping = mapping("crm", &["firstname"]);
        let world =
            World::with(&[SCHEMA_READ, "crm.objects.contacts.read"], with_receiver_available, &[&mapping]).await;
        for slice in slices {
            world.api.insert("endpointslices", slice);
        }
        let action = world.reconcile(&mapping).await.expect("reconcile succeeds");
        assert_eq!(action, Action::requeue(crate::SYNC_REFRESH), "the figures are read again soon");
        let stored = world.stored(&mapping);
        assert_eq!(condition_state(&stored, "Synced"), state("True", "InSync"));
        let message = condition(&stored, "Synced")["message"].as_str().unwrap().to_string();
        assert!(message.starts_with("4 records delivered, 0 written to HubSpot; 0 events pending, 0 s behind (1 of 2 receiver pods did not answer: "), "{message}");
        assert_eq!(
            stored["status"]["sync"],
            json!({
                "receivers": "1/2", "recordsDelivered": 4, "recordsWritten": 0, "deadLetters": 0,
                "rejectedRecords": 0, "queuedForHubspot": 0, "pendingEvents": 0, "lagSeconds": 0,
                "lastSuccessTime": "2025-11-24T16:00:00Z",
            }),
            "only the pods of the integration's receiver Service are asked"
        );
        assert_eq!(event_reasons(&world.api), reasons(&[("Normal", "Ready")]));
    }

    #[tokio::test]
    async fn a_failing_sync_is_a_warning_with_the_receivers_error() {
        let receiver = ReportingReceiver::start(&["default/contacts"]).await;
        let error = "reading contacts from HubSpot: HubSpot answered 403: MISSING_SCOPES";
        receiver.metrics.activity.failed("default/contacts", error, 1_764_000_000_000);

        let mapping = mapping("crm", &["firstname"]);
        let world = World::with(&[SCHEMA_READ], with_receiver_available, &[&mapping]).await;
        world.api.insert("endpointslices", receiver.endpoints());
        world.reconcile(&mapping).await.expect("reconcile succeeds");
        assert_eq!(event_reasons(&world.api), reasons(&[("Normal", "Ready"), ("Warning", "NotSynced")]));
        assert_eq!(event(&world.api, "NotSynced")["note"], format!("{error}; retrying"));
        let stored = world.stored(&mapping);
        assert_eq!(condition_state(&stored, "Synced"), state("False", "SyncFailing"));
        assert_eq!(stored["status"]["sync"]["lastError"], error);
        assert_eq!(stored["status"]["sync"]["lastErrorTime"], "2025-11-24T16:00:00Z");
    }

    /// The property `name` of `integration` on contacts, `Ready` or not.
    fn property_of(integration: &str, name: &str, ready: bool) -> HubSpotProperty {
        let mut spec = property_spec();
        spec.integration_ref.name = integration.into();
        spec.name = name.into();
        let mut property = property_resource(spec);
        let condition = model::api::conditions::condition(READY, Some(ready), "InSync", "", Some(2));
        property.status = Some(model::api::HubSpotPropertyStatus { conditions: vec![condition], ..Default::default() });
        property
    }

    #[test]
    fn only_mappings_missing_a_ready_property_wait_for_it() {
        let mut waiting = mapping("crm", &["loyalty_tier"]);
        waiting.status = Some(model::api::PropertyMappingStatus {
            missing_properties: vec!["loyalty_tier".into()],
            ..Default::default()
        });
        let ready = property_of("crm", "loyalty_tier", true);
        assert!(waiting_for(&waiting, &ready));
        assert!(!waiting_for(&waiting, &property_of("crm", "loyalty_tier", false)), "not ready yet");
        assert!(!waiting_for(&waiting, &property_of("crm", "other", true)));
        assert!(!waiting_for(&waiting, &property_of("erp", "loyalty_tier", true)), "another integration's");
        let mut deals = ready.clone();
        deals.spec.object_type = "deals".into();
        assert!(!waiting_for(&waiting, &deals));
        assert!(!waiting_for(&mapping("crm", &["loyalty_tier"]), &ready), "never checked: not waiting");
    }

    #[tokio::test]
    async fn an_oauth_integration_is_called_with_its_managed_access_token() {
        let mapping = mapping("crm", &["firstname"]);
        let world = World::with(&[SCHEMA_READ], with_oauth, &[&mapping]).await;
        // Only the token the integration reconciler keeps, not the app's refresh token nor a
        // private app token.
        let mut managed = hubspot_secret(&[("token", TOKEN)]);
        managed["metadata"]["name"] = json!("crm-hubspot-access-token");
        world.api.insert("secrets", managed);
        let mut other = hubspot_secret(&[("token", "pat-na1-not-the-managed-token")]);
        other["metadata"]["name"] = json!("hubspot-app");
        world.api.insert("secrets", other);
        world.api.insert("secrets", hubspot_secret(&[("token", "pat-na1-not-the-managed-token")]));
        world.reconcile(&mapping).await.expect("reconcile succeeds");
        assert_eq!(condition_state(&world.stored(&mapping), "PropertiesExist"), state("True", "PropertiesExist"));
    }

    #[tokio::test]
    async fn missing_properties_are_listed() {
        let mapping = mapping("crm", &["firstname", "loyalty_tier", "favourite_colour"]);
        let world = World::with(&[SCHEMA_READ], as_is, &[&mapping]).await;
        let action = world.reconcile(&mapping).await.expect("reconcile succeeds");
        assert_eq!(action, Action::requeue(UNHEALTHY_REQUEUE));
        let stored = world.stored(&mapping);
        assert_eq!(condition_state(&stored, "IntegrationFound"), state("True", "IntegrationFound"));
        assert_eq!(condition_state(&stored, "PropertiesExist"), state("False", "PropertiesMissing"));
        assert_eq!(
            condition(&stored, "PropertiesExist")["message"],
            "Properties missing on contacts: loyalty_tier, favourite_colour"
        );
        assert_eq!(condition_state(&stored, "Ready"), state("False", "PropertiesMissing"));
        assert_eq!(stored["status"]["missingProperties"], json!(["loyalty_tier", "favourite_colour"]));
        assert_eq!(event_reasons(&world.api), reasons(&[("Warning", "PropertiesMissing")]));
    }

    #[tokio::test]
    async fn token_without_contact_scopes_is_reported_with_the_required_scopes() {
        let mapping = mapping("crm", &["firstname"]);
        let world = World::with(&["crm.objects.deals.read"], as_is, &[&mapping]).await;
        world.reconcile(&mapping).await.expect("reconcile succeeds");
        let stored = world.stored(&mapping);
        assert_eq!(condition_state(&stored, "PropertiesExist"), state("False", "MISSING_SCOPES"));
        let message = condition(&stored, "PropertiesExist")["message"].as_str().unwrap().to_string();
        assert!(message.starts_with("HubSpot answered 403: "), "{message}");
        assert!(message.contains("Required scopes: "), "{message}");
        assert!(message.contains(SCHEMA_READ), "{message}");
        assert!(message.contains("(correlationId "), "{message}");
        assert_eq!(condition_state(&stored, "Ready"), state("False", "MISSING_SCOPES"));
        assert_eq!(event_reasons(&world.api), reasons(&[("Warning", "PropertiesMissing")]));
    }

    #[tokio::test]
    async fn missing_token_secret_leaves_properties_unknown() {
        let mapping = mapping("crm", &["firstname"]);
        let integration = to_json(&integration("http://127.0.0.1:9", &[]));
        let objects = [("hubspotintegrations", integration.clone()), ("propertymappings", to_json(&mapping))];
        let (ctx, api) = fake_api_context(objects, [integration]).await;
        reconcile(Arc::new(mapping.clone()), ctx).await.expect("reconcile succeeds");
        let stored = api.get("/apis/hubspot.io/v1alpha1/namespaces/default/propertymappings/contacts").unwrap();
        assert_eq!(condition_state(&stored, "IntegrationFound"), state("True", "IntegrationFound"));
        assert_eq!(condition_state(&stored, "PropertiesExist"), state("Unknown", "SecretNotFound"));
        assert_eq!(condition_state(&stored, "Ready"), state("False", "SecretNotFound"));
        assert_eq!(event_reasons(&api), reasons(&[]), "nothing announced");
    }

    #[tokio::test]
    async fn mapping_of_an_absent_integration_is_not_ready() {
        let mapping = mapping("crm", &["firstname"]);
        let (ctx, api) = fake_api_context([("propertymappings", to_json(&mapping))], []).await;
        let action = reconcile(Arc::new(mapping.clone()), ctx).await.expect("reconcile succeeds");
        assert_eq!(action, Action::requeue(UNHEALTHY_REQUEUE));
        let stored = api.get("/apis/hubspot.io/v1alpha1/namespaces/default/propertymappings/contacts").unwrap();
        assert_eq!(condition_state(&stored, "IntegrationFound"), state("False", "IntegrationNotFound"));
        assert_eq!(
            condition(&stored, "IntegrationFound")["message"],
            r#"HubSpotIntegration "crm" not found in namespace "default""#
        );
        assert_eq!(condition_state(&stored, "PropertiesExist"), state("Unknown", "IntegrationNotFound"));
        assert_eq!(condition_state(&stored, "Ready"), state("False", "IntegrationNotFound"));
        assert_eq!(stored["status"]["observedGeneration"], 4);
        assert_eq!(event_reasons(&api), reasons(&[("Warning", "IntegrationNotFound")]));
    }

    #[tokio::test]
    async fn paused_mapping_reports_it_and_looks_nothing_up() {
        let mapping = annotated(mapping("crm", &["firstname"]), "hubspot.io/paused", "true");
        let world = World::with(&[SCHEMA_READ], as_is, &[&mapping]).await;
        let action = world.reconcile(&mapping).await.expect("reconcile succeeds");
        assert_eq!(action, Action::await_change());
        let stored = world.stored(&mapping);
        assert_eq!(condition_state(&stored, "Ready"), state("Unknown", "Paused"));
        assert_eq!(condition(&stored, "Ready")["observedGeneration"], 4);
        let calls = world.api.calls();
        assert_eq!((calls.gets, calls.lists, calls.status_patches, calls.events), (0, 0, 1, 0), "{calls:?}");
        assert_eq!(hubspot_calls(&world.hubspot).await, Vec::<String>::new());
    }

    #[tokio::test]
    async fn a_reconcile_request_is_echoed_and_kept_until_the_next_one() {
        let mapping = annotated(mapping("crm", &["firstname"]), "hubspot.io/reconcile-requested-at", "1");
        let world = World::with(&[SCHEMA_READ], as_is, &[&mapping]).await;
        world.reconcile(&mapping).await.expect("reconcile succeeds");
        assert_eq!(world.stored(&mapping)["status"]["lastHandledReconcileAt"], "1");
        // The annotation removed later: the last handled request stays on record.
        world.annotate(&mapping, "hubspot.io/reconcile-requested-at", Value::Null).await;
        world.reconcile(&mapping).await.expect("reconcile succeeds");
        let stored = world.stored(&mapping);
        assert_eq!(stored["metadata"]["annotations"].get("hubspot.io/reconcile-requested-at"), None, "{stored}");
        assert_eq!(stored["status"]["lastHandledReconcileAt"], "1");
    }

    /// The mapping controller against the Kubernetes API stand-in holding integration `crm` and
    /// mapping `contacts`, once its first reconcile has settled.
    async fn running_controller() -> (RunningEmulator, Arc<Context>, FakeApiServer, tokio::task::JoinHandle<()>) {
        let hubspot = hubspot(&[(TOKEN, &[SCHEMA_READ, "crm.objects.contacts.read"])]).await;
        let crm = integration(&hubspot.base_url(), &[]);
        let (ctx, api) = stand_in_context(&crm, TOKEN, &mapping("crm", &["firstname"])).await;
        let running = spawn_controller(controller(ctx.client.clone(), Some(NAMESPACE)), reconcile, ctx.clone());
        let first = settled_calls(&api).await;
        assert!(first.status_patches > 0, "the mapping was reconciled: {first:?}");
        (hubspot, ctx, api, running)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_integration_status_write_reconciles_its_mappings_only_when_its_credentials_start_working() {
        use kube::api::{Patch, PatchParams};
        use model::api::integration::condition_types::{AUTHENTICATED, RECEIVER_AVAILABLE};
        let (_hubspot, ctx, _api, running) = running_controller().await;

        let integrations = Api::<HubSpotIntegration>::namespaced(ctx.client.clone(), NAMESPACE);
        let write_conditions = |conditions: serde_json::Value| {
            let integrations = integrations.clone();
            async move {
                let status = serde_json::json!({ "status": { "conditions": conditions } });
                integrations.patch_status("crm", &PatchParams::default(), &Patch::Merge(&status)).await.unwrap();
            }
        };
        let condition = |type_: &str, status: &str| {
            serde_json::json!({ "type": type_, "status": status, "reason": "Test", "message": "",
                "lastTransitionTime": "2026-01-01T00:00:00Z" })
        };
        let before = reconciles::<PropertyMapping>(&ctx);
        write_conditions(serde_json::json!([condition(RECEIVER_AVAILABLE, "True")])).await;
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        assert_eq!(
            reconciles::<PropertyMapping>(&ctx),
            before,
            "the integration's status write reconciled its mapping"
        );

        let before = reconciles::<PropertyMapping>(&ctx);
        write_conditions(serde_json::json!([condition(RECEIVER_AVAILABLE, "True"), condition(AUTHENTICATED, "True")]))
            .await;
        more_reconciles_than::<PropertyMapping>(&ctx, before).await;
        running.abort();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_mapping_is_not_reconciled_by_its_own_status_write_but_by_its_annotations() {
        use kube::api::{Patch, PatchParams};
        let (_hubspot, ctx, _api, running) = running_controller().await;

        let mappings = Api::<PropertyMapping>::namespaced(ctx.client.clone(), NAMESPACE);
        let status = serde_json::json!({ "status": { "sync": { "receivers": "1/1", "recordsDelivered": 9,
            "recordsWritten": 0, "deadLetters": 0, "rejectedRecords": 0, "queuedForHubspot": 0,
            "pendingEvents": 3, "lagSeconds": 2 } } });
        let before = reconciles::<PropertyMapping>(&ctx);
        mappings.patch_status("contacts", &PatchParams::default(), &Patch::Merge(&status)).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        assert_eq!(reconciles::<PropertyMapping>(&ctx), before, "the mapping's status write reconciled it");

        let request =
            serde_json::json!({ "metadata": { "annotations": { "hubspot.io/reconcile-requested-at": "now" } } });
        let before = reconciles::<PropertyMapping>(&ctx);
        mappings.patch("contacts", &PatchParams::default(), &Patch::Merge(&request)).await.unwrap();
        more_reconciles_than::<PropertyMapping>(&ctx, before).await;
        running.abort();
    }
}
