//! Fixtures the tests of the resource builders share.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Probe, Secret};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};

use super::*;
use crate::secrets::SecretStore;
use model::api::integration::JetStreamLogSettings;
use model::api::integration::{
    Credentials, EmbeddedLogSettings, EventLogSettings, GatewayParentRef, HubSpotIntegrationSpec, IngressPathType,
    ReceiverHttpRoute, ReceiverIngress, WebhookSettings,
};
use model::api::mapping::{
    Destination, Direction, FieldMapping, FileDestination, HttpDestination, MappedRecords, MatchKey, NatsDestination,
    PostgresDestination, PostgresPoll, PropertyMappingSpec,
};
use model::api::{HubSpotIntegration, PropertyMapping, SecretKeyRef};
use model::config::{
    AdminConfig, EventLogConfig, IngestConfig, JetStreamLogConfig, LogLimits, ReceiverConfig, SinkConfig, SourceConfig,
};
use model::contract::WEBHOOK_PATH;

mod config;
mod exposure;
mod names;
mod network;
mod statefulset;

fn integration() -> HubSpotIntegration {
    let mut i = HubSpotIntegration::new(
        "crm",
        HubSpotIntegrationSpec {
            portal_id: Some(62515),
            api: Default::default(),
            credentials: Credentials {
                private_app_token: Some(SecretKeyRef { name: "hubspot".into(), key: "token".into() }),
                oauth: None,
            },
            required_scopes: vec![],
            webhooks: Some(WebhookSettings {
                client_secret: SecretKeyRef { name: "hubspot".into(), key: "client-secret".into() },
                public_url: Some("https://hooks.example.com/webhooks/hubspot".into()),
                subscriptions: vec![],
                max_concurrent_requests: None,
                management: None,
            }),
            receiver: Default::default(),
        },
    );
    i.metadata.namespace = Some("sales".into());
    i.metadata.uid = Some("0b5c2a8e-1111-2222-3333-444455556666".into());
    i
}

fn mapping(name: &str, integration: &str, destinations: Vec<Destination>) -> PropertyMapping {
    let mut m = PropertyMapping::new(
        name,
        PropertyMappingSpec {
            destinations,
            ..PropertyMappingSpec::new(
                integration,
                MappedRecords::new(
                    "contacts",
                    MatchKey::new("email", "email"),
                    vec![FieldMapping::new("firstname", "first_name", Direction::ToExternal)],
                ),
            )
        },
    );
    m.metadata.namespace = Some("sales".into());
    m
}

fn secrets() -> SecretStore {
    let mut s = Secret::default();
    s.metadata.name = Some("hubspot".into());
    s.string_data = Some(BTreeMap::from([
        ("token".into(), "pat-na1-token".into()),
        ("client-secret".into(), "client-secret-value".into()),
    ]));
    let mut signing = Secret::default();
    signing.metadata.name = Some("sink-signing".into());
    signing.string_data = Some(BTreeMap::from([("key".into(), "sign-me".into())]));
    SecretStore::new([s, signing])
}

fn owner(i: &HubSpotIntegration) -> OwnerReference {
    i.controller_owner_ref(&()).unwrap()
}

fn http_destination(signing: Option<&str>) -> Destination {
    Destination {
        http: Some(HttpDestination {
            url: "https://crm.example.com/ingest".into(),
            signing_secret: signing.map(|name| SecretKeyRef { name: name.into(), key: "key".into() }),
        }),
        ..Default::default()
    }
}

/// Labels and owner reference every receiver object of `crm` in `sales` carries, as JSON.
fn receiver_object_metadata(annotations: Option<serde_json::Value>) -> serde_json::Value {
    let mut metadata = serde_json::json!({
        "name": "crm-receiver",
        "namespace": "sales",
        "labels": {
            "app.kubernetes.io/component": "receiver",
            "app.kubernetes.io/instance": "crm",
            "app.kubernetes.io/managed-by": "hubspot-operator",
            "app.kubernetes.io/name": "hubspot-operator",
        },
        "ownerReferences": [{
            "apiVersion": "hubspot.io/v1alpha1", "kind": "HubSpotIntegration", "name": "crm",
            "uid": "0b5c2a8e-1111-2222-3333-444455556666", "controller": true,
        }],
    });
    if let Some(annotations) = annotations {
        metadata["annotations"] = annotations;
    }
    metadata
}

fn ingress_settings() -> ReceiverIngress {
    ReceiverIngress {
        class_name: Some("nginx".into()),
        host: Some("hooks.example.com".into()),
        path: WEBHOOK_PATH.into(),
        path_type: IngressPathType::Prefix,
        tls_secret_name: Some("hooks-tls".into()),
        annotations: BTreeMap::from([("cert-manager.io/cluster-issuer".into(), "letsencrypt".into())]),
    }
}

fn http_route_settings() -> ReceiverHttpRoute {
    ReceiverHttpRoute {
        parent_refs: vec![
            GatewayParentRef {
                name: "public".into(),
                namespace: Some("gateways".into()),
                section_name: Some("https".into()),
            },
            GatewayParentRef { name: "internal".into(), namespace: None, section_name: None },
        ],
        hostnames: vec!["hooks.example.com".into()],
        path: "/webhooks".into(),
        annotations: BTreeMap::new(),
    }
}

/// `crm` with `spec.receiver.admin`: the token from Secret `admin` key `token`, exposed or
/// not, admitting `allowed_from`.
fn with_admin(
    exposed: bool,
    allowed_from: Vec<k8s_openapi::api::networking::v1::NetworkPolicyPeer>,
) -> HubSpotIntegration {
    let mut i = integration();
    i.spec.receiver.admin = Some(model::api::integration::AdminSettings {
        token_secret_ref: Some(SecretKeyRef { name: "admin".into(), key: "token".into() }),
        exposed,
        allowed_from,
    });
    i
}

/// Pods labelled `app: ops-console` in namespaces labelled `team: operators`.
fn ops_console() -> k8s_openapi::api::networking::v1::NetworkPolicyPeer {
    let selector = |key: &str, value: &str| LabelSelector {
        match_labels: Some(BTreeMap::from([(key.to_string(), value.to_string())])),
        ..Default::default()
    };
    k8s_openapi::api::networking::v1::NetworkPolicyPeer {
        namespace_selector: Some(selector("team", "operators")),
        pod_selector: Some(selector("app", "ops-console")),
        ip_block: None,
    }
}
