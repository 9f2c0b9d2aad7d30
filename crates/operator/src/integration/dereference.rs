//! The dereference step: the mappings of the integration's namespace and the Secrets it
//! references, read once per visit and handed to the build as the only inputs it may read.

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use model::api::{HubSpotIntegration, PropertyMapping};

use super::children::ready_store;
use crate::resources::{self, mappings_of};
use crate::secrets::SecretStore;
use crate::{Context, Error};

/// What one visit of an integration works from: the integration, the `PropertyMapping`s of its
/// namespace, and the Secrets it references. The Secrets are exactly those
/// [`resources::referenced_secret_names`] enumerates, so the build cannot resolve a reference
/// that was not dereferenced: it would find no such Secret.
#[derive(Clone, Debug)]
pub struct Dereferenced {
    pub integration: HubSpotIntegration,
    pub mappings: Vec<PropertyMapping>,
    pub secrets: SecretStore,
}

impl Dereferenced {
    /// The mappings that belong to the integration, sorted by name.
    pub fn own_mappings(&self) -> Vec<&PropertyMapping> {
        mappings_of(&self.integration, &self.mappings)
    }

    /// The names of the Secrets this visit reads.
    pub fn secret_names(integration: &HubSpotIntegration, mappings: &[PropertyMapping]) -> Vec<String> {
        resources::referenced_secret_names(integration, &mappings_of(integration, mappings))
    }

    /// Keeps of `available` only the Secrets [`Dereferenced::secret_names`] lists: what
    /// [`dereference`] would have read from a namespace holding `available`.
    pub fn from_available(
        integration: HubSpotIntegration,
        mappings: Vec<PropertyMapping>,
        available: impl IntoIterator<Item = Secret>,
    ) -> Self {
        let names = Self::secret_names(&integration, &mappings);
        let secrets = SecretStore::new(available.into_iter().filter(|s| names.contains(&s.name_any())));
        Self { integration, mappings, secrets }
    }
}

/// Reads the mappings of the integration's namespace (from the controller's cache of them once
/// it holds a full listing, otherwise with a LIST) and the Secrets it references. Secrets are
/// not watched (only the operator's own children are), so they are read afresh on each visit:
/// one GET per referenced Secret of this integration.
pub async fn dereference(integration: &HubSpotIntegration, ctx: &Context) -> Result<Dereferenced, Error> {
    let namespace =
        integration.namespace().ok_or_else(|| Error::MissingObjectKey(integration.name_any(), "namespace"))?;
    let mappings = match ready_store(&ctx.children.mappings) {
        Some(store) => {
            let mut mappings: Vec<PropertyMapping> = store
                .state()
                .iter()
                .filter(|m| m.namespace().as_deref() == Some(namespace.as_str()))
                .map(|m| m.as_ref().clone())
                .collect();
            // The store is a map: keep the order a LIST gives, by name.
            mappings.sort_by_key(|m| m.name_any());
            mappings
        }
        None => {
            Api::<PropertyMapping>::namespaced(ctx.client.clone(), &namespace).list(&ListParams::default()).await?.items
        }
    };
    let names = Dereferenced::secret_names(integration, &mappings);
    let secrets = crate::kube_api::read_secrets(&ctx.client, &namespace, &names).await?;
    Ok(Dereferenced { integration: integration.clone(), mappings, secrets })
}
