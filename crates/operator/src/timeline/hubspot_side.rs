//! The steps of a `HubSpotTimelineEventType` visit that reach outside: dereferencing the
//! integration and its secrets, then, by carrier, the ConfigMap of the app event, the legacy
//! event template, or the custom event definition.

use hubspot::{
    EventDefinition, EventDefinitionInput, EventDefinitionProperty, EventTemplateTokenOption, HubSpotClient, Secret,
};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use kube::{Resource, ResourceExt};
use model::api::HubSpotTimelineEventType;
use model::api::integration::{CredentialKind, HubSpotIntegration};
use model::api::timeline::{Carrier, HubSpotTimelineEventTypeSpec, LegacyApp, TimelineToken, TokenType};

use super::build::{app_event_config_map, app_event_config_map_name, carrier, event_template, template_drift};
use super::status::{Change, Visit};
use crate::kube_api::{apply, read_secrets};
use crate::{Context, Error, EventToPublish};

/// The event type's integration and how HubSpot is reached for it, or the visit's end.
pub(super) struct Reached {
    pub integration: std::sync::Arc<HubSpotIntegration>,
    pub carrier: Carrier,
}

/// Dereferences the integration and validates the spec against it.
pub(super) async fn dereference(
    event_type: &HubSpotTimelineEventType,
    ctx: &Context,
) -> Result<Result<Reached, Visit>, Error> {
    let namespace = event_type.namespace().unwrap_or_default();
    let name = &event_type.spec.integration_ref.name;
    let Some(integration) = ctx.integrations.get(&namespace, name).await? else {
        return Ok(Err(Visit::IntegrationNotFound(format!(
            "HubSpotIntegration {name:?} not found in namespace {namespace:?}"
        ))));
    };
    let carrier = carrier(&integration, &event_type.spec);
    if let Some(invalid) = invalid(&integration, &event_type.spec) {
        return Ok(Err(invalid));
    }
    Ok(Ok(Reached { integration, carrier }))
}

/// Why the spec cannot work with `integration`: legacy timeline events are sent with an
/// OAuth app's access token (private apps cannot create timeline events, as HubSpot rules), and
/// the template is kept with the legacy app's developer API key.
fn invalid(integration: &HubSpotIntegration, spec: &HubSpotTimelineEventTypeSpec) -> Option<Visit> {
    if spec.registration != model::api::timeline::Registration::Api {
        return None;
    }
    if !matches!(integration.spec.credentials.kind(), Ok(CredentialKind::OAuth(_))) {
        return Some(Visit::Invalid(
            "PrivateAppCannotCreateTimelineEvents",
            "Registration Api needs an integration with OAuth app credentials: HubSpot does not let private apps \
             create timeline events (use registration Rendered, which sends custom events)"
                .into(),
        ));
    }
    if spec.legacy_app.is_none() {
        return Some(Visit::Invalid(
            "LegacyAppMissing",
            "Registration Api needs legacyApp (appId, developerApiKey)".into(),
        ));
    }
    None
}

/// Makes HubSpot (or the project's ConfigMap) hold the event type, by carrier; `changes` gets
/// the Events of what was written.
pub(super) async fn register(
    event_type: &HubSpotTimelineEventType,
    reached: &Reached,
    ctx: &Context,
    changes: &mut Vec<EventToPublish>,
) -> Result<Visit, Error> {
    let integration = &reached.integration;
    if reached.carrier == Carrier::AppEvents {
        return render(event_type, integration, ctx).await;
    }
    let token = match ctx.integrations.token(&ctx.client, integration).await? {
        Ok(token) => token,
        Err(e) => return Ok(Visit::SecretUnavailable("the HubSpot token", e)),
    };
    let client = ctx.hubspot_client(integration, token);
    match (&event_type.spec.legacy_app, reached.carrier) {
        (Some(app), Carrier::TimelineEvents) => {
            let namespace = event_type.namespace().unwrap_or_default();
            let key = &app.developer_api_key;
            let secrets = read_secrets(&ctx.client, &namespace, std::slice::from_ref(&key.name)).await?;
            match secrets.value(key) {
                Ok(api_key) => Ok(keep_template(&event_type.spec, app, &Secret::new(api_key), &client, changes).await),
                Err(e) => Ok(Visit::SecretUnavailable("the developer API key", e)),
            }
        }
        _ => Ok(keep_definition(&event_type.spec, &client, changes).await),
    }
}

