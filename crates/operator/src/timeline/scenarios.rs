//! Reconciles of a `HubSpotTimelineEventType` against the Kubernetes API stand-in and the
//! HubSpot emulator, one per carrier: the ConfigMap of an OAuth app's app event, a legacy
//! template kept with the developer API key, a private app's custom event definition. Each
//! checks the end state and the HubSpot calls that matter, as counts.

use std::sync::Arc;

use kube::runtime::controller::Action;
use serde_json::{Value, json};

use super::tests::token;
use super::*;
use crate::fixtures::*;
use crate::resources::{ACCESS_TOKEN_KEY, access_token_secret_name};
use model::api::SecretKeyRef;
use model::api::timeline::{
    HubSpotTimelineEventTypeSpec, HubSpotTimelineEventTypeStatus, IntegrationRef, LegacyApp, TimelineObjectType,
    TokenType,
};

const TOKEN: &str = "pat-na1-11111111-2222-3333-4444-555555555555";
const DEFINITIONS_SCOPE: &str = "behavioral_events.event_definitions.read_write";
const DEFINITION: &str = "/events/v3/event-definitions/feature_used";
const DEFINITIONS: &str = "/events/v3/event-definitions";
const TEMPLATES: &str = "/integrators/timeline/v3/54321/event-templates";

fn spec() -> HubSpotTimelineEventTypeSpec {
    HubSpotTimelineEventTypeSpec {
        integration_ref: IntegrationRef { name: "crm".into() },
        object_type: TimelineObjectType::Contacts,
        name: "feature_used".into(),
        label: "Feature used".into(),
        header_template: Some("Used {{feature}}".into()),
        detail_template: None,
        tokens: vec![token("feature", TokenType::String)],
        registration: Registration::Rendered,
        legacy_app: None,
        deletion_policy: DeletionPolicy::Orphan,
    }
}

fn legacy(deletion_policy: DeletionPolicy) -> HubSpotTimelineEventTypeSpec {
    HubSpotTimelineEventTypeSpec {
        registration: Registration::Api,
        legacy_app: Some(LegacyApp {
            app_id: 54321,
            developer_api_key: SecretKeyRef { name: "developer".into(), key: "hapikey".into() },
        }),
        deletion_policy,
        ..spec()
    }
}

fn event_type(spec: HubSpotTimelineEventTypeSpec) -> HubSpotTimelineEventType {
    let mut event_type = HubSpotTimelineEventType::new("feature-used", spec);
    event_type.metadata.namespace = Some(NAMESPACE.into());
    event_type.metadata.uid = Some("0000-feature-used".into());
    event_type.metadata.generation = Some(1);
    event_type
}

/// A Secret `name` of the fixtures' namespace holding `entries`.
fn secret(name: &str, entries: &[(&str, &str)]) -> Value {
    let mut secret = hubspot_secret(entries);
    secret["metadata"]["name"] = json!(name);
    secret
}

/// A [`Scene`] whose stand-in holds the event type.
struct World {
    scene: Scene,
    event_type: HubSpotTimelineEventType,
}

impl std::ops::Deref for World {
    type Target = Scene;

    fn deref(&self) -> &Scene {
        &self.scene
    }
}

impl World {
    /// A private app integration whose token has `scopes`.
    async fn private_app(scopes: &[&str], spec: HubSpotTimelineEventTypeSpec) -> World {
        let event_type = event_type(spec);
        let objects = [("hubspottimelineeventtypes", to_json(&event_type))];
        World { scene: Scene::new(TOKEN, scopes, |i| i, objects).await, event_type }
    }

    /// An OAuth app integration (its access token in the managed Secret), and the developer
    /// API key in Secret `developer` unless `without_developer_key`.
    async fn oauth_app(event_type: HubSpotTimelineEventType, without_developer_key: bool) -> World {
        let integration = with_oauth(integration("http://unused", &[]));
        let mut objects = vec![
            ("hubspottimelineeventtypes", to_json(&event_type)),
            ("secrets", secret(&access_token_secret_name(&integration), &[(ACCESS_TOKEN_KEY, TOKEN)])),
        ];
        if !without_developer_key {
            objects.push(("secrets", secret("developer", &[("hapikey", emulator::DEFAULT_DEVELOPER_API_KEY)])));
        }
        World { scene: Scene::new(TOKEN, &[], with_oauth, objects).await, event_type }
    }

