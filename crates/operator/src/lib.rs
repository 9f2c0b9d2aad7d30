//! Reconcilers of the operator: one per kind, each going dereference (read Secrets and related
//! objects) → client-free build of desired objects and status → apply → status patch.
//!
//! The deciding parts are pure and public ([`resources`], [`status`], [`secrets`]) so `dev` mode
//! can run them on manifests without a cluster.
//!
//! Uses `model` for the resources and the receiver config it renders, `hubspot` for HubSpot's
//! management APIs, and `receiver` for its metrics.

pub mod catalogue;
pub mod integration;
pub mod integration_cache;
pub mod leader;
pub mod mapping;
pub mod property;
pub mod receiver_reports;
pub mod resources;
pub mod secrets;
pub mod status;
pub mod trace_env;
pub mod webhooks;

#[cfg(test)]
mod fixtures;

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, Stream, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Config as ControllerConfig, Error as ControllerError};
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher::{self, watcher};
use kube::{Client, Resource, ResourceExt};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::Instrument;

use catalogue::{Freshness, PropertyCatalogue};
use hubspot::client::RetryPolicy;
use hubspot::{ClientSettings, HubSpotClient, RequestBudget};
use integration_cache::IntegrationCache;
use model::api::conditions::is_true;
use model::api::integration::condition_types::AUTHENTICATED;
use model::api::{HubSpotIntegration, HubSpotProperty, PropertyMapping};
use secrets::{SecretError, SecretStore};

/// Field manager of every server-side apply and status patch.
pub const FIELD_MANAGER: &str = "hubspot-operator";
/// Receiver image used when an integration does not name one.
pub const DEFAULT_RECEIVER_IMAGE: &str =
    concat!("ghcr.io/hubspot-operator/hubspot-operator:", env!("CARGO_PKG_VERSION"));
/// How often a healthy object is checked again (HubSpot changes are not watched).
pub const HEALTHY_REQUEUE: Duration = Duration::from_secs(5 * 60);
/// How soon an object that is not ready is checked again.
pub const UNHEALTHY_REQUEUE: Duration = Duration::from_secs(30);

/// How often a ready mapping reads its receivers' sync reports again. The HubSpot property
/// listing it also checks is cached for [`HEALTHY_REQUEUE`], so this costs no HubSpot calls.
pub const SYNC_REFRESH: Duration = Duration::from_secs(60);
/// Reconciles of one controller that run at once, unless told otherwise. Each waits mostly on
/// HubSpot, whose request budget (about 19 calls per second on Professional) sets the pace
/// anyway; more at once would only hold more answers in memory while they wait for it.
pub const DEFAULT_MAX_CONCURRENT_RECONCILES: u16 = 10;
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
    /// Reconcile only while holding a coordination.k8s.io Lease, so that of several replicas
    /// exactly one is active and the others stand by.
    #[arg(long, env = "LEADER_ELECT")]
    pub leader_elect: bool,
    /// Name of the leader Lease.
    #[arg(long, env = "LEADER_ELECT_LEASE_NAME", default_value = "hubspot-operator")]
    pub leader_elect_lease_name: String,
    /// Namespace of the leader Lease; the controller's own namespace when unset.
    #[arg(long, env = "LEADER_ELECT_NAMESPACE")]
    pub leader_elect_namespace: Option<String>,
    /// Seconds a leader that stops renewing keeps the Lease from the other replicas.
    #[arg(long, env = "LEADER_ELECT_LEASE_DURATION", default_value_t = 15, value_name = "SECONDS")]
    pub leader_elect_lease_duration: u64,
    /// Seconds the leader keeps trying to renew before it stops reconciling and exits.
    #[arg(long, env = "LEADER_ELECT_RENEW_DEADLINE", default_value_t = 10, value_name = "SECONDS")]
    pub leader_elect_renew_deadline: u64,
    /// Seconds between two attempts to acquire or renew the Lease.
    #[arg(long, env = "LEADER_ELECT_RETRY_PERIOD", default_value_t = 2, value_name = "SECONDS")]
    pub leader_elect_retry_period: u64,
    /// Reconciles each controller runs at once (at least 1); objects due meanwhile wait their
    /// turn.
    #[arg(long, env = "MAX_CONCURRENT_RECONCILES", default_value_t = DEFAULT_MAX_CONCURRENT_RECONCILES, value_parser = clap::value_parser!(u16).range(1..))]
    pub max_concurrent_reconciles: u16,
}

impl ControllerArgs {
    /// The leader Lease settings when leader election is on. The identity is the pod name
    /// (`POD_NAME`, else `HOSTNAME`) with a random suffix, unique across restarts.
    pub fn lease_settings(&self, default_namespace: &str) -> Result<Option<leader::LeaseSettings>, String> {
        if !self.leader_elect {
            return Ok(None);
        }
        let pod =
            std::env::var("POD_NAME").or_else(|_| std::env::var("HOSTNAME")).unwrap_or_else(|_| "controller".into());
        let settings = leader::LeaseSettings {
            name: self.leader_elect_lease_name.clone(),
            namespace: self.leader_elect_namespace.clone().unwrap_or_else(|| default_namespace.to_string()),
            identity: format!("{pod}_{:08x}", rand::random::<u32>()),
            lease_duration: Duration::from_secs(self.leader_elect_lease_duration),
            renew_deadline: Duration::from_secs(self.leader_elect_renew_deadline),
            retry_period: Duration::from_secs(self.leader_elect_retry_period),
        };
        settings.validate()?;
        Ok(Some(settings))
    }
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
    /// The watch that keeps a cache of `{0}` objects has stopped.
    #[error("the {0} cache is not kept any more")]
    CacheUnavailable(&'static str),
}

/// One object of ours.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ObjectLabels {
    pub namespace: String,
    pub name: String,
}

