//! End-to-end tests against a real Kubernetes cluster with the operator installed by the Helm
//! chart: `.github/workflows/kind.yml` builds the image, creates a kind cluster, installs the
//! chart and runs `cargo test --test cluster -- --ignored`.
//!
//! They use the current kubeconfig context. Each test works in a namespace of its own that
//! enforces the restricted Pod Security Standard, and deletes it when it passes (a failed test
//! leaves it for inspection). `HUBSPOT_OPERATOR_IMAGE` names the image the HubSpot emulator runs
//! from (default `hubspot-operator:ci`, the tag the workflow loads into kind).

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Secret, Service};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Client, Resource};
use model::api::{HubSpotIntegration, PropertyMapping};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;

const NEEDS_CLUSTER: &str = "needs a Kubernetes cluster (see .github/workflows/kind.yml)";
const FIELD_MANAGER: &str = "hubspot-operator-cluster-test";
/// Bound of every wait. Pulling images and starting pods on a fresh kind node is slow.
const WAIT: Duration = Duration::from_secs(180);
const EMULATOR: &str = "hubspot-emulator";
const EMULATOR_PORT: u16 = 8090;
const TOKEN: &str = "pat-na1-cluster-test";
const CLIENT_SECRET: &str = "cluster-test-client-secret";

fn image() -> String {
    std::env::var("HUBSPOT_OPERATOR_IMAGE").unwrap_or_else(|_| "hubspot-operator:ci".into())
}

fn object<K: DeserializeOwned>(manifest: serde_json::Value) -> K {
    serde_json::from_value(manifest).expect("test manifests are valid objects")
}

/// Server-side applies the CRDs `hubspot-operator crd` prints and waits until each is served.
async fn apply_crds(client: &Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let params = PatchParams::apply(FIELD_MANAGER).force();
    for document in model::api::crds_yaml().split("\n---\n") {
        let document = document.trim_start_matches("---\n");
        let crd: CustomResourceDefinition = serde_yaml::from_str(document).expect("the generated CRDs parse");
        let name = crd.metadata.name.clone().expect("CRDs have names");
        api.patch(&name, &params, &Patch::Apply(&crd)).await.expect("applying a CRD");
        within(await_condition(api.clone(), &name, conditions::is_crd_established()), "CRD established").await.unwrap();
    }
}

/// A fresh namespace enforcing the restricted Pod Security Standard.
async fn test_namespace(client: &Client, test: &str) -> String {
    let name = format!("hs-e2e-{test}-{:08x}", rand::random::<u32>());
    let namespace: Namespace = object(json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {"pod-security.kubernetes.io/enforce": "restricted"}},
    }));
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .expect("creating the namespace");
    name
}

async fn delete_namespace(client: &Client, name: &str) {
    Api::<Namespace>::all(client.clone())
        .delete(name, &DeleteParams::background())
        .await
        .expect("deleting the namespace");
}

async fn within<F: Future>(future: F, what: &str) -> F::Output {
    tokio::time::timeout(WAIT, future).await.unwrap_or_else(|_| panic!("timed out waiting for: {what}"))
}

async fn create<K>(client: &Client, namespace: &str, manifest: serde_json::Value) -> K
where
    K: Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::Serialize
        + DeserializeOwned,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    api.create(&PostParams::default(), &object(manifest)).await.expect("creating a test object")
}