/// Server-side applies the ConfigMap with the app event's hsmeta file.
async fn render(
    event_type: &HubSpotTimelineEventType,
    integration: &HubSpotIntegration,
    ctx: &Context,
) -> Result<Visit, Error> {
    let owner =
        event_type.controller_owner_ref(&()).ok_or_else(|| Error::MissingObjectKey(event_type.name_any(), "uid"))?;
    let namespace = event_type.namespace().unwrap_or_default();
    apply(&Api::<ConfigMap>::namespaced(ctx.client.clone(), &namespace), &app_event_config_map(event_type, &owner))
        .await?;
    let portal_id = integration.spec.portal_id.or(integration.status.as_ref().and_then(|s| s.hub_id));
    Ok(Visit::Rendered {
        config_map: app_event_config_map_name(event_type),
        hubspot_name: portal_id.map(|portal| format!("ae{portal}_{}", event_type.spec.name)),
    })
}

/// Adopts the app's template named `spec.name`, creates it when missing, updates it when it
/// drifted (but for its object type, which HubSpot never changes).
async fn keep_template(
    spec: &HubSpotTimelineEventTypeSpec,
    app: &LegacyApp,
    api_key: &Secret,
    client: &HubSpotClient,
    changes: &mut Vec<EventToPublish>,
) -> Visit {
    let desired = event_template(spec);
    let found = match client.list_event_templates(app.app_id, api_key).await {
        Ok(templates) => templates.into_iter().find(|t| t.name == spec.name),
        Err(e) => return Visit::Failed(e),
    };
    let registered = |change, id: String| Visit::Registered { change, template_id: Some(id.clone()), hubspot_name: id };
    let Some(found) = found else {
        return match client.create_event_template(app.app_id, api_key, &desired).await {
            Ok(created) => {
                changes.push(EventToPublish::normal(
                    "EventTemplateCreated",
                    format!("Created event template {}", spec.name),
                ));
                registered(Change::Created, created.id.unwrap_or_default())
            }
            Err(e) => Visit::Failed(e),
        };
    };
    let id = found.id.clone().unwrap_or_default();
    let drift = template_drift(&desired, &found);
    if drift.iter().any(|field| field == "objectType") {
        return registered(Change::Drifted { fields: drift, usable: false }, id);
    }
    if drift.is_empty() {
        return registered(Change::InSync, id);
    }
    match client.update_event_template(app.app_id, api_key, &id, &desired).await {
        Ok(_) => {
            changes.push(EventToPublish::normal(
                "EventTemplateUpdated",
                format!("Updated event template {}: {}", spec.name, drift.join(", ")),
            ));
            registered(Change::Updated(drift), id)
        }
        Err(e) => Visit::Failed(e),
    }
}

/// Deletes the template of the type's last status; one HubSpot no longer has counts as deleted.
pub(super) async fn delete_template(
    event_type: &HubSpotTimelineEventType,
    ctx: &Context,
) -> Result<Result<(), Visit>, Error> {
    let (Some(app), Some(id)) =
        (&event_type.spec.legacy_app, event_type.status.as_ref().and_then(|s| s.template_id.as_ref()))
    else {
        return Ok(Ok(()));
    };
    let reached = match dereference(event_type, ctx).await? {
        Ok(reached) => reached,
        Err(visit) => return Ok(Err(visit)),
    };
    let namespace = event_type.namespace().unwrap_or_default();
    let key = &app.developer_api_key;
    let api_key = match read_secrets(&ctx.client, &namespace, std::slice::from_ref(&key.name)).await?.value(key) {
        Ok(api_key) => Secret::new(api_key),
        Err(e) => return Ok(Err(Visit::SecretUnavailable("the developer API key", e))),
    };
    let client = match ctx.integrations.token(&ctx.client, &reached.integration).await? {
        Ok(token) => ctx.hubspot_client(&reached.integration, token),
        Err(e) => return Ok(Err(Visit::SecretUnavailable("the HubSpot token", e))),
    };
    Ok(client.delete_event_template(app.app_id, &api_key, id).await.map_err(Visit::Failed))
}