    async fn reconcile(&self) -> Result<Action, Error> {
        reconcile(Arc::new(self.stored()), self.ctx.clone()).await
    }

    fn stored(&self) -> HubSpotTimelineEventType {
        stored(&self.api, &self.event_type)
    }

    fn status(&self) -> HubSpotTimelineEventTypeStatus {
        self.stored().status.expect("a status")
    }

    /// `(status, reason)` of the stored condition `type_`.
    fn condition(&self, type_: &str) -> (String, String) {
        let status = self.status();
        let c = model::api::conditions::find(&status.conditions, type_).unwrap_or_else(|| panic!("no {type_}"));
        (c.status.clone(), c.reason.clone())
    }

    fn message(&self, type_: &str) -> String {
        model::api::conditions::find(&self.status().conditions, type_).expect("the condition").message.clone()
    }

    /// Replaces the stored spec (a user's edit: the generation goes up).
    fn edit(&self, spec: HubSpotTimelineEventTypeSpec) {
        let mut edited = self.stored();
        edited.spec = spec;
        edited.metadata.generation = edited.metadata.generation.map(|g| g + 1);
        self.api.insert("hubspottimelineeventtypes", to_json(&edited));
    }

    fn developer_client(&self) -> (hubspot::HubSpotClient, hubspot::Secret) {
        let key = hubspot::Secret::new(emulator::DEFAULT_DEVELOPER_API_KEY.to_string());
        (emulator_client(&self.hubspot, TOKEN), key)
    }
}

fn state(status: &str, reason: &str) -> (String, String) {
    (status.into(), reason.into())
}

#[tokio::test]
async fn a_private_apps_definition_is_created_then_adopted_without_writes() {
    let world = World::private_app(&[DEFINITIONS_SCOPE], spec()).await;
    assert_eq!(world.reconcile().await.expect("reconcile succeeds"), Action::requeue(crate::SYNC_REFRESH));
    assert_eq!(
        hubspot_requests(&world.hubspot).await,
        requests(&[("GET", DEFINITION, 404), ("POST", DEFINITIONS, 201)])
    );
    let status = world.status();
    assert_eq!(status.carrier, Some(model::api::timeline::Carrier::CustomEvents));
    assert_eq!(status.hubspot_name.as_deref(), Some("pe62515_feature_used"));
    assert_eq!(world.condition("Registered"), state("True", "Created"));
    assert_eq!(world.condition("Ready"), state("True", "Created"));
    assert_eq!(event_reasons(&world.api), reasons(&[("Normal", "EventDefinitionCreated")]));
    let held = emulator_client(&world.hubspot, TOKEN).get_event_definition("feature_used").await.unwrap().unwrap();
    assert_eq!(definition_drift(&event_definition(&spec()), &held), (false, vec![], vec![]));

    forget_hubspot_requests(&world.hubspot).await;
    world.reconcile().await.expect("reconcile succeeds");
    assert_eq!(hubspot_requests(&world.hubspot).await, requests(&[("GET", DEFINITION, 200)]), "no write");
    assert_eq!(world.condition("Registered"), state("True", "InSync"));
    let before = world.api.calls();
    world.reconcile().await.expect("reconcile succeeds");
    assert_eq!(world.api.calls().since(&before).status_patches, 0, "an unchanged status is not written");
}

