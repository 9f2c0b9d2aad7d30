//! Reconcilers of the operator: one per kind, each going dereference (read Secrets and related
//! objects) → client-free build of desired objects and status → apply → status patch.
//!
//! The deciding parts are pure and public ([`resources`], [`status`], [`secrets`]) so `dev` mode
//! can run them on manifests without a cluster.

pub mod integration;
pub mod mapping;
pub mod property;
pub mod resources;
pub mod secrets;
pub mod status;

#[cfg(test)]
mod fixtures;

use std::collections::HashMap;
use std::fmt::Debug;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Error as ControllerError};
use kube::runtime::reflector::ObjectRef;
use kube::{Client, Resource, ResourceExt};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::api::HubSpotIntegration;
use crate::hubspot::client::RetryPolicy;
use crate::hubspot::{ClientSettings, HubSpotClient, RequestBudget};
use secrets::SecretStore;

/// Field manager of every server-side apply and status patch.
pub const FIELD_MANAGER: &str = "hubspot-operator";
/// Receiver image used when an integration does not name one.
pub const DEFAULT_RECEIVER_IMAGE: &str =
    concat!("ghcr.io/hubspot-operator/hubspot-operator:", env!("CARGO_PKG_VERSION"));
/// How often a healthy object is checked again (HubSpot changes are not watched).
pub const HEALTHY_REQUEUE: Duration = Duration::from_secs(5 * 60);
/// How soon an object that is not ready is checked again.
pub const UNHEALTHY_REQUEUE: Duration = Duration::from_secs(30);
/// How long a shutdown waits for running reconciles (well within Kubernetes' default 30 s).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);
/// First and longest wait after a failed reconcile (Kubernetes API errors); doubles in between.
const ERROR_BACKOFF_INITIAL: Duration = Duration::from_secs(5);
const ERROR_BACKOFF_MAX: Duration = Duration::from_secs(5 * 60);

/// Options of `hubspot-operator controller`.
#[derive(clap::Args, Clone, Debug)]
pub struct ControllerArgs {
    /// Image of the receiver pods of integrations that do not set spec.receiver.image.
    #[arg(long, env = "RECEIVER_IMAGE", default_value = DEFAULT_RECEIVER_IMAGE)]
    pub receiver_image: String,
    /// Watch only this namespace; all namespaces when unset.
    #[arg(long, env = "WATCH_NAMESPACE")]
    pub namespace: Option<String>,
    /// Address serving /metrics, /healthz and /readyz.
    #[arg(long, env = "METRICS_LISTEN", default_value = "0.0.0.0:8081")]
    pub metrics_listen: SocketAddr,
}

/// Why a reconcile failed. HubSpot problems are not errors: they end up in conditions.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API call failed: {0}")]
    Kube(#[from] kube::Error),
    #[error("{0} has no metadata.{1}")]
    MissingObjectKey(String, &'static str),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    /// The HubSpot side of a deleted object could not be cleaned up; the finalizer stays.
    #[error("cleanup failed: {0}")]
    Cleanup(String),
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    pub kind: String,
    pub outcome: String,
}

/// Metrics of the controller process.
pub struct ControllerMetrics {
    registry: Registry,
    /// Reconciles by kind and outcome (`ok`, `error`).
    pub reconciliations: Family<ReconcileLabels, Counter>,
}

impl Default for ControllerMetrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("hubspot_operator");
        let reconciliations = Family::<ReconcileLabels, Counter>::default();
        registry.register("reconciliations", "Reconciles by kind and outcome", reconciliations.clone());
        Self { registry, reconciliations }
    }
}

impl ControllerMetrics {
    fn count<K: Resource<DynamicType = ()>>(&self, outcome: &str) {
        self.reconciliations
            .get_or_create(&ReconcileLabels { kind: K::kind(&()).into_owned(), outcome: outcome.into() })
            .inc();
    }