impl ObjectLabels {
    pub(crate) fn of(object: &impl Resource) -> ObjectLabels {
        ObjectLabels { namespace: object.namespace().unwrap_or_default(), name: object.name_any() }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    pub controller: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub controller: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NameLabels {
    pub name: String,
}

type HistogramFamily = Family<ControllerLabels, Histogram, fn() -> Histogram>;

/// Metrics of the controller process, named as controller-runtime names them so that
/// dashboards and alerts written for Go operators work unchanged.
pub struct ControllerMetrics {
    registry: Registry,
    /// Finished reconciles by controller and result (`success`, `error`, `requeue`).
    pub reconcile_total: Family<ResultLabels, Counter>,
    /// Failed reconciles by controller.
    pub reconcile_errors: Family<ControllerLabels, Counter>,
    /// Reconcile duration by controller.
    pub reconcile_time: HistogramFamily,
    /// Reconciles in flight by controller (see [`instrumented`]).
    pub active_workers: Family<ControllerLabels, Gauge>,
    /// The most reconciles each controller runs at once.
    pub max_concurrent_reconciles: Family<ControllerLabels, Gauge>,
    /// 1 while this replica holds the leader Lease `name`, else 0 (leader election only).
    pub leader: Family<NameLabels, Gauge>,
    /// HubSpot API calls of the reconcilers.
    pub hubspot: Arc<receiver::metrics::Metrics>,
    /// When each `HubSpotProperty` was last read from HubSpot (Unix seconds): the heartbeat of
    /// the drift checks, which does not go into the object's status.
    pub property_last_sync: Family<ObjectLabels, Gauge<f64, AtomicU64>>,
}

impl Default for ControllerMetrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let reconcile_total = Family::<ResultLabels, Counter>::default();
        let reconcile_errors = Family::<ControllerLabels, Counter>::default();
        let reconcile_time: HistogramFamily =
            Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.005, 2.0, 15)));
        let active_workers = Family::<ControllerLabels, Gauge>::default();
        let max_concurrent_reconciles = Family::<ControllerLabels, Gauge>::default();
        let leader = Family::<NameLabels, Gauge>::default();
        let hubspot = Arc::new(receiver::metrics::Metrics::default());
        let property_last_sync = Family::<ObjectLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "controller_runtime_reconcile",
            "Total number of reconciliations per controller",
            reconcile_total.clone(),
        );
        registry.register(
            "controller_runtime_reconcile_errors",
            "Total number of reconciliation errors per controller",
            reconcile_errors.clone(),
        );
        registry.register(
            "controller_runtime_reconcile_time_seconds",
            "Length of time per reconciliation per controller",
            reconcile_time.clone(),
        );
        registry.register(
            "controller_runtime_active_workers",
            "Number of currently used workers per controller",
            active_workers.clone(),
        );
        registry.register(
            "controller_runtime_max_concurrent_reconciles",
            "Maximum number of concurrent reconciles per controller",
            max_concurrent_reconciles.clone(),
        );
        registry.register(
            "leader_election_master_status",
            "1 while this replica holds the leader Lease, else 0",
            leader.clone(),
        );
        let prefixed = registry.sub_registry_with_prefix("hubspot_operator");
        prefixed.register(
            "hubspot_requests",
            "HubSpot API calls by operation and outcome",
            hubspot.hubspot_requests.clone(),
        );
        prefixed.register(
            "hubspot_request_duration_seconds",
            "HubSpot API call latency",
            hubspot.hubspot_latency.clone(),
        );
        prefixed.register(
            "property_last_sync_timestamp_seconds",
            "When each HubSpotProperty was last read from HubSpot, as Unix time",
            property_last_sync.clone(),
        );
        Self {
            registry,
            reconcile_total,
            reconcile_errors,
            reconcile_time,
            active_workers,
            max_concurrent_reconciles,
            leader,
            hubspot,
            property_last_sync,
        }
    }
}

impl ControllerMetrics {
    /// Records a finished reconcile of `controller`.
    fn observe(&self, controller: &str, outcome: &Result<Action, Error>, took: Duration) {
        let labels = ControllerLabels { controller: controller.into() };
        let result = reconcile_result(outcome);
        if outcome.is_err() {
            self.reconcile_errors.get_or_create(&labels).inc();
        }
        self.reconcile_total
            .get_or_create(&ResultLabels { controller: controller.into(), result: result.into() })
            .inc();
        self.reconcile_time.get_or_create(&labels).observe(took.as_secs_f64());
    }

    /// Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

/// The `result` of a reconcile, as metrics and traces report it.
fn reconcile_result(outcome: &Result<Action, Error>) -> &'static str {
    match outcome {
        Err(_) => "error",
        // Not ready yet: visited again soon rather than at the periodic check.
        Ok(action) if *action == Action::requeue(UNHEALTHY_REQUEUE) => "requeue",
        Ok(_) => "success",
    }
}

/// The controller label of kind `K`: its lowercase kind, as controller-runtime names controllers.
fn controller_name<K: Resource<DynamicType = ()>>() -> String {
    K::kind(&()).to_lowercase()
}

/// Counts a reconcile in flight while it lives, also when it is cancelled.
struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// `reconcile` with the controller-runtime metrics: result, errors, duration and the
/// reconciles in flight (`active_workers`, at most the controller's concurrency). The objects
/// due and waiting for a worker are not counted: kube-runtime keeps its scheduling queue
/// private, so there is no `workqueue_depth`. Each reconcile is a `reconcile` span (exported as
/// a trace when trace export is on) with the controller, the object and the result.
pub fn instrumented<K, F, Fut>(
    reconcile: F,
) -> impl FnMut(Arc<K>, Arc<Context>) -> BoxFuture<'static, Result<Action, Error>>
where
    K: Resource<DynamicType = ()> + Send + Sync + 'static,
    F: Fn(Arc<K>, Arc<Context>) -> Fut + Copy + Send + 'static,
    Fut: Future<Output = Result<Action, Error>> + Send + 'static,
{
    move |object, ctx| {
        let controller = controller_name::<K>();
        let span = tracing::debug_span!(
            "reconcile",
            controller = %controller,
            namespace = object.namespace(),
            name = %object.name_any(),
            result = tracing::field::Empty,
            error = tracing::field::Empty,
            "otel.status_code" = tracing::field::Empty,
        );
        async move {
            let workers =
                ctx.metrics.active_workers.get_or_create(&ControllerLabels { controller: controller.clone() }).clone();
            workers.inc();
            let in_flight = InFlight(workers);
            let started = std::time::Instant::now();
            let outcome = reconcile(object, ctx.clone()).await;
            drop(in_flight);
            ctx.metrics.observe(&controller, &outcome, started.elapsed());
            let span = tracing::Span::current();
            span.record("result", reconcile_result(&outcome));
            if let Err(e) = &outcome {
                span.record("error", tracing::field::display(e));
                span.record("otel.status_code", "error");
            }
            outcome
        }
        .instrument(span)
        .boxed()
    }
}