/// The HubSpot emulator as a Deployment and Service of the test namespace, sending webhooks to
/// `webhook_url`, and available.
async fn start_emulator(client: &Client, namespace: &str, webhook_url: &str) {
    let labels = json!({"app.kubernetes.io/name": EMULATOR});
    let _: Deployment = create(
        client,
        namespace,
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": EMULATOR},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
                        "containers": [{
                            "name": "emulator",
                            "image": image(),
                            "imagePullPolicy": "IfNotPresent",
                            "args": [
                                "emulator",
                                format!("--listen=0.0.0.0:{EMULATOR_PORT}"),
                                format!("--token={TOKEN}"),
                                format!("--client-secret={CLIENT_SECRET}"),
                                format!("--webhook-url={webhook_url}"),
                            ],
                            "ports": [{"name": "http", "containerPort": EMULATOR_PORT}],
                            "readinessProbe": {"httpGet": {"path": "/_emulator/webhooks", "port": "http"}, "periodSeconds": 2},
                            "securityContext": {
                                "allowPrivilegeEscalation": false,
                                "readOnlyRootFilesystem": true,
                                "capabilities": {"drop": ["ALL"]},
                            },
                        }],
                    },
                },
            },
        }),
    )
    .await;
    let _: Service = create(
        client,
        namespace,
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": EMULATOR},
            "spec": {"selector": labels, "ports": [{"name": "http", "port": EMULATOR_PORT, "targetPort": "http"}]},
        }),
    )
    .await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    within(await_condition(deployments, EMULATOR, conditions::is_deployment_completed()), "emulator available")
        .await
        .unwrap();
}

fn emulator_url(namespace: &str) -> String {
    format!("http://{EMULATOR}.{namespace}.svc:{EMULATOR_PORT}")
}

/// The Secret with the integration's token and client secret, the integration itself pointing at
/// the in-cluster emulator, and a contacts mapping to a JSON-lines file.
fn integration_manifest(namespace: &str, secret_name: &str) -> serde_json::Value {
    json!({
        "apiVersion": "hubspot.io/v1alpha1",
        "kind": "HubSpotIntegration",
        "metadata": {"name": "crm", "namespace": namespace},
        "spec": {
            "api": {"baseUrl": emulator_url(namespace), "tier": "professional"},
            "credentials": {"privateAppToken": {"name": secret_name, "key": "token"}},
            "requiredScopes": ["crm.objects.contacts.read"],
            "webhooks": {"clientSecret": {"name": secret_name, "key": "clientSecret"}},
            "receiver": {"replicas": 1},
        },
    })
}

fn mapping_manifest() -> serde_json::Value {
    json!({
        "apiVersion": "hubspot.io/v1alpha1",
        "kind": "PropertyMapping",
        "metadata": {"name": "contacts"},
        "spec": {
            "integrationRef": {"name": "crm"},
            "objectType": "contacts",
            "matchKey": {"hubspotProperty": "email", "externalField": "email"},
            "fields": [
                {"hubspotProperty": "firstname", "externalField": "first_name"},
                {"hubspotProperty": "lastname", "externalField": "last_name"},
            ],
            "destinations": [{"file": {"path": "contacts.jsonl"}}],
        },
    })
}

fn credentials_secret() -> serde_json::Value {
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "hubspot-credentials"},
        "type": "Opaque",
        "stringData": {"token": TOKEN, "clientSecret": CLIENT_SECRET},
    })
}

fn condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

fn integration_condition(type_: &'static str, status: &'static str) -> impl Fn(Option<&HubSpotIntegration>) -> bool {
    move |integration| {
        let conditions = integration.and_then(|i| i.status.as_ref()).map(|s| s.conditions.as_slice()).unwrap_or(&[]);
        condition(conditions, type_).is_some_and(|c| c.status == status)
    }
}

fn mapping_ready(mapping: Option<&PropertyMapping>) -> bool {
    let conditions = mapping.and_then(|m| m.status.as_ref()).map(|s| s.conditions.as_slice()).unwrap_or(&[]);
    condition(conditions, "Ready").is_some_and(|c| c.status == "True")
}