    /// Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

/// State shared by both reconcilers.
pub struct Context {
    pub client: Client,
    /// Receiver image of integrations that do not name one.
    pub receiver_image: String,
    pub metrics: ControllerMetrics,
    /// Retries of HubSpot calls; short, because a reconcile should not block for long.
    hubspot_retry: RetryPolicy,
    /// One HubSpot request budget per integration (`namespace/name`), shared by the calls
    /// both reconcilers make for it, so the portal's limits hold across reconciles.
    budgets: Mutex<HashMap<String, Arc<RequestBudget>>>,
    /// Consecutive failed reconciles per object, for the error backoff.
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    pub fn new(client: Client, receiver_image: impl Into<String>) -> Self {
        Self {
            client,
            receiver_image: receiver_image.into(),
            metrics: ControllerMetrics::default(),
            hubspot_retry: RetryPolicy {
                max_attempts: 3,
                max_backoff: Duration::from_secs(5),
                max_rate_limited: 3,
                request_timeout: Duration::from_secs(15),
                ..RetryPolicy::default()
            },
            budgets: Mutex::default(),
            failures: Mutex::default(),
        }
    }

    /// A HubSpot client for `integration`'s API settings and `token`, sharing the
    /// integration's budget.
    pub fn hubspot_client(&self, integration: &HubSpotIntegration, token: String) -> HubSpotClient {
        let api = &integration.spec.api;
        let budget = self
            .budgets
            .lock()
            .expect("budget map lock")
            .entry(object_key(integration))
            .or_insert_with(|| Arc::new(RequestBudget::for_tier(api.tier)))
            .clone();
        HubSpotClient::new(ClientSettings {
            base_url: api.base_url.clone(),
            api_version: api.version.clone(),
            access_token: token,
            tier: api.tier,
        })
        .with_budget(budget)
        .with_retry(self.hubspot_retry.clone())
    }

    /// Records a finished reconcile: resets the object's error backoff.
    fn succeeded<K: Resource<DynamicType = ()>>(&self, object: &K) {
        self.metrics.count::<K>("ok");
        self.failures.lock().expect("failure map lock").remove(&object_key(object));
    }
}

/// `namespace/name` of an object.
fn object_key<K: Resource>(object: &K) -> String {
    format!("{}/{}", object.namespace().unwrap_or_default(), object.name_any())
}

/// After a failed reconcile, retry with a per-object exponential backoff (5 s doubling to
/// 5 min), so one broken object neither spins nor waits as long as a healthy one.
pub fn error_policy<K: Resource<DynamicType = ()>>(object: Arc<K>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.count::<K>("error");
    let failures = {
        let mut map = ctx.failures.lock().expect("failure map lock");
        let n = map.entry(object_key(object.as_ref())).or_insert(0);
        *n += 1;
        *n
    };
    let wait = ERROR_BACKOFF_INITIAL.saturating_mul(1 << (failures - 1).min(10)).min(ERROR_BACKOFF_MAX);
    tracing::warn!(kind = %K::kind(&()), object = %object_key(object.as_ref()), %error, failures, retry_in_s = wait.as_secs(), "reconcile failed");
    Action::requeue(wait)
}

/// An Api over one namespace, or all namespaces when `namespace` is unset.
fn scoped_api<K>(client: Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    }
}

/// Reads the named Secrets of `namespace`; a Secret that does not exist is simply absent.
async fn read_secrets(client: &Client, namespace: &str, names: &[String]) -> Result<SecretStore, Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let mut store = SecretStore::default();
    for name in names {
        if let Some(secret) = api.get_opt(name).await? {
            store.insert(secret);
        }
    }
    Ok(store)
}

/// Server-side apply of `object` as [`FIELD_MANAGER`], taking over conflicting fields.
async fn apply<K>(api: &Api<K>, object: &K) -> Result<K, Error>
where
    K: Resource<DynamicType = ()> + Clone + Debug + Serialize + DeserializeOwned,
{
    let name = object.meta().name.clone().ok_or_else(|| Error::MissingObjectKey(K::kind(&()).into(), "name"))?;
    Ok(api.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(object)).await?)
}

