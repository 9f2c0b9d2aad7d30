//! Names and labels of the receiver's objects, and which objects are the operator's own.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::ResourceExt;

use model::api::{HubSpotIntegration, PropertyMapping};
use model::contract::WEBHOOK_PATH;

/// Label every child object carries; only objects with it are watched or ever deleted.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`] on the operator's objects.
pub const MANAGED_BY: &str = "hubspot-operator";

/// Name of the receiver's StatefulSet, Service, PodDisruptionBudget, NetworkPolicy, Ingress
/// and HTTPRoute.
pub fn receiver_name(integration: &HubSpotIntegration) -> String {
    format!("{}-receiver", integration.name_any())
}

/// Name of the Secret holding the rendered receiver config.
pub fn config_secret_name(integration: &HubSpotIntegration) -> String {
    format!("{}-receiver-config", integration.name_any())
}

/// In-cluster URL of the receiver's webhook endpoint.
pub fn receiver_url(integration: &HubSpotIntegration) -> String {
    format!(
        "http://{}.{}.svc{WEBHOOK_PATH}",
        receiver_name(integration),
        integration.namespace().unwrap_or_else(|| "default".into())
    )
}

/// The URL HubSpot calls to deliver webhooks: `spec.webhooks.publicUrl`, else the receiver's
/// webhook path on the host of its Ingress (`https://` when the Ingress terminates TLS) or on
/// the first hostname of its HTTPRoute. Wildcard hosts name no URL.
pub fn receiver_public_url(integration: &HubSpotIntegration) -> Option<String> {
    if let Some(url) = integration.spec.webhooks.as_ref().and_then(|w| w.public_url.as_ref()) {
        return Some(url.clone());
    }
    let concrete = |host: &&String| !host.starts_with('*');
    let receiver = &integration.spec.receiver;
    let (scheme, host) = match (&receiver.ingress, &receiver.http_route) {
        (Some(ingress), _) => {
            (if ingress.tls_secret_name.is_some() { "https" } else { "http" }, ingress.host.as_ref().filter(concrete)?)
        }
        // A Gateway listener for HubSpot terminates TLS: HubSpot only calls HTTPS targets.
        (None, Some(route)) => ("https", route.hostnames.iter().find(concrete)?),
        (None, None) => return None,
    };
    Some(format!("{scheme}://{host}{WEBHOOK_PATH}"))
}

/// `namespace/name` of an object, as the receiver config names integrations and mappings.
pub fn qualified_name(object: &impl ResourceExt) -> String {
    format!("{}/{}", object.namespace().unwrap_or_default(), object.name_any())
}

/// The mappings in `candidates` that belong to `integration` (same namespace, referenced by
/// name), sorted by name so the rendered config does not depend on listing order.
pub fn mappings_of<'a>(
    integration: &HubSpotIntegration,
    candidates: impl IntoIterator<Item = &'a PropertyMapping>,
) -> Vec<&'a PropertyMapping> {
    let mut mine: Vec<&PropertyMapping> = candidates.into_iter().filter(|m| belongs_to(m, integration)).collect();
    mine.sort_by_key(|m| m.name_any());
    mine
}

/// Whether `mapping` belongs to `integration`: same namespace, and referencing it by name.
pub fn belongs_to(mapping: &PropertyMapping, integration: &HubSpotIntegration) -> bool {
    mapping.namespace() == integration.namespace() && mapping.spec.integration_ref.name == integration.name_any()
}

/// The Secret the integration reconciler keeps an OAuth app's current access token in:
/// `<integration>-hubspot-access-token`.
pub fn access_token_secret_name(integration: &HubSpotIntegration) -> String {
    format!("{}-hubspot-access-token", integration.name_any())
}

/// Labels of every child object; the first two also select the receiver pods.
pub fn receiver_labels(integration: &HubSpotIntegration) -> BTreeMap<String, String> {
    let mut labels = selector_labels(integration);
    labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
    labels.insert("app.kubernetes.io/component".into(), "receiver".into());
    labels
}

pub(super) fn selector_labels(integration: &HubSpotIntegration) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), "hubspot-operator".to_string()),
        ("app.kubernetes.io/instance".to_string(), integration.name_any()),
    ])
}

pub(super) fn child_metadata(integration: &HubSpotIntegration, name: String, owner: &OwnerReference) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: integration.namespace(),
        labels: Some(receiver_labels(integration)),
        owner_references: Some(vec![owner.clone()]),
        ..Default::default()
    }
}

/// Whether `meta` is that of an object the operator created for `integration` under the
/// receiver's name: our managed-by label, and the integration as its owner. Only such objects
/// are ever deleted (the receiver Deployment of earlier versions, an Ingress or HTTPRoute the
/// spec no longer asks for).
pub fn is_own_receiver_object(integration: &HubSpotIntegration, meta: &ObjectMeta) -> bool {
    let managed_by_us =
        meta.labels.as_ref().and_then(|labels| labels.get(MANAGED_BY_LABEL)).is_some_and(|v| v == MANAGED_BY);
    let owned_by_integration = integration.metadata.uid.as_ref().is_some_and(|uid| {
        meta.owner_references.iter().flatten().any(|o| &o.uid == uid && o.kind == "HubSpotIntegration")
    });
    meta.name.as_deref() == Some(receiver_name(integration).as_str()) && managed_by_us && owned_by_integration
}