/// HubSpot's type of a custom event property for a token type.
fn property_type(token_type: TokenType) -> &'static str {
    match token_type {
        TokenType::Date => "datetime",
        other => other.as_str(),
    }
}

fn definition_property(token: &TimelineToken) -> EventDefinitionProperty {
    EventDefinitionProperty {
        name: token.name.clone(),
        label: token.label.clone(),
        property_type: property_type(token.type_).into(),
        options: token
            .options
            .iter()
            .map(|o| EventTemplateTokenOption { value: o.value.clone(), label: o.label.clone() })
            .collect(),
    }
}

/// The custom event definition HubSpot should hold for `spec`.
pub fn event_definition(spec: &HubSpotTimelineEventTypeSpec) -> EventDefinitionInput {
    EventDefinitionInput {
        label: spec.label.clone(),
        name: spec.name.clone(),
        description: None,
        primary_object: spec.object_type.project_name().into(),
        property_definitions: spec.tokens.iter().map(definition_property).collect(),
    }
}

/// What differs between the definition HubSpot holds and `desired`: `(label changed, tokens
/// to add, fields HubSpot's API cannot change)`. Properties HubSpot has that the spec lacks
/// are left (occurrences simply do not send them).
pub fn definition_drift(
    desired: &EventDefinitionInput,
    found: &EventDefinition,
) -> (bool, Vec<EventDefinitionProperty>, Vec<String>) {
    let relabel = found.labels.singular.as_deref() != Some(desired.label.as_str());
    let mut missing = vec![];
    let mut fixed = vec![];
    if found.primary_object != desired.primary_object {
        fixed.push("objectType".to_string());
    }
    for property in &desired.property_definitions {
        match found.properties.iter().find(|p| p.name == property.name) {
            None => missing.push(property.clone()),
            Some(have)
                if have.property_type != property.property_type
                    || have.label != property.label
                    || have.options != property.options =>
            {
                fixed.push(format!("tokens.{}", property.name));
            }
            Some(_) => {}
        }
    }
    (relabel, missing, fixed)
}

/// Adopts the account's custom event definition named `spec.name`, creates it when missing,
/// relabels it and adds the properties of new tokens (all HubSpot's API lets change). `dev`
/// mode calls it too, against the emulator.
pub async fn keep_definition(
    spec: &HubSpotTimelineEventTypeSpec,
    client: &HubSpotClient,
    changes: &mut Vec<EventToPublish>,
) -> Visit {
    let desired = event_definition(spec);
    let registered = |change, found: &EventDefinition| Visit::Registered {
        change,
        template_id: None,
        hubspot_name: found.fully_qualified_name.clone(),
    };
    let found = match client.get_event_definition(&spec.name).await {
        Ok(Some(found)) => found,
        Ok(None) => {
            return match client.create_event_definition(&desired).await {
                Ok(created) => {
                    changes.push(EventToPublish::normal(
                        "EventDefinitionCreated",
                        format!("Created custom event definition {}", spec.name),
                    ));
                    registered(Change::Created, &created)
                }
                Err(e) => Visit::Failed(e),
            };
        }
        Err(e) => return Visit::Failed(e),
    };
    let (relabel, missing, fixed) = definition_drift(&desired, &found);
    let mut updated = vec![];
    if relabel {
        if let Err(e) = client.update_event_definition_label(&spec.name, &spec.label).await {
            return Visit::Failed(e);
        }
        updated.push("label".to_string());
    }
    for property in &missing {
        if let Err(e) = client.create_event_definition_property(&spec.name, property).await {
            return Visit::Failed(e);
        }
        updated.push(format!("tokens.{}", property.name));
    }
    if !updated.is_empty() {
        changes.push(EventToPublish::normal(
            "EventDefinitionUpdated",
            format!("Updated custom event definition {}: {}", spec.name, updated.join(", ")),
        ));
    }
    let usable = !fixed.iter().any(|f| f == "objectType");
    match (fixed.is_empty(), updated.is_empty()) {
        (false, _) => registered(Change::Drifted { fields: fixed, usable }, &found),
        (true, true) => registered(Change::InSync, &found),
        (true, false) => registered(Change::Updated(updated), &found),
    }
}