#[tokio::test]
async fn a_new_token_adds_its_property_and_a_changed_type_is_drift() {
    let world = World::private_app(&[DEFINITIONS_SCOPE], spec()).await;
    world.reconcile().await.expect("reconcile succeeds");
    let mut more = spec();
    more.tokens.push(token("plan", TokenType::Number));
    more.label = "Feature in use".into();
    world.edit(more.clone());
    forget_hubspot_requests(&world.hubspot).await;
    world.reconcile().await.expect("reconcile succeeds");
    assert_eq!(
        hubspot_requests(&world.hubspot).await,
        requests(&[
            ("GET", DEFINITION, 200),
            ("PATCH", DEFINITION, 200),
            ("POST", &format!("{DEFINITION}/property"), 201)
        ])
    );
    assert_eq!(world.condition("Registered"), state("True", "Updated"));
    assert_eq!(world.status().drift, ["label", "tokens.plan"]);

    more.tokens[0].type_ = TokenType::Number;
    world.edit(more);
    world.reconcile().await.expect("reconcile succeeds");
    assert_eq!(world.condition("Registered"), state("False", "Drifted"));
    assert_eq!(world.status().drift, ["tokens.feature"]);
}

#[tokio::test]
async fn a_missing_scope_is_reported_with_its_name() {
    let world = World::private_app(&[], spec()).await;
    world.reconcile().await.expect("reconcile succeeds");
    let (ready, _) = world.condition("Ready");
    assert_eq!(ready, "False");
    assert!(world.message("Ready").contains(DEFINITIONS_SCOPE), "{}", world.message("Ready"));
    assert!(world.status().last_error.is_some());
    assert_eq!(event_reasons(&world.api), reasons(&[("Warning", "HubSpotCallFailed")]));
}

#[tokio::test]
async fn an_oauth_apps_event_type_is_rendered_into_its_config_map() {
    let world = World::oauth_app(event_type(spec()), true).await;
    world.reconcile().await.expect("reconcile succeeds");
    let config_map = world.api.get("/api/v1/namespaces/default/configmaps/feature-used-app-event").expect("applied");
    let file: Value = serde_json::from_str(config_map["data"]["feature_used-hsmeta.json"].as_str().unwrap()).unwrap();
    assert_eq!(file, build::app_event_hsmeta(&spec()));
    assert_eq!(config_map["metadata"]["ownerReferences"][0]["name"], "feature-used");
    let status = world.status();
    assert_eq!(status.hubspot_name.as_deref(), Some("ae62515_feature_used"));
    assert_eq!(status.config_map.as_deref(), Some("feature-used-app-event"));
    assert_eq!(world.condition("Rendered"), state("True", "Rendered"));
    assert_eq!(hubspot_requests(&world.hubspot).await, requests(&[]), "HubSpot has no API for app event types");
}

#[tokio::test]
async fn a_legacy_template_is_created_once_and_a_changed_label_updated() {
    let world = World::oauth_app(event_type(legacy(DeletionPolicy::Orphan)), false).await;
    world.reconcile().await.expect("reconcile succeeds");
    world.reconcile().await.expect("reconcile succeeds");
    assert_eq!(
        hubspot_requests(&world.hubspot).await,
        requests(&[("GET", TEMPLATES, 200), ("GET", TEMPLATES, 200), ("POST", TEMPLATES, 201)])
    );
    let status = world.status();
    let id = status.template_id.clone().expect("the template id");
    assert_eq!(status.hubspot_name.as_deref(), Some(id.as_str()));
    assert_eq!(world.condition("Registered"), state("True", "InSync"));

    let mut relabelled = legacy(DeletionPolicy::Orphan);
    relabelled.tokens[0].label = "Feature name".into();
    world.edit(relabelled.clone());
    forget_hubspot_requests(&world.hubspot).await;
    world.reconcile().await.expect("reconcile succeeds");
    let template = format!("{TEMPLATES}/{id}");
    assert_eq!(hubspot_requests(&world.hubspot).await, requests(&[("GET", TEMPLATES, 200), ("PUT", &template, 200)]));
    assert_eq!(world.condition("Registered"), state("True", "Updated"));
    assert_eq!(world.status().drift, ["tokens.feature"]);
    let (client, key) = world.developer_client();
    let held = client.get_event_template(54321, &key, &id).await.unwrap().unwrap();
    assert_eq!(build::template_drift(&build::event_template(&relabelled), &held), Vec::<String>::new());
}