/// Merge-patches `status` into the status subresource. A merge patch leaves keys it does not
/// mention alone, so keys the previous status had and the new one omits are sent as null.
async fn patch_status<K, S>(api: &Api<K>, name: &str, previous: Option<&S>, status: &S) -> Result<(), Error>
where
    K: Resource + Clone + Debug + DeserializeOwned,
    S: Serialize,
{
    let mut new = serde_json::to_value(status).expect("a status always serialises");
    if let Some(previous) = previous
        && let serde_json::Value::Object(old) = serde_json::to_value(previous).expect("a status always serialises")
        && let Some(fields) = new.as_object_mut()
    {
        for key in old.keys() {
            fields.entry(key.clone()).or_insert(serde_json::Value::Null);
        }
    }
    let patch = serde_json::json!({ "status": new });
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    Ok(())
}

/// Runs every controller until SIGTERM or Ctrl-C, serving metrics and health on
/// `args.metrics_listen`.
pub async fn run(args: ControllerArgs) -> anyhow::Result<()> {
    let client = Client::try_default().await?;
    let ctx = Arc::new(Context::new(client.clone(), args.receiver_image.clone()));
    let shutdown = async {
        crate::shutdown::signal().await;
        tracing::info!("shutting down");
    }
    .boxed()
    .shared();
    let namespace = args.namespace.as_deref();

    let integrations = integration::controller(client.clone(), namespace);
    let mappings = mapping::controller(client.clone(), namespace);
    let properties = property::controller(client.clone(), namespace);
    let ready = Arc::new(AtomicBool::new(false));
    let (integration_store, mapping_store, property_store) =
        (integrations.store(), mappings.store(), properties.store());
    let ready_flag = ready.clone();
    tokio::spawn(async move {
        // Ready once every cache holds a complete first listing.
        if integration_store.wait_until_ready().await.is_ok()
            && mapping_store.wait_until_ready().await.is_ok()
            && property_store.wait_until_ready().await.is_ok()
        {
            ready_flag.store(true, Ordering::Relaxed);
        }
    });

    let listener = tokio::net::TcpListener::bind(args.metrics_listen)
        .await
        .map_err(|e| anyhow::anyhow!("binding the metrics address {}: {e}", args.metrics_listen))?;
    let server = serve_health(listener, ctx.clone(), ready, shutdown.clone());
    tracing::info!(namespace = namespace.unwrap_or("*"), image = %args.receiver_image, "controller started");
    let integrations = integrations
        .graceful_shutdown_on(shutdown.clone())
        .run(integration::reconcile, error_policy, ctx.clone())
        .for_each(log_outcome);
    let mappings = mappings
        .graceful_shutdown_on(shutdown.clone())
        .run(mapping::reconcile, error_policy, ctx.clone())
        .for_each(log_outcome);
    let properties = properties
        .graceful_shutdown_on(shutdown.clone())
        .run(property::reconcile, error_policy, ctx.clone())
        .for_each(log_outcome);
    let everything = async { tokio::join!(integrations, mappings, properties, server) };
    // A graceful shutdown waits for running reconciles, and for the first listing of each
    // cache, which never comes while the API server is unreachable: do not wait forever.
    let grace_over = shutdown.then(|()| tokio::time::sleep(SHUTDOWN_GRACE));
    tokio::select! {
        (_, _, _, served) = everything => served?,
        () = grace_over => tracing::warn!(grace_s = SHUTDOWN_GRACE.as_secs(), "still busy after the shutdown grace period; exiting"),
    }
    tracing::info!("controller stopped");
    Ok(())
}