/// State shared by both reconcilers.
pub struct Context {
    pub client: Client,
    /// Receiver image of integrations that do not name one.
    pub receiver_image: String,
    /// The operator's trace export settings, which its receiver pods get too
    /// (`telemetry::receiver_trace_env`); empty when traces are not exported.
    pub receiver_trace_env: Vec<(String, String)>,
    pub metrics: ControllerMetrics,
    /// How often a healthy object is checked against HubSpot again ([`HEALTHY_REQUEUE`]; the
    /// benchmark shortens it).
    pub drift_interval: Duration,
    /// How often a ready mapping's sync figures are read from its receivers again
    /// ([`SYNC_REFRESH`]).
    pub sync_refresh: Duration,
    /// For the receivers' sync reports (`receiver_reports`).
    pub receiver_http: reqwest::Client,
    /// Reconciles each controller runs at once.
    pub max_concurrent_reconciles: u16,
    /// Retries of HubSpot calls; short, because a reconcile should not block for long.
    hubspot_retry: RetryPolicy,
    /// One HubSpot client per integration (`namespace/name`), shared by the calls both
    /// reconcilers make for it: its request budget keeps the portal's limits across
    /// reconciles, and its connection pool and TLS setup are built once rather than per
    /// reconcile (with 1,000 objects due at once, per-reconcile clients cost ~100 MiB).
    hubspot_clients: Mutex<HashMap<String, CachedClient>>,
    /// One request budget per integration, shared by its static-token and OAuth clients.
    budgets: Mutex<HashMap<String, Arc<RequestBudget>>>,
    /// HubSpot's property names per integration and object type, for the mapping reconciles.
    catalogues: Mutex<HashMap<CatalogueKey, Arc<PropertyCatalogue>>>,
    /// Consecutive failed reconciles per object, for the error backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// The integrations, and their token and receiver reports, for the property and mapping
    /// reconcilers; kept by [`IntegrationCache::watch`], which whoever runs them runs too.
    pub integrations: IntegrationCache,
    /// When each property was last read from HubSpot.
    pub property_reads: property::PropertyReads,
}

impl Context {
    pub fn new(client: Client, receiver_image: impl Into<String>) -> Self {
        let metrics = ControllerMetrics::default();
        Self {
            client,
            receiver_image: receiver_image.into(),
            receiver_trace_env: Vec::new(),
            property_reads: property::PropertyReads::new(metrics.property_last_sync.clone()),
            metrics,
            drift_interval: HEALTHY_REQUEUE,
            sync_refresh: SYNC_REFRESH,
            receiver_http: reqwest::Client::new(),
            max_concurrent_reconciles: DEFAULT_MAX_CONCURRENT_RECONCILES,
            hubspot_retry: RetryPolicy {
                max_attempts: 3,
                max_backoff: Duration::from_secs(5),
                max_rate_limited: 3,
                request_timeout: Duration::from_secs(15),
                ..RetryPolicy::default()
            },
            hubspot_clients: Mutex::default(),
            budgets: Mutex::default(),
            catalogues: Mutex::default(),
            failures: Mutex::default(),
            integrations: IntegrationCache::default(),
        }
    }

    /// The kube-runtime settings every controller runs with; also published as
    /// `controller_runtime_max_concurrent_reconciles` of `K`'s controller.
    pub fn controller_config<K: Resource<DynamicType = ()>>(&self) -> ControllerConfig {
        self.metrics
            .max_concurrent_reconciles
            .get_or_create(&ControllerLabels { controller: controller_name::<K>() })
            .set(i64::from(self.max_concurrent_reconciles));
        ControllerConfig::default().concurrency(self.max_concurrent_reconciles)
    }

    /// The catalogue of `integration`'s properties of `object_type`. It belongs to the
    /// integration object (uid) and its API base URL: a recreated integration, or one pointed
    /// at another HubSpot, starts a new one.
    pub fn property_catalogue(&self, integration: &HubSpotIntegration, object_type: &str) -> Arc<PropertyCatalogue> {
        let key = CatalogueKey {
            integration: integration.metadata.uid.clone().unwrap_or_else(|| object_key(integration)),
            base_url: integration.spec.api.base_url.clone(),
            object_type: object_type.to_string(),
        };
        self.catalogues.lock().expect("catalogue map lock").entry(key).or_default().clone()
    }

    /// How long a property catalogue's listing serves mapping reconciles.
    pub fn catalogue_freshness(&self) -> Freshness {
        Freshness { complete: self.drift_interval, incomplete: UNHEALTHY_REQUEUE.min(self.drift_interval) }
    }

    /// The HubSpot client for `integration`'s API settings and `token`; the cached one while
    /// they stay the same, a new one (with the integration's budget) when they change.
    pub fn hubspot_client(&self, integration: &HubSpotIntegration, token: String) -> HubSpotClient {
        let api = &integration.spec.api;
        let settings = ClientSettings {
            base_url: api.base_url.clone(),
            api_version: api.version.clone(),
            access_token: token,
            tier: api.tier,
        };
        let mut clients = self.hubspot_clients.lock().expect("client map lock");
        match clients.get(&object_key(integration)) {
            Some(cached) if cached.settings == settings => cached.client.clone(),
            _ => {
                let client = self.shared_settings(integration, HubSpotClient::new(settings.clone()));
                clients.insert(object_key(integration), CachedClient { settings, client: client.clone() });
                client
            }
        }
    }