#[tokio::test]
async fn an_existing_template_is_adopted() {
    let world = World::oauth_app(event_type(legacy(DeletionPolicy::Orphan)), false).await;
    let (client, key) = world.developer_client();
    let existing = client.create_event_template(54321, &key, &build::event_template(&spec())).await.unwrap();
    forget_hubspot_requests(&world.hubspot).await;
    world.reconcile().await.expect("reconcile succeeds");
    assert_eq!(hubspot_requests(&world.hubspot).await, requests(&[("GET", TEMPLATES, 200)]));
    assert_eq!(world.status().template_id, existing.id);
    assert_eq!(world.condition("Registered"), state("True", "InSync"));
}

#[tokio::test]
async fn the_delete_policy_deletes_the_template_before_the_finalizer_goes() {
    let world = World::oauth_app(event_type(legacy(DeletionPolicy::Delete)), false).await;
    assert_eq!(world.reconcile().await.expect("reconcile succeeds"), Action::await_change());
    assert_eq!(world.stored().metadata.finalizers.unwrap_or_default(), [FINALIZER]);
    world.reconcile().await.expect("reconcile succeeds");
    let id = world.status().template_id.expect("created");

    let mut deleting = world.stored();
    deleting.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now()));
    world.api.insert("hubspottimelineeventtypes", to_json(&deleting));
    forget_hubspot_requests(&world.hubspot).await;
    world.reconcile().await.expect("reconcile succeeds");
    assert_eq!(hubspot_requests(&world.hubspot).await, requests(&[("DELETE", &format!("{TEMPLATES}/{id}"), 204)]));
    assert_eq!(world.stored().metadata.finalizers.unwrap_or_default(), Vec::<String>::new());
    let (client, key) = world.developer_client();
    assert_eq!(client.get_event_template(54321, &key, &id).await.unwrap(), None);
}

#[tokio::test]
async fn the_orphan_policy_calls_hubspot_not_on_deletion() {
    let mut orphaned = event_type(legacy(DeletionPolicy::Orphan));
    orphaned.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now()));
    orphaned.metadata.finalizers = Some(vec!["example.com/other".into()]);
    let world = World::oauth_app(orphaned, false).await;
    world.reconcile().await.expect("reconcile succeeds");
    assert_eq!(hubspot_requests(&world.hubspot).await, requests(&[]));
    assert_eq!(world.api.calls().writes(), 0);
}

#[tokio::test]
async fn a_missing_developer_key_secret_is_reported() {
    let world = World::oauth_app(event_type(legacy(DeletionPolicy::Orphan)), true).await;
    world.reconcile().await.expect("reconcile succeeds");
    assert_eq!(world.condition("Ready").0, "False");
    assert!(world.message("Ready").contains("developer API key"), "{}", world.message("Ready"));
    assert_eq!(hubspot_requests(&world.hubspot).await, requests(&[]));
}

#[tokio::test]
async fn a_private_app_cannot_register_a_legacy_template() {
    let world = World::private_app(&[DEFINITIONS_SCOPE], legacy(DeletionPolicy::Orphan)).await;
    world.reconcile().await.expect("reconcile succeeds");
    assert_eq!(world.condition("Ready"), state("False", "PrivateAppCannotCreateTimelineEvents"));
    assert_eq!(world.condition("Registered"), state("False", "PrivateAppCannotCreateTimelineEvents"));
    assert_eq!(hubspot_requests(&world.hubspot).await, requests(&[]));
}

#[tokio::test]
async fn a_missing_integration_is_reported() {
    let event_type = event_type(spec());
    let (ctx, api) = fake_api_context([("hubspottimelineeventtypes", to_json(&event_type))], []).await;
    reconcile(Arc::new(event_type.clone()), ctx).await.expect("reconcile succeeds");
    let status = stored(&api, &event_type).status.expect("a status");
    let ready = model::api::conditions::find(&status.conditions, "Ready").unwrap();
    assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", "IntegrationNotFound"));
    assert_eq!(status.carrier, None);
}
