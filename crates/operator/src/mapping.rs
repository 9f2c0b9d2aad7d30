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
use model::api::{HubSpotProperty, PropertyMapping, is_paused, reconcile_request};

/// The mapping controller: reconciles on changes of mappings, of the integrations they
/// reference (an integration appearing or going, its spec changing, or HubSpot starting or
/// ceasing to accept its credentials: see [`integration_changes`](super::watches::integration_changes)),
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
        && mapping.spec.object_type == property.spec.object_type
        && mapping.status.as_ref().is_some_and(|s| s.missing_properties.contains(&property.spec.name))
}

/// One reconcile of `mapping`.
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
    let lookup = match &integration {
        None => PropertyLookup::IntegrationNotFound,
        Some(integration) => match ctx.integrations.token(&ctx.client, integration).await? {
            Err(e) => PropertyLookup::TokenUnavailable(e),
            Ok(token) => {
                let hubspot = ctx.hubspot_client(integration, token);
                let object_type = &mapping.spec.object_type;
                // A reconcile request asks for HubSpot's current state, not the catalogue's.
                let requested = reconcile_request(mapping.as_ref()).is_some_and(|request| {
                    mapping.status.as_ref().and_then(|s| s.last_handled_reconcile_at.as_ref()) != Some(&request)
                });
                let catalogue = ctx.property_catalogue(integration, object_type);
                let required = required_properties(&mapping);
                match catalogue.lookup(&hubspot, object_type, &required, ctx.catalogue_freshness(), requested).await {
                    Ok(names) => PropertyLookup::Listed(names),
                    Err(e) => PropertyLookup::Failed(e),
                }
            }
        },
    };

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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::fixtures::*;
    use emulator::RunningEmulator;
    use model::api::HubSpotIntegration;
    use test_support::FakeApiServer;

    const STATUS: &str = "/apis/hubspot.io/v1alpha1/namespaces/default/propertymappings/contacts/status";
    const TOKEN_SECRET: &str = "/api/v1/namespaces/default/secrets/hubspot";
    const TOKEN: &str = "pat-na1-11111111-2222-3333-4444-555555555555";
    const SCHEMA_READ: &str = "crm.schemas.contacts.read";
    const LEADS_STATUS: &str = "/apis/hubspot.io/v1alpha1/namespaces/default/propertymappings/leads/status";
    const PROPERTIES: &str = "/crm/v3/properties/contacts";

    #[tokio::test]
    async fn mapping_whose_properties_exist_is_ready() {
        let hubspot = hubspot(&[(TOKEN, &[SCHEMA_READ, "crm.objects.contacts.read"])]).await;
        let mut mapping = mapping("crm", &["firstname", "lastname"]);
        // A previous visit found properties missing; the status patch must clear the list.
        mapping.status = Some(model::api::PropertyMappingStatus {
            missing_properties: vec!["lastname".into()],
            ..Default::default()
        });
        let integration = to_json(&integration(&hubspot.base_url(), &[]));
        let (ctx, api) = test_context();
        given_integrations(&ctx, [integration.clone()]);
        let object = to_json(&mapping);
        let action = run_scenario(api, reconcile(Arc::new(mapping), ctx), |mut api| async move {
            api.get(TOKEN_SECRET, Some(hubspot_secret(&[("token", TOKEN)]))).await;
            api.event("Normal", "Ready").await;
            let patch = api.merge_status(STATUS, object).await;
            for type_ in ["Ready", "IntegrationFound", "PropertiesExist"] {
                let c = condition(&patch, type_);
                assert_eq!(c["status"], "True", "{c}");
                assert_eq!(c["observedGeneration"], 4, "{c}");
            }
            let status = patch["status"].as_object().unwrap();
            assert_eq!(status.get("missingProperties"), Some(&serde_json::Value::Null));
            api
        })
        .await
        .expect("reconcile succeeds");
        assert_eq!(action, Action::requeue(crate::SYNC_REFRESH), "the sync figures are read again");
    }

    #[tokio::test]
    async fn mappings_share_one_property_listing_and_an_unchanged_status_is_not_written() {
        let hubspot = hubspot(&[(TOKEN, &[SCHEMA_READ])]).await;
        let integration = to_json(&integration(&hubspot.base_url(), &[]));
        let contacts = mapping("crm", &["firstname"]);
        let mut leads = mapping("crm", &["lastname"]);
        leads.metadata.name = Some("leads".into());
        // As the watch delivers `contacts` after its status write.
        let mut written = contacts.clone();
        let names = Arc::new(["email", "firstname"].map(String::from).into_iter().collect());
        written.status =
            Some(mapping_status(&written, &PropertyLookup::Listed(names), &ReceiverReports::not_available()));
        let requested = annotated(written.clone(), "hubspot.io/reconcile-requested-at", "now");
        let objects = [to_json(&contacts), to_json(&leads), to_json(&requested)];

        let (ctx, api) = test_context();

        given_integrations(&ctx, [integration.clone()]);
        let base_url = hubspot.base_url();
        let visits = async move {
            reconcile(Arc::new(contacts), ctx.clone()).await?;
            reconcile(Arc::new(leads), ctx.clone()).await?;
            let listed = hubspot_calls_at(&base_url).await;
            // The visit its own status write causes: the same status, so nothing is read or written.
            reconcile(Arc::new(written), ctx.clone()).await?;
            let unchanged = hubspot_calls_at(&base_url).await;
            // A reconcile request reads HubSpot again.
            reconcile(Arc::new(requested), ctx).await?;
            Ok::<_, Error>((listed, unchanged))
        };
        let (listed, unchanged) = run_scenario(api, visits, |mut api| async move {
            let [contacts, leads, requested] = objects;
            let token = || Some(hubspot_secret(&[("token", TOKEN)]));
            // One read of the token Secret serves every mapping of the integration.
            api.get(TOKEN_SECRET, token()).await;
            for (status, object) in [(STATUS, contacts), (LEADS_STATUS, leads)] {
                api.event("Normal", "Ready").await;
                let patch = api.merge_status(status, object).await;
                assert_eq!(condition_state(&patch, "PropertiesExist").0, "True");
            }
            let patch = api.merge_status(STATUS, requested).await;
            assert_eq!(patch["status"]["lastHandledReconcileAt"], "now");
            api
        })
        .await
        .expect("reconciles succeed");
        assert_eq!(listed, [PROPERTIES], "one listing for both mappings");
        assert_eq!(unchanged, [PROPERTIES]);
        assert_eq!(hubspot_calls(&hubspot).await, [PROPERTIES, PROPERTIES]);
    }

    const ENDPOINT_SLICES: &str = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices";

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

    #[tokio::test]
    async fn a_mapping_shows_what_the_receiver_pods_report_of_it() {
        let hubspot = hubspot(&[(TOKEN, &[SCHEMA_READ, "crm.objects.contacts.read"])]).await;
        let receiver = ReportingReceiver::start(&["default/contacts"]).await;
        receiver.metrics.activity.delivered("default/contacts", 4);
        receiver.metrics.activity.succeeded("default/contacts", 1_764_000_000_000);
        // A second ready pod that does not answer.
        let gone = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let slices = vec![receiver.endpoints(), receiver_endpoints(&["127.0.0.1"], gone, gone)];

        let mapping = mapping("crm", &["firstname"]);
        let integration = to_json(&with_receiver_available(integration(&hubspot.base_url(), &[])));
        let (ctx, api) = test_context();
        given_integrations(&ctx, [integration.clone()]);
        let object = to_json(&mapping);
        let action = run_scenario(api, reconcile(Arc::new(mapping), ctx), |mut api| async move {
            api.get(TOKEN_SECRET, Some(hubspot_secret(&[("token", TOKEN)]))).await;
            let listed = api.list(ENDPOINT_SLICES, "EndpointSlice", "discovery.k8s.io/v1", slices).await;
            assert_eq!(listed.query, "&labelSelector=kubernetes.io%2Fservice-name%3Dcrm-receiver");
            api.event("Normal", "Ready").await;
            let patch = api.merge_status(STATUS, object).await;
            assert_eq!(condition_state(&patch, "Synced"), ("True".into(), "InSync".into()));
            let message = condition(&patch, "Synced")["message"].as_str().unwrap().to_string();
            assert!(message.starts_with("4 records delivered, 0 written to HubSpot; 0 events pending, 0 s behind (1 of 2 receiver pods did not answer: "), "{message}");
            assert_eq!(
                patch["status"]["sync"],
                serde_json::json!({
                    "receivers": "1/2", "recordsDelivered": 4, "recordsWritten": 0, "deadLetters": 0,
                    "rejectedRecords": 0, "queuedForHubspot": 0, "pendingEvents": 0, "lagSeconds": 0,
                    "lastSuccessTime": "2025-11-24T16:00:00Z",
                })
            );
            api
        })
        .await
        .expect("reconcile succeeds");
        assert_eq!(action, Action::requeue(crate::SYNC_REFRESH), "the figures are read again soon");
    }

    #[tokio::test]
    async fn a_failing_sync_is_a_warning_with_the_receivers_error() {
        let hubspot = hubspot(&[(TOKEN, &[SCHEMA_READ])]).await;
        let receiver = ReportingReceiver::start(&["default/contacts"]).await;
        let error = "reading contacts from HubSpot: HubSpot answered 403: MISSING_SCOPES";
        receiver.metrics.activity.failed("default/contacts", error, 1_764_000_000_000);
        let slices = vec![receiver.endpoints()];

        let mapping = mapping("crm", &["firstname"]);
        let integration = to_json(&with_receiver_available(integration(&hubspot.base_url(), &[])));
        let (ctx, api) = test_context();
        given_integrations(&ctx, [integration.clone()]);
        let object = to_json(&mapping);
        run_scenario(api, reconcile(Arc::new(mapping), ctx), |mut api| async move {
            api.get(TOKEN_SECRET, Some(hubspot_secret(&[("token", TOKEN)]))).await;
            api.list(ENDPOINT_SLICES, "EndpointSlice", "discovery.k8s.io/v1", slices).await;
            api.event("Normal", "Ready").await;
            let warning = api.event("Warning", "NotSynced").await;
            assert_eq!(warning["note"], format!("{error}; retrying"));
            let patch = api.merge_status(STATUS, object).await;
            assert_eq!(condition_state(&patch, "Synced"), ("False".into(), "SyncFailing".into()));
            assert_eq!(patch["status"]["sync"]["lastError"], error);
            assert_eq!(patch["status"]["sync"]["lastErrorTime"], "2025-11-24T16:00:00Z");
            api
        })
        .await
        .expect("reconcile succeeds");
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
        let hubspot = hubspot(&[(TOKEN, &[SCHEMA_READ])]).await;
        let mapping = mapping("crm", &["firstname"]);
        let integration = to_json(&with_oauth(integration(&hubspot.base_url(), &[])));
        let (ctx, api) = test_context();
        given_integrations(&ctx, [integration.clone()]);
        let object = to_json(&mapping);
        run_scenario(api, reconcile(Arc::new(mapping), ctx), |mut api| async move {
            // The token the integration reconciler keeps, not the app's refresh token.
            let mut managed = hubspot_secret(&[("token", TOKEN)]);
            managed["metadata"]["name"] = serde_json::json!("crm-hubspot-access-token");
            api.get("/api/v1/namespaces/default/secrets/crm-hubspot-access-token", Some(managed)).await;
            api.event("Normal", "Ready").await;
            let patch = api.merge_status(STATUS, object).await;
            assert_eq!(condition_state(&patch, "PropertiesExist").0, "True");
            api
        })
        .await
        .expect("reconcile succeeds");
    }

    #[tokio::test]
    async fn missing_properties_are_listed() {
        let hubspot = hubspot(&[(TOKEN, &[SCHEMA_READ])]).await;
        let mapping = mapping("crm", &["firstname", "loyalty_tier", "favourite_colour"]);
        let integration = to_json(&integration(&hubspot.base_url(), &[]));
        let (ctx, api) = test_context();
        given_integrations(&ctx, [integration.clone()]);
        let object = to_json(&mapping);
        let action = run_scenario(api, reconcile(Arc::new(mapping), ctx), |mut api| async move {
            api.get(TOKEN_SECRET, Some(hubspot_secret(&[("token", TOKEN)]))).await;
            api.event("Warning", "PropertiesMissing").await;
            let patch = api.merge_status(STATUS, object).await;
            assert_eq!(condition_state(&patch, "IntegrationFound"), ("True".into(), "IntegrationFound".into()));
            assert_eq!(condition_state(&patch, "PropertiesExist"), ("False".into(), "PropertiesMissing".into()));
            assert_eq!(
                condition(&patch, "PropertiesExist")["message"],
                "Properties missing on contacts: loyalty_tier, favourite_colour"
            );
            assert_eq!(condition_state(&patch, "Ready"), ("False".into(), "PropertiesMissing".into()));
            assert_eq!(patch["status"]["missingProperties"], serde_json::json!(["loyalty_tier", "favourite_colour"]));
            api
        })
        .await
        .expect("reconcile succeeds");
        assert_eq!(action, Action::requeue(UNHEALTHY_REQUEUE));
    }

    #[tokio::test]
    async fn token_without_contact_scopes_is_reported_with_the_required_scopes() {
        let hubspot = hubspot(&[(TOKEN, &["crm.objects.deals.read"])]).await;
        let mapping = mapping("crm", &["firstname"]);
        let integration = to_json(&integration(&hubspot.base_url(), &[]));
        let (ctx, api) = test_context();
        given_integrations(&ctx, [integration.clone()]);
        let object = to_json(&mapping);
        run_scenario(api, reconcile(Arc::new(mapping), ctx), |mut api| async move {
            api.get(TOKEN_SECRET, Some(hubspot_secret(&[("token", TOKEN)]))).await;
            api.event("Warning", "PropertiesMissing").await;
            let patch = api.merge_status(STATUS, object).await;
            assert_eq!(condition_state(&patch, "PropertiesExist"), ("False".into(), "MISSING_SCOPES".into()));
            let message = condition(&patch, "PropertiesExist")["message"].as_str().unwrap().to_string();
            assert!(message.starts_with("HubSpot answered 403: "), "{message}");
            assert!(message.contains("Required scopes: "), "{message}");
            assert!(message.contains(SCHEMA_READ), "{message}");
            assert!(message.contains("(correlationId "), "{message}");
            assert_eq!(condition_state(&patch, "Ready"), ("False".into(), "MISSING_SCOPES".into()));
            api
        })
        .await
        .expect("reconcile succeeds");
    }

    #[tokio::test]
    async fn missing_token_secret_leaves_properties_unknown() {
        let mapping = mapping("crm", &["firstname"]);
        let integration = to_json(&integration("http://127.0.0.1:9", &[]));
        let (ctx, api) = test_context();
        given_integrations(&ctx, [integration.clone()]);
        let object = to_json(&mapping);
        run_scenario(api, reconcile(Arc::new(mapping), ctx), |mut api| async move {
            api.get(TOKEN_SECRET, None).await;
            let patch = api.merge_status(STATUS, object).await;
            assert_eq!(condition_state(&patch, "IntegrationFound"), ("True".into(), "IntegrationFound".into()));
            assert_eq!(condition_state(&patch, "PropertiesExist"), ("Unknown".into(), "SecretNotFound".into()));
            assert_eq!(condition_state(&patch, "Ready"), ("False".into(), "SecretNotFound".into()));
            api
        })
        .await
        .expect("reconcile succeeds");
    }

    #[tokio::test]
    async fn mapping_of_an_absent_integration_is_not_ready() {
        let mapping = mapping("crm", &["firstname"]);
        let (ctx, api) = test_context();
        given_integrations(&ctx, []);
        let object = to_json(&mapping);
        let action = run_scenario(api, reconcile(Arc::new(mapping), ctx), |mut api| async move {
            api.event("Warning", "IntegrationNotFound").await;
            let patch = api.merge_status(STATUS, object).await;
            assert_eq!(condition_state(&patch, "IntegrationFound"), ("False".into(), "IntegrationNotFound".into()));
            assert_eq!(
                condition(&patch, "IntegrationFound")["message"],
                r#"HubSpotIntegration "crm" not found in namespace "default""#
            );
            assert_eq!(condition_state(&patch, "PropertiesExist"), ("Unknown".into(), "IntegrationNotFound".into()));
            assert_eq!(condition_state(&patch, "Ready"), ("False".into(), "IntegrationNotFound".into()));
            assert_eq!(patch["status"]["observedGeneration"], 4);
            api
        })
        .await
        .expect("reconcile succeeds");
        assert_eq!(action, Action::requeue(UNHEALTHY_REQUEUE));
    }

    #[tokio::test]
    async fn paused_mapping_reports_it_and_looks_nothing_up() {
        let mapping = annotated(mapping("crm", &["firstname"]), "hubspot.io/paused", "true");
        let (ctx, api) = test_context();
        let object = to_json(&mapping);
        let action = run_scenario(api, reconcile(Arc::new(mapping), ctx), |mut api| async move {
            let patch = api.merge_status(STATUS, object).await;
            assert_eq!(condition_state(&patch, "Ready"), ("Unknown".into(), "Paused".into()));
            assert_eq!(condition(&patch, "Ready")["observedGeneration"], 4);
            api
        })
        .await
        .expect("reconcile succeeds");
        assert_eq!(action, Action::await_change());
    }

    #[tokio::test]
    async fn a_reconcile_request_is_echoed_and_kept_until_the_next_one() {
        let mapping = annotated(mapping("crm", &["firstname"]), "hubspot.io/reconcile-requested-at", "1");
        let (ctx, api) = test_context();
        given_integrations(&ctx, []);
        let object = to_json(&mapping);
        run_scenario(api, reconcile(Arc::new(mapping.clone()), ctx), |mut api| async move {
            api.event("Warning", "IntegrationNotFound").await;
            let patch = api.merge_status(STATUS, object).await;
            assert_eq!(patch["status"]["lastHandledReconcileAt"], "1");
            api
        })
        .await
        .expect("reconcile succeeds");
        // The annotation removed later: the last handled request stays on record.
        let mut later = mapping;
        later.metadata.annotations = None;
        later.status = Some(model::api::PropertyMappingStatus {
            last_handled_reconcile_at: Some("1".into()),
            ..Default::default()
        });
        let status = crate::status::mapping_status(
            &later,
            &PropertyLookup::IntegrationNotFound,
            &ReceiverReports::integration_not_found(),
        );
        assert_eq!(status.last_handled_reconcile_at.as_deref(), Some("1"));
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
