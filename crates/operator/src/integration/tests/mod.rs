//! Tests of the integration reconciler: pure tests of the build and status steps with fixtures,
//! and scenarios running `reconcile` against a fake API server, asserting what it ends up
//! holding (objects, status, Events) and the calls that matter.

mod build;
mod children;
mod oauth;
mod scenarios;
mod status;
mod webhooks;

use std::sync::Arc;

use kube::runtime::controller::Action;
use serde_json::{Value, json};
use test_support::{ApiCalls, FakeApiServer};

use super::*;
use crate::fixtures::*;
use model::api::integration::ReceiverExposureKind;

const INTEGRATION: &str = "/apis/hubspot.io/v1alpha1/namespaces/default/hubspotintegrations/crm";
const CONFIG_SECRET: &str = "/api/v1/namespaces/default/secrets/crm-receiver-config";
const STATEFULSET: &str = "/apis/apps/v1/namespaces/default/statefulsets/crm-receiver";
const SERVICE: &str = "/api/v1/namespaces/default/services/crm-receiver";
const PDB: &str = "/apis/policy/v1/namespaces/default/poddisruptionbudgets/crm-receiver";
const NETWORK_POLICY: &str = "/apis/networking.k8s.io/v1/namespaces/default/networkpolicies/crm-receiver";
const INGRESS: &str = "/apis/networking.k8s.io/v1/namespaces/default/ingresses/crm-receiver";
const HTTP_ROUTE: &str = "/apis/gateway.networking.k8s.io/v1/namespaces/default/httproutes/crm-receiver";
/// Where earlier versions ran the receiver.
const LEGACY_DEPLOYMENT: &str = "/apis/apps/v1/namespaces/default/deployments/crm-receiver";
const WEBHOOKS_CONFIG_MAP: &str = "/api/v1/namespaces/default/configmaps/crm-webhooks-hsmeta";
const ACCESS_TOKEN_SECRET: &str = "/api/v1/namespaces/default/secrets/crm-hubspot-access-token";
const TOKEN: &str = "pat-na1-11111111-2222-3333-4444-555555555555";
const IMAGE: &str = "ghcr.io/hubspot-operator/hubspot-operator:test";

/// The receiver's objects, which exist once a config was rendered and applied.
const RECEIVER_OBJECTS: [&str; 5] = [CONFIG_SECRET, STATEFULSET, SERVICE, PDB, NETWORK_POLICY];

/// The `hubspot` Secret of the fixture integration holding `token` and the webhook client secret.
fn token_secret(token: &str) -> Value {
    hubspot_secret(&[("token", token), ("client-secret", "s3cret")])
}

/// Secret `name` with these keys.
fn named_secret(name: &str, entries: &[(&str, &str)]) -> Value {
    let mut secret = hubspot_secret(entries);
    secret["metadata"]["name"] = json!(name);
    secret
}

/// The build settings of the test context.
fn settings() -> BuildSettings {
    BuildSettings { image: IMAGE.into(), trace_env: vec![] }
}

/// What `integration` builds to with `mappings`, in a namespace holding the Secrets `available`
/// (JSON, as the API server returns them): only those it references are dereferenced.
fn built(integration: &HubSpotIntegration, mappings: &[PropertyMapping], available: &[Value]) -> Desired {
    let available = available.iter().map(|s| serde_json::from_value(s.clone()).expect("a Secret"));
    build(&Dereferenced::from_available(integration.clone(), mappings.to_vec(), available), &settings())
        .expect("the integration has a uid")
}

/// The receiver objects `integration` builds to with its token Secret.
fn receiver_objects(integration: &HubSpotIntegration, available: &[Value]) -> ReceiverObjects {
    built(integration, &[], available).receiver.expect("a rendered config")
}

/// The receiver config inside a config Secret (JSON), and its YAML.
fn config_in(secret: &Value) -> (String, model::config::ReceiverConfig) {
    use base64::Engine;
    let encoded = secret["data"]["config.yaml"].as_str().expect("config.yaml in the Secret");
    let yaml = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(encoded).unwrap()).unwrap();
    let config = serde_yaml::from_str(&yaml).expect("a valid receiver config");
    (yaml, config)
}

