//! Custom resources of the `hubspot.io` API group, one file per kind.

pub mod conditions;
pub mod integration;
pub mod mapping;
pub mod property;

pub use integration::{HubSpotIntegration, HubSpotIntegrationSpec, HubSpotIntegrationStatus};
pub use mapping::{PropertyMapping, PropertyMappingSpec, PropertyMappingStatus};
pub use property::{HubSpotProperty, HubSpotPropertySpec, HubSpotPropertyStatus};

use kube::CustomResourceExt;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// API group of every kind this operator owns.
pub const GROUP: &str = "hubspot.io";

/// A key of a Secret in the resource's own namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret, in the same namespace as the resource.
    pub name: String,
    /// Key inside the Secret's data.
    pub key: String,
}

/// Every CRD as YAML documents, as `hubspot-operator crd` prints them and `crds/` holds them.
pub fn crds_yaml() -> String {
    [HubSpotIntegration::crd(), PropertyMapping::crd(), HubSpotProperty::crd()]
        .iter()
        .map(|crd| serde_yaml::to_string(crd).expect("a CRD always serialises"))
        .map(|doc| format!("---\n{doc}"))
        .collect()
}
