//! The dereference step: the mappings and event types of the integration's namespace and the Secrets it
//! references, read once per visit and handed to the build as the only inputs it may read.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use model::api::{HubSpotIntegration, HubSpotTimelineEventType, PropertyMapping};
use model::config::TimelineEventTypeConfig;

use super::children::ready_store;
use crate::resources::{self, belongs_to, mappings_of, timeline_event_types_of};
use crate::secrets::SecretStore;
use crate::{Context, Error};

/// What one visit of an integration works from: the integration, its `PropertyMapping`s, and
/// the Secrets it references. The Secrets are exactly those
/// [`resources::referenced_secret_names`] enumerates, so the build cannot resolve a reference
/// that was not dereferenced: it would find no such Secret.
#[derive(Clone, Debug)]
pub struct Dereferenced {
    pub integration: HubSpotIntegration,
    /// The mappings that reference the integration, sorted by name. Shared with the
    /// controller's cache rather than copied: an integration may have thousands.
    pub mappings: Vec<Arc<PropertyMapping>>,
    /// The receiver's timeline event types: those of the integration HubSpot knows.
    pub event_types: Vec<TimelineEventTypeConfig>,
    pub secrets: SecretStore,
}

impl Dereferenced {
    /// The integration's mappings, sorted by name.
    pub fn own_mappings(&self) -> Vec<&PropertyMapping> {
        self.mappings.iter().map(AsRef::as_ref).collect()
    }

    /// The names of the Secrets a visit of `integration` with `mappings` (its own or any) reads.
    pub fn secret_names<'a>(
        integration: &HubSpotIntegration,
        mappings: impl IntoIterator<Item = &'a PropertyMapping>,
    ) -> Vec<String> {
        resources::referenced_secret_names(integration, &mappings_of(integration, mappings))
    }

    /// Keeps of `mappings` those of the integration, and of `available` only the Secrets
    /// [`Dereferenced::secret_names`] lists: what [`dereference`] would have read from a
    /// namespace holding `mappings` and `available`.
    pub fn from_available(
        integration: HubSpotIntegration,
        mappings: Vec<PropertyMapping>,
        available: impl IntoIterator<Item = Secret>,
    ) -> Self {
        let mappings = own(&integration, mappings.into_iter().map(Arc::new));
        let names = Self::secret_names(&integration, mappings.iter().map(AsRef::as_ref));
        let secrets = SecretStore::new(available.into_iter().filter(|s| names.contains(&s.name_any())));
        Self { integration, mappings, event_types: vec![], secrets }
    }
}

/// Reads the integration's mappings (from the controller's cache of them once it holds a full
/// listing, otherwise with a LIST) and the Secrets it references. Secrets are not watched (only
/// the operator's own children are), so they are read afresh on each visit: one GET per
/// referenced Secret of this integration.
pub async fn dereference(integration: &HubSpotIntegration, ctx: &Context) -> Result<Dereferenced, Error> {
    let namespace =
        integration.namespace().ok_or_else(|| Error::MissingObjectKey(integration.name_any(), "namespace"))?;
    let mappings = match ready_store(&ctx.children.mappings) {
        Some(store) => own(integration, store.state()),
        None => {
            let listed =
                Api::<PropertyMapping>::namespaced(ctx.client.clone(), &namespace).list(&ListParams::default()).await?;
            own(integration, listed.items.into_iter().map(Arc::new))
        }
    };
    let event_types = match ready_store(&ctx.children.event_types) {
        Some(store) => timeline_event_types_of(integration, store.state().iter().map(AsRef::as_ref)),
        None => {
            let listed = Api::<HubSpotTimelineEventType>::namespaced(ctx.client.clone(), &namespace)
                .list(&ListParams::default())
                .await?;
            timeline_event_types_of(integration, &listed.items)
        }
    };
    let names = Dereferenced::secret_names(integration, mappings.iter().map(AsRef::as_ref));
    let secrets = crate::kube_api::read_secrets(&ctx.client, &namespace, &names).await?;
    Ok(Dereferenced { integration: integration.clone(), mappings, event_types, secrets })
}

/// The mappings among `candidates` that belong to `integration`, sorted by name as
/// [`mappings_of`] sorts them (the cache is a map; a LIST orders by name).
fn own(
    integration: &HubSpotIntegration,
    candidates: impl IntoIterator<Item = Arc<PropertyMapping>>,
) -> Vec<Arc<PropertyMapping>> {
    let mut mine: Vec<Arc<PropertyMapping>> = candidates.into_iter().filter(|m| belongs_to(m, integration)).collect();
    mine.sort_by_key(|m| m.name_any());
    mine
}