fn assert_controlled_by_crm(object: &Value) {
    let owners = object["metadata"]["ownerReferences"].as_array().expect("ownerReferences");
    assert_eq!(owners.len(), 1, "{object}");
    assert_eq!(owners[0]["kind"], "HubSpotIntegration");
    assert_eq!(owners[0]["name"], "crm");
    assert_eq!(owners[0]["uid"], "5f0e7f55-0c1e-4c38-9d43-1f1e6a1b2c3d");
    assert_eq!(owners[0]["controller"], true);
}

/// `crm` without a `publicUrl`, exposed through an Ingress for `hooks.example.com` with TLS,
/// or through an HTTPRoute on Gateway `gateways/public` for the same host.
fn exposed(base_url: &str, through: Option<ReceiverExposureKind>) -> HubSpotIntegration {
    use model::api::integration::{GatewayParentRef, ReceiverHttpRoute, ReceiverIngress};
    let mut integration = integration(base_url, &[]);
    integration.spec.webhooks.as_mut().unwrap().public_url = None;
    let receiver = &mut integration.spec.receiver;
    match through {
        Some(ReceiverExposureKind::Ingress) => {
            receiver.ingress = Some(ReceiverIngress {
                class_name: Some("nginx".into()),
                host: Some("hooks.example.com".into()),
                path: model::contract::WEBHOOK_PATH.into(),
                path_type: Default::default(),
                tls_secret_name: Some("hooks-tls".into()),
                annotations: Default::default(),
            })
        }
        Some(ReceiverExposureKind::HttpRoute) => {
            receiver.http_route = Some(ReceiverHttpRoute {
                parent_refs: vec![GatewayParentRef {
                    name: "public".into(),
                    namespace: Some("gateways".into()),
                    section_name: None,
                }],
                hostnames: vec!["hooks.example.com".into()],
                path: model::contract::WEBHOOK_PATH.into(),
                annotations: Default::default(),
            })
        }
        None => {}
    }
    integration
}

/// `crm` with its admin API exposed, the token in Secret `crm-admin` key `token`, admitting
/// pods labelled `app: ops-console`.
fn with_exposed_admin(base_url: &str) -> HubSpotIntegration {
    let mut integration = integration(base_url, &[]);
    integration.spec.receiver.admin = Some(model::api::integration::AdminSettings {
        token_secret_ref: Some(model::api::SecretKeyRef { name: "crm-admin".into(), key: "token".into() }),
        exposed: true,
        allowed_from: vec![
            serde_json::from_value(json!({ "podSelector": { "matchLabels": { "app": "ops-console" } } })).unwrap(),
        ],
    });
    integration
}

/// `integration` as left by an earlier healthy visit whose receiver ran config `hash`.
fn healthy_before(mut integration: HubSpotIntegration, hash: &str) -> HubSpotIntegration {
    let ok = |type_: &str, reason: &str| model::api::conditions::condition(type_, Some(true), reason, "ok", Some(1));
    integration.status = Some(model::api::HubSpotIntegrationStatus {
        conditions: vec![
            ok("Ready", "Ready"),
            ok("Authenticated", "TokenValid"),
            ok("ScopesGranted", "AllScopesGranted"),
            ok("ReceiverAvailable", "ReceiverAvailable"),
        ],
        observed_generation: Some(1),
        hub_id: Some(62515),
        receiver_config_hash: Some(hash.into()),
        ..Default::default()
    });
    integration
}

/// `integration` whose last visit applied its exposure through `kind` and reported it.
fn previously_exposed_by(mut integration: HubSpotIntegration, kind: ReceiverExposureKind) -> HubSpotIntegration {
    let reported =
        model::api::conditions::condition("ReceiverExposed", Some(true), "IngressApplied", "applied", Some(1));
    integration.status = Some(model::api::HubSpotIntegrationStatus {
        conditions: vec![reported],
        receiver_exposed_by: Some(kind),
        ..Default::default()
    });
    integration
}

