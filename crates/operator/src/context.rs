//! State the reconcilers share: the Kubernetes client, HubSpot clients and budgets per
//! integration, property catalogues, and the per-object error backoff.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hubspot::client::RetryPolicy;
use hubspot::{ClientSettings, HubSpotClient, RequestBudget};
use kube::runtime::controller::{Action, Config as ControllerConfig};
use kube::{Client, Resource};
use model::api::HubSpotIntegration;

use crate::catalogue::{Freshness, PropertyCatalogue};
use crate::integration::{BuildSettings, ChildCaches};
use crate::integration_cache::IntegrationCache;
use crate::kube_api::object_key;
use crate::metrics::{ControllerLabels, ControllerMetrics, controller_name};
use crate::{DEFAULT_MAX_CONCURRENT_RECONCILES, Error, HEALTHY_REQUEUE, SYNC_REFRESH, UNHEALTHY_REQUEUE, property};

/// First and longest wait after a failed reconcile (Kubernetes API errors); doubles in between.
const ERROR_BACKOFF_INITIAL: Duration = Duration::from_secs(5);
const ERROR_BACKOFF_MAX: Duration = Duration::from_secs(5 * 60);

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
    /// The integration controller's caches of its children and of the mappings, filled by the
    /// watches of [`crate::integration::controller`].
    pub children: ChildCaches,
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
            children: ChildCaches::default(),
        }
    }

    /// The operator's settings the integration build uses.
    pub fn build_settings(&self) -> BuildSettings {
        BuildSettings { image: self.receiver_image.clone(), trace_env: self.receiver_trace_env.clone() }
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
    pub(crate) fn succeeded<K: Resource<DynamicType = ()>>(&self, object: &K) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

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
}
