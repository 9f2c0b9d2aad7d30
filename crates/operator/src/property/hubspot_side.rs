//! The steps of a `HubSpotProperty` visit that talk to HubSpot: reaching it through the
//! property's integration, reading the property, writing what [`decide`] asks, and archiving.

use std::sync::Arc;

use hubspot::HubSpotClient;
use hubspot::models::PropertyGroup;
use kube::ResourceExt;
use model::api::HubSpotProperty;
use model::api::property::HubSpotPropertySpec;

use super::plan::{Decision, PropertyChange, Write, decide};
use super::status::Visit;
use crate::catalogue::PropertyCatalogue;
use crate::{Context, Error, EventToPublish};

/// HubSpot as the property's integration reaches it.
pub(super) struct PropertyHubSpot {
    pub client: HubSpotClient,
    /// The integration's catalogue of the property's object type, kept current for the
    /// mappings that wait for the property.
    pub catalogue: Arc<PropertyCatalogue>,
}

/// Dereferences the property's integration and its token: HubSpot, or the visit's end when
/// either is unavailable.
pub(super) async fn connect(
    property: &HubSpotProperty,
    ctx: &Context,
) -> Result<Result<PropertyHubSpot, Visit>, Error> {
    let namespace = property.namespace().unwrap_or_default();
    let integration_name = &property.spec.integration_ref.name;
    let Some(integration) = ctx.integrations.get(&namespace, integration_name).await? else {
        return Ok(Err(Visit::IntegrationNotFound(format!(
            "HubSpotIntegration {integration_name:?} not found in namespace {namespace:?}"
        ))));
    };
    Ok(match ctx.integrations.token(&ctx.client, &integration).await? {
        Ok(token) => Ok(PropertyHubSpot {
            client: ctx.hubspot_client(&integration, token),
            catalogue: ctx.property_catalogue(&integration, &property.spec.object_type),
        }),
        Err(e) => Err(Visit::TokenUnavailable(e)),
    })
}

/// Reads HubSpot's property, [`decide`]s, and writes what the decision asks; `changes` gets
/// the Events of what was written.
pub(super) async fn visit_hubspot(
    property: &HubSpotProperty,
    hubspot: &PropertyHubSpot,
    changes: &mut Vec<EventToPublish>,
) -> Visit {
    let spec = &property.spec;
    let existing = match hubspot.client.get_property(&spec.object_type, &spec.name).await {
        Ok(existing) => existing,
        Err(e) => return Visit::Failed(e),
    };
    let hubspot_defined = existing.as_ref().and_then(|p| p.hubspot_defined).unwrap_or(false);
    let Decision { write, change } = decide(property, existing.as_ref());
    if let Some(write) = write
        && let Err(e) = apply(spec, &hubspot.client, &write, changes).await
    {
        return Visit::Failed(e);
    }
    // Before the status write that tells the mappings waiting for this property.
    hubspot.catalogue.record(&spec.name, change != PropertyChange::NotFound).await;
    Visit::Synced { change, hubspot_defined }
}

/// Makes `write` in HubSpot, the property's group first when it needs one.
async fn apply(
    spec: &HubSpotPropertySpec,
    hubspot: &HubSpotClient,
    write: &Write,
    changes: &mut Vec<EventToPublish>,
) -> Result<(), hubspot::Error> {
    if write.needs_group() {
        ensure_group(spec, hubspot, changes).await?;
    }
    match write {
        Write::Create(create) => hubspot.create_property(&spec.object_type, create).await?,
        Write::Update { patch, .. } => hubspot.update_property(&spec.object_type, &spec.name, patch).await?,
    };
    changes.push(write.announcement(spec));
    Ok(())
}

/// Creates the spec's property group when HubSpot does not have it.
async fn ensure_group(
    spec: &HubSpotPropertySpec,
    hubspot: &HubSpotClient,
    changes: &mut Vec<EventToPublish>,
) -> Result<(), hubspot::Error> {
    let Some(group) = &spec.group else { return Ok(()) };
    let groups = hubspot.list_property_groups(&spec.object_type).await?;
    if groups.iter().any(|g| g.name == group.name) {
        return Ok(());
    }
    let create = PropertyGroup { name: group.name.clone(), label: group.label.clone(), display_order: None };
    hubspot.create_property_group(&spec.object_type, &create).await?;
    changes.push(EventToPublish::normal(
        "PropertyGroupCreated",
        format!("Created HubSpot property group {} on {}", group.name, spec.object_type),
    ));
    Ok(())
}

/// Archives HubSpot's property; one HubSpot no longer has counts as archived. The Events of
/// what was done.
pub(super) async fn archive(
    spec: &HubSpotPropertySpec,
    hubspot: &PropertyHubSpot,
) -> Result<Vec<EventToPublish>, hubspot::Error> {
    let changes = match hubspot.client.archive_property(&spec.object_type, &spec.name).await {
        Ok(()) => vec![EventToPublish::normal(
            "PropertyArchived",
            format!("Archived HubSpot property {} on {}", spec.name, spec.object_type),
        )],
        Err(e) if e.status() == Some(404) => vec![],
        Err(e) => return Err(e),
    };
    hubspot.catalogue.record(&spec.name, false).await;
    Ok(changes)
}