/// An object named `crm-receiver` of `kind` that the operator created for `crm`, or (with
/// another manager) someone else did.
fn receiver_named_object(api_version: &str, kind: &str, managed_by: Option<&str>) -> Value {
    let mut labels = json!({ "app.kubernetes.io/name": "hubspot-operator", "app.kubernetes.io/instance": "crm" });
    if let Some(manager) = managed_by {
        labels["app.kubernetes.io/managed-by"] = json!(manager);
    }
    json!({
        "apiVersion": api_version, "kind": kind,
        "metadata": {
            "name": "crm-receiver", "namespace": "default", "uid": "7e1c5f00-0000-4000-8000-000000000042",
            "labels": labels,
            "ownerReferences": [{
                "apiVersion": "hubspot.io/v1alpha1", "kind": "HubSpotIntegration", "name": "crm",
                "uid": "5f0e7f55-0c1e-4c38-9d43-1f1e6a1b2c3d", "controller": true
            }]
        }
    })
}

/// A Kubernetes API (the fake server) holding objects, and a context calling it.
struct Cluster {
    api: FakeApiServer,
    ctx: Arc<Context>,
}

/// What one visit left: its requeue, the integration as stored, the Events it published and
/// the calls it made.
struct Visit {
    action: Action,
    integration: Value,
    events: Vec<Value>,
    calls: ApiCalls,
}

impl Visit {
    /// `(type, reason)` of each Event, in order.
    fn events(&self) -> Vec<(String, String)> {
        self.events
            .iter()
            .map(|e| (e["type"].as_str().unwrap().to_string(), e["reason"].as_str().unwrap().to_string()))
            .collect()
    }

    /// The Event of `reason`.
    fn event(&self, reason: &str) -> &Value {
        self.events.iter().find(|e| e["reason"] == reason).unwrap_or_else(|| panic!("no {reason} Event"))
    }

    /// `(status, reason)` of the condition of `type_`.
    fn condition(&self, type_: &str) -> (String, String) {
        condition_state(&self.integration, type_)
    }

    fn message(&self, type_: &str) -> String {
        condition(&self.integration, type_)["message"].as_str().unwrap().to_string()
    }

    fn status(&self) -> &Value {
        &self.integration["status"]
    }
}

impl Cluster {
    /// A cluster holding `integration` and `secrets`.
    async fn with(integration: &HubSpotIntegration, secrets: &[Value]) -> Cluster {
        let api = FakeApiServer::default();
        api.insert("hubspotintegrations", to_json(integration));
        for secret in secrets {
            api.insert("secrets", secret.clone());
        }
        let ctx = served_context(&api).await;
        Cluster { api, ctx }
    }

    /// One reconcile of the integration as the cluster holds it.
    async fn visit(&self) -> Visit {
        let before = self.api.calls();
        let events_before = self.api.events().len();
        let integration = serde_json::from_value(self.api.get(INTEGRATION).expect("the integration")).unwrap();
        let action = reconcile(Arc::new(integration), self.ctx.clone()).await.expect("reconcile succeeds");
        Visit {
            action,
            integration: self.api.get(INTEGRATION).expect("the integration"),
            events: self.api.events()[events_before..].to_vec(),
            calls: self.api.calls().since(&before),
        }
    }

    fn object(&self, path: &str) -> Option<Value> {
        self.api.get(path)
    }

    /// Reports `n` receiver pods available, as the StatefulSet controller would.
    fn pods_available(&self, n: i32) {
        self.api.set_status(STATEFULSET, json!({ "replicas": 1, "readyReplicas": n, "availableReplicas": n }));
    }

    /// Replaces the stored integration's spec and status with those of `integration`.
    fn update(&self, integration: &HubSpotIntegration) {
        self.api.insert("hubspotintegrations", to_json(integration));
    }
}
