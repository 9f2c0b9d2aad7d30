//! How HubSpot reaches the receiver from outside: the optional Ingress or HTTPRoute.

use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule, IngressServiceBackend, IngressSpec,
    IngressTLS, ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{ApiResource, DynamicObject};

use model::api::HubSpotIntegration;
use model::contract::PUBLIC_PATH_PREFIXES;

use super::*;

/// The receiver's Ingress, when `spec.receiver.ingress` asks for one: `path` on `host` to the
/// receiver Service, with TLS for `host` from `tlsSecretName`.
pub fn receiver_ingress(integration: &HubSpotIntegration, owner: &OwnerReference) -> Option<Ingress> {
    let settings = integration.spec.receiver.ingress.as_ref()?;
    let mut metadata = child_metadata(integration, receiver_name(integration), owner);
    metadata.annotations = (!settings.annotations.is_empty()).then(|| settings.annotations.clone());
    let backend = IngressBackend {
        service: Some(IngressServiceBackend {
            name: receiver_name(integration),
            port: Some(ServiceBackendPort { number: Some(RECEIVER_SERVICE_PORT), name: None }),
        }),
        resource: None,
    };
    Some(Ingress {
        metadata,
        spec: Some(IngressSpec {
            ingress_class_name: settings.class_name.clone(),
            rules: Some(vec![IngressRule {
                host: settings.host.clone(),
                http: Some(HTTPIngressRuleValue {
                    paths: routed_paths(&settings.path)
                        .into_iter()
                        .map(|path| HTTPIngressPath {
                            path: Some(path),
                            path_type: settings.path_type.as_str().into(),
                            backend: backend.clone(),
                        })
                        .collect(),
                }),
            }]),
            tls: settings.tls_secret_name.as_ref().map(|secret| {
                vec![IngressTLS {
                    hosts: settings.host.clone().map(|host| vec![host]),
                    secret_name: Some(secret.clone()),
                }]
            }),
            default_backend: None,
        }),
        status: None,
    })
}

/// The paths an Ingress or HTTPRoute routes for the `path` a user set: `/` stands for
/// everything the receiver serves to the outside (webhooks and the ingest API), not the whole
/// port, whose probes stay in the cluster.
fn routed_paths(path: &str) -> Vec<String> {
    if path.trim_end_matches('/').is_empty() {
        PUBLIC_PATH_PREFIXES.map(String::from).to_vec()
    } else {
        vec![path.to_string()]
    }
}

/// The Gateway API's `gateway.networking.k8s.io/v1` HTTPRoute, which k8s-openapi does not
/// model; clusters without the Gateway API CRDs answer 404 for it.
pub fn http_route_resource() -> ApiResource {
    ApiResource {
        group: "gateway.networking.k8s.io".into(),
        version: "v1".into(),
        api_version: "gateway.networking.k8s.io/v1".into(),
        kind: "HTTPRoute".into(),
        plural: "httproutes".into(),
    }
}

/// The receiver's HTTPRoute, when `spec.receiver.httpRoute` asks for one: requests for
/// `hostnames` under the path prefix, attached to `parentRefs`, to the receiver Service.
pub fn receiver_http_route(integration: &HubSpotIntegration, owner: &OwnerReference) -> Option<DynamicObject> {
    let settings = integration.spec.receiver.http_route.as_ref()?;
    let mut metadata = child_metadata(integration, receiver_name(integration), owner);
    metadata.annotations = (!settings.annotations.is_empty()).then(|| settings.annotations.clone());
    let parent_refs: Vec<serde_json::Value> = settings
        .parent_refs
        .iter()
        .map(|parent| {
            let mut reference = serde_json::json!({ "name": parent.name });
            if let Some(namespace) = &parent.namespace {
                reference["namespace"] = namespace.as_str().into();
            }
            if let Some(section) = &parent.section_name {
                reference["sectionName"] = section.as_str().into();
            }
            reference
        })
        .collect();
    let mut spec = serde_json::json!({
        "parentRefs": parent_refs,
        "rules": [{
            "matches": routed_paths(&settings.path)
                .into_iter()
                .map(|path| serde_json::json!({ "path": { "type": "PathPrefix", "value": path } }))
                .collect::<Vec<_>>(),
            "backendRefs": [{ "name": receiver_name(integration), "port": RECEIVER_SERVICE_PORT }],
        }],
    });
    if !settings.hostnames.is_empty() {
        spec["hostnames"] = serde_json::json!(settings.hostnames);
    }
    let mut route = DynamicObject::new(&receiver_name(integration), &http_route_resource());
    route.metadata = metadata;
    route.data = serde_json::json!({ "spec": spec });
    Some(route)
}