/// A request through the API server's service proxy, so the test reaches in-cluster HTTP
/// services from outside the cluster without port forwarding.
async fn service_request(
    client: &Client,
    method: http::Method,
    namespace: &str,
    service_and_port: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> Result<String, kube::Error> {
    let uri = format!("/api/v1/namespaces/{namespace}/services/{service_and_port}/proxy{path}");
    let request = http::Request::builder()
        .method(method)
        .uri(uri)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(body.map(|b| serde_json::to_vec(&b).unwrap()).unwrap_or_default())
        .unwrap();
    client.request_text(request).await
}

/// Records the receiver has delivered to the destinations of `mapping` (`namespace/name`),
/// from its Prometheus metrics.
fn records_delivered(metrics: &str, mapping: &str) -> u64 {
    let label = format!("mapping=\"{mapping}\"");
    metrics
        .lines()
        .filter(|line| line.starts_with("hubspot_operator_records_delivered_total{") && line.contains(&label))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|value| value as u64)
        .sum()
}

#[tokio::test]
#[ignore = "needs a Kubernetes cluster (see .github/workflows/kind.yml)"]
async fn crds_are_established_and_the_examples_are_accepted() {
    let client = Client::try_default().await.expect(NEEDS_CLUSTER);
    apply_crds(&client).await;
    let namespace = test_namespace(&client, "examples").await;
    // A server-side dry run runs the API server's full validation (schema, CEL rules) without
    // handing the objects to the controller.
    let dry_run = PostParams { dry_run: true, ..Default::default() };
    for file in ["examples/integration.yaml", "examples/contacts-mapping.yaml"] {
        let text = std::fs::read_to_string(file).unwrap();
        for document in serde_yaml::Deserializer::from_str(&text) {
            let manifest = serde_json::to_value(serde_yaml::Value::deserialize(document).unwrap()).unwrap();
            match manifest["kind"].as_str() {
                Some("HubSpotIntegration") => {
                    let api: Api<HubSpotIntegration> = Api::namespaced(client.clone(), &namespace);
                    api.create(&dry_run, &object(manifest)).await.unwrap_or_else(|e| panic!("{file}: {e}"));
                }
                Some("PropertyMapping") => {
                    let api: Api<PropertyMapping> = Api::namespaced(client.clone(), &namespace);
                    api.create(&dry_run, &object(manifest)).await.unwrap_or_else(|e| panic!("{file}: {e}"));
                }
                Some("Secret") => {
                    let api: Api<Secret> = Api::namespaced(client.clone(), &namespace);
                    api.create(&dry_run, &object(manifest)).await.unwrap_or_else(|e| panic!("{file}: {e}"));
                }
                other => panic!("{file}: unexpected kind {other:?}"),
            }
        }
    }
    delete_namespace(&client, &namespace).await;
}

#[tokio::test]
#[ignore = "needs a Kubernetes cluster (see .github/workflows/kind.yml)"]
async fn an_integration_whose_secret_is_missing_says_so() {
    let client = Client::try_default().await.expect(NEEDS_CLUSTER);
    apply_crds(&client).await;
    let namespace = test_namespace(&client, "nosecret").await;
    let _: HubSpotIntegration = create(&client, &namespace, integration_manifest(&namespace, "no-such-secret")).await;
    let api: Api<HubSpotIntegration> = Api::namespaced(client.clone(), &namespace);
    let integration = within(await_condition(api, "crm", integration_condition("Ready", "False")), "Ready=False")
        .await
        .unwrap()
        .expect("the integration exists");
    let status = integration.status.expect("a status with a Ready condition");
    let ready = condition(&status.conditions, "Ready").unwrap();
    assert_eq!(ready.reason, "SecretNotFound", "{ready:?}");
    assert!(ready.message.contains("no-such-secret"), "{ready:?}");
    delete_namespace(&client, &namespace).await;
}

