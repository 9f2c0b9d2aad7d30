//! Custom resources of the `hubspot.io` API group, one file per kind.

pub mod conditions;
pub mod integration;
pub mod mapping;
pub mod property;
pub mod timeline;

pub use integration::{HubSpotIntegration, HubSpotIntegrationSpec, HubSpotIntegrationStatus};
pub use mapping::{PropertyMapping, PropertyMappingSpec, PropertyMappingStatus};
pub use property::{HubSpotProperty, HubSpotPropertySpec, HubSpotPropertyStatus};
pub use timeline::{HubSpotTimelineEventType, HubSpotTimelineEventTypeSpec, HubSpotTimelineEventTypeStatus};

use kube::CustomResourceExt;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// API group of every kind this operator owns.
pub const GROUP: &str = "hubspot.io";

/// Annotation that pauses reconciliation of an object while its value is `"true"`: the
/// operator changes nothing in HubSpot or in the object's children, keeps its finalizer, and
/// reports `Paused` in the status. Removing it resumes.
pub const PAUSED_ANNOTATION: &str = "hubspot.io/paused";
/// Annotation whose changed value (any string, e.g. a timestamp) asks for an immediate full
/// reconcile; the value handled is echoed in `status.lastHandledReconcileAt`.
pub const RECONCILE_REQUESTED_ANNOTATION: &str = "hubspot.io/reconcile-requested-at";
/// Condition reason of a paused object.
pub const PAUSED_REASON: &str = "Paused";

/// Whether `object` carries `hubspot.io/paused: "true"`.
pub fn is_paused(object: &impl kube::Resource) -> bool {
    object.meta().annotations.as_ref().and_then(|a| a.get(PAUSED_ANNOTATION)).is_some_and(|v| v == "true")
}

/// The value of `object`'s `hubspot.io/reconcile-requested-at` annotation.
pub fn reconcile_request(object: &impl kube::Resource) -> Option<String> {
    object.meta().annotations.as_ref().and_then(|a| a.get(RECONCILE_REQUESTED_ANNOTATION)).cloned()
}

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
    [HubSpotIntegration::crd(), PropertyMapping::crd(), HubSpotProperty::crd(), HubSpotTimelineEventType::crd()]
        .iter()
        .map(|crd| serde_yaml::to_string(crd).expect("a CRD always serialises"))
        .map(|doc| format!("---\n{doc}"))
        .collect()
}