    /// A HubSpot client for `integration`'s API settings and OAuth app `credentials`, sharing
    /// the integration's budget.
    pub fn hubspot_oauth_client(
        &self,
        integration: &HubSpotIntegration,
        credentials: hubspot::OAuthCredentials,
    ) -> HubSpotClient {
        let api = &integration.spec.api;
        let client = HubSpotClient::new_oauth(api.base_url.clone(), api.version.clone(), api.tier, credentials);
        self.shared_settings(integration, client)
    }

    /// The integration's budget (one per portal, whichever credentials call it), the
    /// controller's metrics and retry policy.
    fn shared_settings(&self, integration: &HubSpotIntegration, client: HubSpotClient) -> HubSpotClient {
        let tier = integration.spec.api.tier;
        let budget = self
            .budgets
            .lock()
            .expect("budget map lock")
            .entry(object_key(integration))
            .or_insert_with(|| Arc::new(RequestBudget::for_tier(tier)))
            .clone();
        client.with_budget(budget).with_observer(self.metrics.hubspot.clone()).with_retry(self.hubspot_retry.clone())
    }

    /// Records a finished reconcile: resets the object's error backoff.
    fn succeeded<K: Resource<DynamicType = ()>>(&self, object: &K) {
        self.failures.lock().expect("failure map lock").remove(&object_key(object));
    }
}

/// Which catalogue: an integration, the HubSpot it calls, an object type.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct CatalogueKey {
    integration: String,
    base_url: String,
    object_type: String,
}

/// A HubSpot client and the settings it was built with.
struct CachedClient {
    settings: ClientSettings,
    client: HubSpotClient,
}

/// `namespace/name` of an object.
fn object_key<K: Resource>(object: &K) -> String {
    format!("{}/{}", object.namespace().unwrap_or_default(), object.name_any())
}

/// After a failed reconcile, retry with a per-object exponential backoff (5 s doubling to
/// 5 min), so one broken object neither spins nor waits as long as a healthy one.
pub fn error_policy<K: Resource<DynamicType = ()>>(object: Arc<K>, error: &Error, ctx: Arc<Context>) -> Action {
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

/// Something that happened to an object, announced as a Kubernetes Event on it.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    /// A Warning (something needs attention) rather than a Normal event.
    pub warning: bool,
    pub reason: &'static str,
    pub note: String,
}

impl Change {
    pub fn normal(reason: &'static str, note: impl Into<String>) -> Self {
        Self { warning: false, reason, note: note.into() }
    }

    pub fn warning(reason: &'static str, note: impl Into<String>) -> Self {
        Self { warning: true, reason, note: note.into() }
    }
}