#[tokio::test]
#[ignore = "needs a Kubernetes cluster (see .github/workflows/kind.yml)"]
async fn a_contact_changed_in_hubspot_reaches_the_file_destination() {
    let client = Client::try_default().await.expect(NEEDS_CLUSTER);
    apply_crds(&client).await;
    let namespace = test_namespace(&client, "sync").await;
    let integration: HubSpotIntegration = object(integration_manifest(&namespace, "hubspot-credentials"));
    let receiver_url = operator::resources::receiver_url(&integration);
    start_emulator(&client, &namespace, &receiver_url).await;
    let _: Secret = create(&client, &namespace, credentials_secret()).await;
    // The mapping exists before the integration, so the first receiver config already has it.
    let _: PropertyMapping = create(&client, &namespace, mapping_manifest()).await;
    let _: HubSpotIntegration =
        create(&client, &namespace, integration_manifest(&namespace, "hubspot-credentials")).await;

    let integrations: Api<HubSpotIntegration> = Api::namespaced(client.clone(), &namespace);
    for type_ in ["Authenticated", "ScopesGranted", "ReceiverAvailable", "Ready"] {
        within(await_condition(integrations.clone(), "crm", integration_condition(type_, "True")), type_)
            .await
            .unwrap();
    }
    let mappings: Api<PropertyMapping> = Api::namespaced(client.clone(), &namespace);
    within(await_condition(mappings, "contacts", mapping_ready), "mapping Ready").await.unwrap();
    let status = integrations.get("crm").await.unwrap().status.unwrap();
    assert_eq!(status.receiver_url.as_deref(), Some(receiver_url.as_str()));

    // A HubSpot user creates a contact, then edits it. Each change is a webhook to the receiver,
    // whose worker reads the contact back and appends it to contacts.jsonl. The edit repeats
    // until a record is delivered, because a receiver pod replaced during its first rollout
    // loses what it held (its event log is on an emptyDir).
    let emulator = format!("{EMULATOR}:{EMULATOR_PORT}");
    let created = service_request(
        &client,
        http::Method::POST,
        &namespace,
        &emulator,
        "/_emulator/objects/contacts",
        Some(json!({"properties": {"email": "ada@example.com", "firstname": "Ada", "lastname": "Lovelace"}})),
    )
    .await
    .expect("creating a contact through the emulator's admin API");
    let contact_id = serde_json::from_str::<serde_json::Value>(&created).unwrap()["id"].as_str().unwrap().to_string();
    let mapping = format!("{namespace}/contacts");
    let delivered = async {
        for edit in 0u32.. {
            let metrics =
                service_request(&client, http::Method::GET, &namespace, "crm-receiver:8081", "/metrics", None).await;
            if let Ok(metrics) = metrics
                && records_delivered(&metrics, &mapping) > 0
            {
                return;
            }
            service_request(
                &client,
                http::Method::PATCH,
                &namespace,
                &emulator,
                &format!("/_emulator/objects/contacts/{contact_id}"),
                Some(json!({"properties": {"firstname": format!("Ada {edit}")}})),
            )
            .await
            .expect("editing the contact");
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    };
    within(delivered, "a record delivered to contacts.jsonl").await;
    // The Service's port 80, which the Ingress and HTTPRoute route to, does not serve them.
    for path in ["/metrics", "/sync/status"] {
        let public = service_request(&client, http::Method::GET, &namespace, "crm-receiver:80", path, None).await;
        assert!(public.is_err(), "{path} on the receiver Service's port 80: {public:?}");
    }
    delete_namespace(&client, &namespace).await;
}

#[test]
fn delivered_records_are_summed_over_the_destinations_of_one_mapping() {
    let metrics = "# TYPE hubspot_operator_records_delivered counter\n\
        hubspot_operator_records_delivered_total{mapping=\"ns/contacts\",sink=\"file:0\"} 2\n\
        hubspot_operator_records_delivered_total{mapping=\"ns/contacts\",sink=\"http:1\"} 3\n\
        hubspot_operator_records_delivered_total{mapping=\"ns/companies\",sink=\"file:0\"} 7\n\
        hubspot_operator_events_pending 0\n";
    assert_eq!(records_delivered(metrics, "ns/contacts"), 5);
    assert_eq!(records_delivered(metrics, "ns/deals"), 0);
}