async fn log_outcome<K, QE>(outcome: Result<(ObjectRef<K>, Action), ControllerError<Error, QE>>)
where
    K: Resource,
    QE: std::error::Error,
{
    match outcome {
        Ok((object, _)) => tracing::debug!(%object, "reconciled"),
        // Failed reconciles are logged by `error_policy` with their backoff.
        Err(ControllerError::ReconcilerFailed(..)) => {}
        Err(e) => tracing::warn!(error = %e, "controller error"),
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `listener` until `shutdown`.
async fn serve_health(
    listener: tokio::net::TcpListener,
    ctx: Arc<Context>,
    ready: Arc<AtomicBool>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    use axum::http::{StatusCode, header};
    use axum::routing::get;

    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || async move {
                (
                    [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
                    ctx.metrics.encode(),
                )
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || async move {
                if ready.load(Ordering::Relaxed) {
                    (StatusCode::OK, "ok")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "caches not synced")
                }
            }),
        );
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn health_server_reports_liveness_readiness_and_metrics_until_shutdown() {
        let (ctx, _api) = fixtures::test_context();
        let error = Error::MissingObjectKey("crm".into(), "uid");
        error_policy(Arc::new(fixtures::integration("http://127.0.0.1:9", &[])), &error, ctx.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let ready = Arc::new(AtomicBool::new(false));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_health(listener, ctx, ready.clone(), async move {
            let _ = stopped.await;
        }));
        let http = reqwest::Client::new();
        let get = |path: &str| {
            let request = http.get(format!("{base}{path}"));
            async move {
                let response = tokio::time::timeout(Duration::from_secs(10), request.send()).await.unwrap().unwrap();
                (response.status().as_u16(), response.text().await.unwrap())
            }
        };
        assert_eq!(get("/healthz").await, (200, "ok".to_string()));
        assert_eq!(get("/readyz").await.0, 503);
        ready.store(true, Ordering::Relaxed);
        assert_eq!(get("/readyz").await, (200, "ok".to_string()));
        let (status, metrics) = get("/metrics").await;
        assert_eq!(status, 200);
        assert!(
            metrics.contains(r#"hubspot_operator_reconciliations_total{kind="HubSpotIntegration",outcome="error"} 1"#),
            "{metrics}"
        );
        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(10), server).await.unwrap().unwrap().unwrap();
    }

    #[tokio::test]
    async fn failed_reconciles_back_off_per_object_until_one_succeeds() {
        let (ctx, _api) = fixtures::test_context();
        let crm = Arc::new(fixtures::integration("http://127.0.0.1:9", &[]));
        let mut other = fixtures::integration("http://127.0.0.1:9", &[]);
        other.metadata.name = Some("other".into());
        let other = Arc::new(other);
        let error = Error::MissingObjectKey("crm".into(), "uid");
        let waits: Vec<Action> = (0..3).map(|_| error_policy(crm.clone(), &error, ctx.clone())).collect();
        assert_eq!(waits, [5, 10, 20].map(|s| Action::requeue(Duration::from_secs(s))));
        assert_eq!(error_policy(other, &error, ctx.clone()), Action::requeue(Duration::from_secs(5)));
        ctx.succeeded(crm.as_ref());
        assert_eq!(error_policy(crm.clone(), &error, ctx.clone()), Action::requeue(Duration::from_secs(5)));
        for _ in 0..20 {
            error_policy(crm.clone(), &error, ctx.clone());
        }
        assert_eq!(error_policy(crm, &error, ctx.clone()), Action::requeue(ERROR_BACKOFF_MAX));
        let metrics = ctx.metrics.encode();
        assert!(
            metrics.contains(r#"hubspot_operator_reconciliations_total{kind="HubSpotIntegration",outcome="error"} 26"#),
            "{metrics}"
        );
        assert!(
            metrics.contains(r#"hubspot_operator_reconciliations_total{kind="HubSpotIntegration",outcome="ok"} 1"#),
            "{metrics}"
        );
    }
}