/// Publishes each change as an Event on `object`. Events are informative: a failure to
/// publish one is logged, not retried.
async fn publish<K: Resource<DynamicType = ()>>(ctx: &Context, object: &K, changes: &[Change]) {
    if changes.is_empty() {
        return;
    }
    let recorder = Recorder::new(ctx.client.clone(), Reporter { controller: FIELD_MANAGER.into(), instance: None });
    let reference = object.object_ref(&());
    for change in changes {
        let event = KubeEvent {
            type_: if change.warning { EventType::Warning } else { EventType::Normal },
            reason: change.reason.into(),
            // Event notes are limited to 1 kB.
            note: Some(change.note.chars().take(1000).collect()),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(e) = recorder.publish(&event, &reference).await {
            tracing::warn!(reason = change.reason, error = %e, "could not publish a Kubernetes Event");
        }
    }
}

/// A kind whose objects belong to one `HubSpotIntegration` of their namespace.
pub trait OfIntegration {
    fn integration_name(&self) -> &str;
}

impl OfIntegration for PropertyMapping {
    fn integration_name(&self) -> &str {
        &self.spec.integration_ref.name
    }
}

impl OfIntegration for HubSpotProperty {
    fn integration_name(&self) -> &str {
        &self.spec.integration_ref.name
    }
}

/// The objects in `store` that belong to `integration`: those to reconcile when it changes.
fn objects_of<K>(store: &Store<K>, integration: &HubSpotIntegration) -> Vec<ObjectRef<K>>
where
    K: Resource<DynamicType = ()> + OfIntegration + Clone + 'static,
{
    let (namespace, name) = (integration.namespace(), integration.name_any());
    store
        .state()
        .into_iter()
        .filter(|o| o.namespace() == namespace && o.integration_name() == name)
        .map(|o| ObjectRef::from_obj(o.as_ref()))
        .collect()
}

/// The objects of `events` whose `used` part changed, that appeared or that were deleted. A
/// watch reports every write of an object, each status write too, while a controller watching
/// another kind acts only on what it uses of it: without this filter every status write of a
/// watched object reconciles each object it maps to. An object recreated under the same name (a
/// new uid) is new. Errors pass through, for the controller's backoff.
fn changes_in<K, V>(
    events: impl Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
    used: impl Fn(&K) -> V,
) -> impl Stream<Item = Result<K, watcher::Error>>
where
    K: Resource,
    V: PartialEq,
{
    let mut seen: HashMap<String, (Option<String>, V)> = HashMap::new();
    let mut listed: HashSet<String> = HashSet::new();
    events.filter_map(move |event| {
        if let Ok(watcher::Event::InitApply(object)) = &event {
            listed.insert(object_key(object));
        }
        let passed = match event {
            Ok(watcher::Event::Apply(object) | watcher::Event::InitApply(object)) => {
                let current = (object.meta().uid.clone(), used(&object));
                let changed = seen.get(&object_key(&object)) != Some(&current);
                seen.insert(object_key(&object), current);
                changed.then_some(Ok(object))
            }
            Ok(watcher::Event::Delete(object)) => {
                seen.remove(&object_key(&object));
                Some(Ok(object))
            }
            Ok(watcher::Event::Init) => {
                listed.clear();
                None
            }
            // The watch broke and listed again: forget the objects deleted meanwhile, which no
            // Delete event reported.
            Ok(watcher::Event::InitDone) => {
                seen.retain(|key, _| listed.contains(key));
                None
            }
            Err(e) => Some(Err(e)),
        };
        std::future::ready(passed)
    })
}

/// The spec changes ([`changes_in`] of `metadata.generation`), creations and deletions of the
/// `K` objects in `namespace`.
fn spec_changes<K>(
    client: Client,
    namespace: Option<&str>,
) -> impl Stream<Item = Result<K, watcher::Error>> + Send + use<K>
where
    K: Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + DeserializeOwned
        + Send
        + 'static,
{
    changes_in(watcher(scoped_api::<K>(client, namespace), watcher::Config::default()), |object: &K| {
        object.meta().generation
    })
}

/// The changes of the integrations in `namespace` that concern their mappings and properties
/// ([`changes_in`] of [`integration_as_used`]), creations and deletions.
fn integration_changes(
    client: Client,
    namespace: Option<&str>,
) -> impl Stream<Item = Result<HubSpotIntegration, watcher::Error>> + Send + use<> {
    let api = scoped_api::<HubSpotIntegration>(client, namespace);
    changes_in(watcher(api, watcher::Config::default()), integration_as_used)
}

/// What the mapping and property reconcilers use of their integration: its spec (generation),
/// and whether HubSpot accepts its credentials. With OAuth they call HubSpot with the access
/// token the integration reconciler keeps in a Secret, which is there once `Authenticated`
/// turns True.
fn integration_as_used(integration: &HubSpotIntegration) -> (Option<i64>, bool) {
    let conditions = integration.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or_default();
    (integration.metadata.generation, is_true(conditions, AUTHENTICATED))
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

/// The token the property and mapping controllers call HubSpot with for `integration`: its
/// private app token, or for an OAuth app the access token the integration reconciler keeps in
/// its managed Secret (so only that reconciler ever uses the refresh token).
async fn api_token(client: &Client, integration: &HubSpotIntegration) -> Result<Result<String, SecretError>, Error> {
    let reference = match resources::api_token_ref(integration) {
        Ok(reference) => reference,
        Err(e) => return Ok(Err(e)),
    };
    let namespace = integration.namespace().unwrap_or_default();
    let secrets = read_secrets(client, &namespace, std::slice::from_ref(&reference.name)).await?;
    Ok(secrets.value(&reference))
}

/// Server-side apply of `object` as [`FIELD_MANAGER`], taking over conflicting fields.
async fn apply<K>(api: &Api<K>, object: &K) -> Result<K, Error>
where
    K: Resource<DynamicType = ()> + Clone + Debug + Serialize + DeserializeOwned,
{
    let name = object.meta().name.clone().ok_or_else(|| Error::MissingObjectKey(K::kind(&()).into(), "name"))?;
    apply_named(api, &name, object).await
}

/// [`apply`] of an object whose type is only known at run time (a [`kube::api::DynamicObject`]).
async fn apply_named<K>(api: &Api<K>, name: &str, object: &K) -> Result<K, Error>
where
    K: Resource + Clone + Debug + Serialize + DeserializeOwned,
{
    Ok(api.patch(name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(object)).await?)
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

/// Runs every controller until `shutdown` resolves, serving metrics and health on
/// `args.metrics_listen`. With leader election, the controllers run only while this replica
/// holds the Lease; losing it stops them and ends in an error, so the pod restarts as a
/// follower; a shutdown releases it.
pub async fn run(args: ControllerArgs, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    let client = Client::try_default().await?;
    let lease = args.lease_settings(client.default_namespace()).map_err(|e| anyhow::anyhow!("leader election: {e}"))?;
    let mut ctx = Context::new(client.clone(), args.receiver_image.clone());
    ctx.max_concurrent_reconciles = args.max_concurrent_reconciles;
    ctx.receiver_trace_env = crate::trace_env::receiver_trace_env(std::env::vars());
    let ctx = Arc::new(ctx);
    let shutdown = async {
        shutdown.await;
        tracing::info!("shutting down");
    }
    .boxed()
    .shared();
    let ready = Arc::new(AtomicBool::new(false));
    let listener = tokio::net::TcpListener::bind(args.metrics_listen)
        .await
        .map_err(|e| anyhow::anyhow!("binding the metrics address {}: {e}", args.metrics_listen))?;
    let server = tokio::spawn(serve_health(listener, ctx.clone(), ready.clone(), shutdown.clone()));

    let mut elector = lease.map(|settings| leader::LeaderElector::new(client.clone(), settings));
    if let Some(elector) = elector.as_mut() {
        // A replica standing by is ready: it serves its purpose by waiting, and a rollout must
        // not wait for it to lead.
        ready.store(true, Ordering::Relaxed);
        tracing::info!(lease = %elector.settings().name, namespace = %elector.settings().namespace, identity = %elector.settings().identity, "waiting for the leader lease");
        if !elector.acquire(shutdown.clone()).await {
            server.await??;
            return Ok(());
        }
        ready.store(false, Ordering::Relaxed);
    }
    let leader_gauge = elector
        .as_ref()
        .map(|e| ctx.metrics.leader.get_or_create(&NameLabels { name: e.settings().name.clone() }).clone());
    if let Some(gauge) = &leader_gauge {
        gauge.set(1);
    }

    let (controllers_done, controllers_done_rx) = tokio::sync::oneshot::channel::<()>();
    let (lost_tx, lost_rx) = tokio::sync::oneshot::channel::<()>();
    let holder = elector.map(|mut elector| {
        tokio::spawn(async move {
            // Renew until the controllers have stopped, so no other replica starts meanwhile.
            let end = elector
                .hold(async {
                    let _ = controllers_done_rx.await;
                })
                .await;
            if end == leader::HoldEnd::Lost {
                let _ = lost_tx.send(());
            }
            (elector, end)
        })
    });
    let lost = async {
        if lost_rx.await.is_err() {
            // No elector, or it stopped without losing: never a reason to stop.
            std::future::pending::<()>().await;
        }
    }
    .boxed()
    .shared();
    let stop = futures::future::select(shutdown.clone(), lost.clone()).map(|_| ()).shared();
    tokio::select! {
        () = run_controllers(client, ctx.clone(), args.namespace.as_deref(), ready, stop) => {}
        // Another replica may be leading already: drop running reconciles rather than finish them.
        () = lost => tracing::error!("stopping the controllers at once"),
    }
    let _ = controllers_done.send(());
    if let Some(holder) = holder {
        let (mut elector, end) = holder.await?;
        if let Some(gauge) = &leader_gauge {
            gauge.set(0);
        }
        if end == leader::HoldEnd::Lost {
            anyhow::bail!("lost the leader lease; exiting so that this replica restarts as a follower");
        }
        if let Err(e) = elector.release().await {
            tracing::warn!(error = %e, "could not release the leader lease; another replica takes over once it expires");
        }
    }
    server.await??;
    tracing::info!("controller stopped");
    Ok(())
}

/// Runs the three controllers until `stop`, then waits for running reconciles, at most
/// [`SHUTDOWN_GRACE`]. Sets `ready` once every cache holds a complete first listing.
async fn run_controllers(
    client: Client,
    ctx: Arc<Context>,
    namespace: Option<&str>,
    ready: Arc<AtomicBool>,
    stop: impl Future<Output = ()> + Clone + Send + Sync + 'static,
) {
    let integrations =
        integration::controller(client.clone(), namespace).with_config(ctx.controller_config::<HubSpotIntegration>());
    let mappings =
        mapping::controller(client.clone(), namespace).with_config(ctx.controller_config::<PropertyMapping>());
    let properties =
        property::controller(client.clone(), namespace).with_config(ctx.controller_config::<HubSpotProperty>());
    let (integration_store, mapping_store, property_store) =
        (integrations.store(), mappings.store(), properties.store());
    tokio::spawn(async move {
        if integration_store.wait_until_ready().await.is_ok()
            && mapping_store.wait_until_ready().await.is_ok()
            && property_store.wait_until_ready().await.is_ok()
        {
            ready.store(true, Ordering::Relaxed);
        }
    });
    tracing::info!(namespace = namespace.unwrap_or("*"), image = %ctx.receiver_image, "controllers started");
    let integration_cache = ctx.integrations.watch(client.clone(), namespace);
    let integrations = integrations
        .graceful_shutdown_on(stop.clone())
        .run(instrumented(integration::reconcile), error_policy, ctx.clone())
        .for_each(log_outcome);
    let mappings = mappings
        .graceful_shutdown_on(stop.clone())
        .run(instrumented(mapping::reconcile), error_policy, ctx.clone())
        .for_each(log_outcome);
    let properties = properties
        .graceful_shutdown_on(stop.clone())
        .run(instrumented(property::reconcile), error_policy, ctx.clone())
        .for_each(log_outcome);
    let everything = async {
        tokio::select! {
            _ = async { tokio::join!(integrations, mappings, properties) } => {}
            () = integration_cache => tracing::error!("the watch of HubSpotIntegrations ended"),
        }
    };
    // A graceful shutdown waits for running reconciles, and for the first listing of each
    // cache, which never comes while the API server is unreachable: do not wait forever.
    let grace_over = stop.then(|()| tokio::time::sleep(SHUTDOWN_GRACE));
    tokio::select! {
        _ = everything => {}
        () = grace_over => tracing::warn!(grace_s = SHUTDOWN_GRACE.as_secs(), "still busy after the shutdown grace period; stopping"),
    }
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
    use std::collections::BTreeMap;

    use super::*;

    /// `uid generation` of each object [`changes_in`] passes on from `events`, filtering by
    /// generation.
    async fn passed_on(events: Vec<Result<watcher::Event<PropertyMapping>, watcher::Error>>) -> Vec<String> {
        changes_in(futures::stream::iter(events), |m: &PropertyMapping| m.metadata.generation)
            .map(|passed| match passed {
                Ok(m) => format!("{} {}", m.metadata.uid.unwrap(), m.metadata.generation.unwrap()),
                Err(_) => "an error".to_string(),
            })
            .collect()
            .await
    }

    /// The `contacts` mapping with `uid`, at `generation`, its status listing `missing`.
    fn contacts(uid: &str, generation: i64, missing: &[&str]) -> PropertyMapping {
        let mut mapping = fixtures::mapping("crm", &["firstname"]);
        mapping.metadata.uid = Some(uid.into());
        mapping.metadata.generation = Some(generation);
        mapping.status = Some(model::api::PropertyMappingStatus {
            missing_properties: missing.iter().map(|p| p.to_string()).collect(),
            ..Default::default()
        });
        mapping
    }

    #[tokio::test]
    async fn watched_objects_are_passed_on_when_their_spec_changes_or_they_come_or_go_but_not_on_status_writes() {
        use watcher::Event::{Apply, Delete, Init, InitApply, InitDone};
        let events = vec![
            Ok(Init),
            Ok(InitApply(contacts("a", 1, &[]))),
            Ok(InitDone),
            // The mapping reconciler writes the status.
            Ok(Apply(contacts("a", 1, &["firstname"]))),
            // A new spec.
            Ok(Apply(contacts("a", 2, &["firstname"]))),
            Ok(Apply(contacts("a", 2, &[]))),
            Ok(Delete(contacts("a", 2, &[]))),
            // Created again under the same name: generation 1 again, a new uid.
            Ok(Apply(contacts("b", 1, &[]))),
            Err(watcher::Error::NoResourceVersion),
            // The watch broke and lists again: nothing new, but for an object deleted and
            // created meanwhile.
            Ok(Init),
            Ok(InitApply(contacts("b", 1, &["firstname"]))),
            Ok(InitDone),
            Ok(Init),
            Ok(InitApply(contacts("c", 1, &[]))),
            Ok(InitDone),
        ];
        assert_eq!(passed_on(events).await, ["a 1", "a 2", "a 2", "b 1", "an error", "c 1"]);
    }

    #[test]
    fn mappings_and_properties_use_their_integrations_spec_and_whether_its_credentials_work() {
        use model::api::conditions::condition;
        use model::api::integration::condition_types::RECEIVER_AVAILABLE;
        let integration = fixtures::integration("http://127.0.0.1:9", &[]);
        let with = |conditions: Vec<_>| {
            let mut i = integration.clone();
            i.status = Some(model::api::HubSpotIntegrationStatus { conditions, ..Default::default() });
            i
        };
        let unknown = integration_as_used(&integration);
        let receiver_up = with(vec![condition(RECEIVER_AVAILABLE, Some(true), "Available", "up", Some(1))]);
        assert_eq!(integration_as_used(&receiver_up), unknown, "a status write about the receiver concerns them not");
        let refused = with(vec![condition(AUTHENTICATED, Some(false), "Unauthorized", "no", Some(1))]);
        assert_eq!(integration_as_used(&refused), unknown);
        let accepted = with(vec![condition(AUTHENTICATED, Some(true), "TokenValid", "yes", Some(1))]);
        assert_ne!(integration_as_used(&accepted), unknown, "with OAuth the access token is there now");
        let mut edited = integration.clone();
        edited.metadata.generation = Some(2);
        assert_ne!(integration_as_used(&edited), unknown);
    }

    #[tokio::test]
    async fn health_server_reports_liveness_readiness_and_metrics_until_shutdown() {
        let (ctx, _api) = fixtures::test_context();
        let error = Err(Error::MissingObjectKey("crm".into(), "uid"));
        ctx.metrics.observe("hubspotintegration", &error, Duration::from_millis(3));
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
            metrics.contains(r#"controller_runtime_reconcile_total{controller="hubspotintegration",result="error"} 1"#),
            "{metrics}"
        );
        assert!(metrics.ends_with("# EOF\n"), "{metrics}");
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
    }

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: ControllerArgs,
    }

    #[test]
    fn leader_election_flags_become_lease_settings() {
        use clap::Parser;
        let off = Cli::try_parse_from(["controller"]).unwrap();
        assert_eq!(off.args.lease_settings("hubspot-system"), Ok(None));
        let on = Cli::try_parse_from([
            "controller",
            "--leader-elect",
            "--leader-elect-lease-name=crm-operator",
            "--leader-elect-lease-duration=30",
            "--leader-elect-renew-deadline=20",
            "--leader-elect-retry-period=4",
        ])
        .unwrap();
        let settings = on.args.lease_settings("hubspot-system").unwrap().expect("leader election on");
        assert_eq!(
            (settings.name.as_str(), settings.namespace.as_str()),
            ("crm-operator", "hubspot-system"),
            "the Lease lives in the controller's own namespace unless told otherwise"
        );
        assert_eq!(
            (settings.lease_duration, settings.renew_deadline, settings.retry_period),
            (Duration::from_secs(30), Duration::from_secs(20), Duration::from_secs(4))
        );
        let (_, suffix) = settings.identity.rsplit_once('_').expect("pod name and random suffix");
        assert!(suffix.len() == 8 && suffix.chars().all(|c| c.is_ascii_hexdigit()), "{}", settings.identity);
        let bad = Cli::try_parse_from(["controller", "--leader-elect", "--leader-elect-renew-deadline=20"]).unwrap();
        assert!(bad.args.lease_settings("ns").unwrap_err().contains("longer than the renew deadline"));
    }

    #[tokio::test]
    async fn concurrency_is_a_flag_with_a_default_and_is_published() {
        use clap::Parser;
        let default = Cli::try_parse_from(["controller"]).unwrap();
        assert_eq!(default.args.max_concurrent_reconciles, DEFAULT_MAX_CONCURRENT_RECONCILES);
        let set = Cli::try_parse_from(["controller", "--max-concurrent-reconciles=3"]).unwrap();
        assert_eq!(set.args.max_concurrent_reconciles, 3);
        assert!(
            Cli::try_parse_from(["controller", "--max-concurrent-reconciles=0"]).is_err(),
            "0 is no limit in kube-runtime"
        );

        let (ctx, _api) = fixtures::test_context();
        ctx.controller_config::<PropertyMapping>();
        let metrics = ctx.metrics.encode();
        assert_eq!(
            sample(&metrics, r#"controller_runtime_max_concurrent_reconciles{controller="propertymapping"}"#),
            Some(f64::from(DEFAULT_MAX_CONCURRENT_RECONCILES)),
            "{metrics}"
        );
    }

    /// The value of the sample `line_start` (metric name and labels) in `metrics`.
    fn sample(metrics: &str, line_start: &str) -> Option<f64> {
        metrics.lines().find_map(|l| l.strip_prefix(line_start)?.strip_prefix(' ')?.parse().ok())
    }

    static RELEASE: tokio::sync::Notify = tokio::sync::Notify::const_new();

    /// A reconcile that finishes, settled, once [`RELEASE`] is notified.
    async fn held_reconcile(_: Arc<model::api::PropertyMapping>, _: Arc<Context>) -> Result<Action, Error> {
        RELEASE.notified().await;
        Ok(Action::requeue(HEALTHY_REQUEUE))
    }

    /// A span's name and its fields as they were when it closed.
    type ClosedSpan = (&'static str, BTreeMap<String, String>);

    /// Keeps every span that closes while it is the thread's subscriber.
    #[derive(Clone, Default)]
    struct ClosedSpans(Arc<Mutex<Vec<ClosedSpan>>>);

    struct SpanFields(BTreeMap<String, String>);

    impl tracing::field::Visit for SpanFields {
        fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn Debug) {
            self.0.insert(field.name().to_string(), format!("{value:?}"));
        }

        fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
            self.0.insert(field.name().to_string(), value.to_string());
        }
    }

    impl<S> tracing_subscriber::Layer<S> for ClosedSpans
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        fn on_new_span(
            &self,
            attrs: &tracing::span::Attributes<'_>,
            id: &tracing::span::Id,
            ctx: tracing_subscriber::layer::Context<'_, S>,
        ) {
            let mut fields = SpanFields(BTreeMap::new());
            attrs.record(&mut fields);
            ctx.span(id).unwrap().extensions_mut().insert(fields);
        }

        fn on_record(
            &self,
            id: &tracing::span::Id,
            values: &tracing::span::Record<'_>,
            ctx: tracing_subscriber::layer::Context<'_, S>,
        ) {
            values.record(ctx.span(id).unwrap().extensions_mut().get_mut::<SpanFields>().unwrap());
        }

        fn on_close(&self, id: tracing::span::Id, ctx: tracing_subscriber::layer::Context<'_, S>) {
            let span = ctx.span(&id).unwrap();
            let fields = span.extensions_mut().remove::<SpanFields>().unwrap().0;
            self.0.lock().unwrap().push((span.name(), fields));
        }
    }

    #[tokio::test]
    async fn reconciles_are_counted_by_result_timed_and_in_flight_ones_are_the_active_workers() {
        use tracing_subscriber::layer::SubscriberExt;
        let spans = ClosedSpans::default();
        let _spans = tracing::subscriber::set_default(tracing_subscriber::registry().with(spans.clone()));
        let (ctx, api) = fixtures::test_context();
        fixtures::given_integrations(&ctx, []);
        let mapping = Arc::new(fixtures::mapping("crm", &["firstname"]));
        const STATUS: &str = "/apis/hubspot.io/v1alpha1/namespaces/default/propertymappings/contacts/status";
        let object = fixtures::to_json(mapping.as_ref());
        let mut reconcile = instrumented(mapping::reconcile);
        let reconciles = async {
            // The integration does not exist: not ready, visited again soon.
            let requeued = reconcile(mapping.clone(), ctx.clone()).await;
            // The API server fails the status write.
            let failed = reconcile(mapping.clone(), ctx.clone()).await;
            (requeued, failed)
        };
        let script = tokio::spawn(async move {
            let mut api = api;
            api.event("Warning", "IntegrationNotFound").await;
            api.merge_status(STATUS, object).await;
            api.event("Warning", "IntegrationNotFound").await;
            api.fail(http::Method::PATCH, STATUS, 500).await;
        });
        let (requeued, failed) = reconciles.await;
        script.await.expect("the scripted calls");
        assert_eq!(requeued.unwrap(), Action::requeue(UNHEALTHY_REQUEUE));
        assert!(failed.is_err());

        let mut held = instrumented(held_reconcile);
        let running = tokio::spawn(held(mapping.clone(), ctx.clone()));
        let workers = r#"controller_runtime_active_workers{controller="propertymapping"}"#;
        while sample(&ctx.metrics.encode(), workers) != Some(1.0) {
            tokio::task::yield_now().await;
        }
        RELEASE.notify_one();
        assert_eq!(running.await.unwrap().unwrap(), Action::requeue(HEALTHY_REQUEUE));

        let metrics = ctx.metrics.encode();
        let result = |r: &str| {
            sample(
                &metrics,
                &format!(r#"controller_runtime_reconcile_total{{controller="propertymapping",result="{r}"}}"#),
            )
        };
        assert_eq!(
            (result("success"), result("requeue"), result("error")),
            (Some(1.0), Some(1.0), Some(1.0)),
            "{metrics}"
        );
        assert_eq!(
            sample(&metrics, r#"controller_runtime_reconcile_errors_total{controller="propertymapping"}"#),
            Some(1.0)
        );
        assert_eq!(
            sample(&metrics, r#"controller_runtime_reconcile_time_seconds_count{controller="propertymapping"}"#),
            Some(3.0)
        );
        assert_eq!(sample(&metrics, workers), Some(0.0));

        // Each reconcile is a span with the object and the result; the failed one with its error.
        let reconciles: Vec<BTreeMap<String, String>> =
            spans.0.lock().unwrap().iter().filter(|(name, _)| *name == "reconcile").map(|(_, f)| f.clone()).collect();
        let field = |span: &BTreeMap<String, String>, key: &str| span.get(key).cloned().unwrap_or_default();
        let results: Vec<String> = reconciles.iter().map(|span| field(span, "result")).collect();
        assert_eq!(results, ["requeue", "error", "success"], "{reconciles:?}");
        for span in &reconciles {
            assert_eq!(
                (field(span, "controller"), field(span, "namespace"), field(span, "name")),
                ("propertymapping".into(), "default".into(), "contacts".into())
            );
        }
        assert_eq!(field(&reconciles[1], "otel.status_code"), "error");
        assert!(!field(&reconciles[1], "error").is_empty());
        assert!(!reconciles[0].contains_key("error"));
    }

    #[tokio::test]
    async fn hubspot_calls_of_the_reconcilers_are_counted() {
        let hubspot = fixtures::hubspot(&[("pat-na1-1", &["oauth"])]).await;
        let (ctx, _api) = fixtures::test_context();
        let integration = fixtures::integration(&hubspot.base_url(), &[]);
        ctx.hubspot_client(&integration, "pat-na1-1".into()).introspect_token().await.unwrap();
        let metrics = ctx.metrics.encode();
        assert!(metrics.contains("hubspot_operator_hubspot_requests_total{"), "{metrics}");
        assert!(metrics.contains("hubspot_operator_hubspot_request_duration_seconds_count 1"), "{metrics}");
    }
}
