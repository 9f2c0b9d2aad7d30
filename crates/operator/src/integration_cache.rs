//! What the property and mapping reconcilers read of their integration, once per integration
//! rather than once per object. With 1,000 properties and 1,000 mappings of one integration,
//! reading the integration and its token Secret on every visit cost 4,000–7,000 Kubernetes GETs
//! per drift interval. Here the integrations come from one watch (a reflector store); the token
//! Secret, which is not watched (the operator reads only the Secrets integrations name), and the
//! receivers' sync reports are read at most once per integration and period, and reconciles
//! arriving during a read wait for its answer instead of reading too.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::store::Writer;
use kube::runtime::reflector::{ObjectRef, Store, store};
use kube::runtime::watcher::{self, watcher};
use kube::{Client, ResourceExt};

use super::Error;
use super::kube_api::{api_token, object_key, scoped_api};
use super::receiver_reports::{self, ReceiverReports};
use super::secrets::SecretError;
use model::api::HubSpotIntegration;

/// How long a token read from its Secret serves the property and mapping reconcilers: a
/// rotated token is in use within this long (the integration reconciler, which reads its
/// Secrets on every visit, passes a rotation on at once).
pub const TOKEN_REFRESH: Duration = Duration::from_secs(60);

/// How long the receivers' reports of an integration serve its mappings' reconciles.
pub const REPORTS_REFRESH: Duration = Duration::from_secs(15);

/// The integrations of the watched namespaces, and what is read once per integration.
pub struct IntegrationCache {
    store: Store<HubSpotIntegration>,
    writer: Mutex<Writer<HubSpotIntegration>>,
    reads: Mutex<HashMap<String, Arc<IntegrationReads>>>,
}

/// What was read for one integration object, at one generation of its spec: a changed spec may
/// name another Secret or another receiver.
struct IntegrationReads {
    version: (Option<String>, Option<i64>),
    token: ReadOnce<Result<String, SecretError>>,
    reports: ReadOnce<ReceiverReports>,
}

impl Default for IntegrationCache {
    fn default() -> Self {
        let (store, writer) = store();
        IntegrationCache { store, writer: Mutex::new(writer), reads: Mutex::default() }
    }
}

impl IntegrationCache {
    /// Keeps the cache current from a watch of the integrations in `namespace` (all namespaces
    /// when unset) until the watch ends; the controllers run it beside their reconcilers.
    pub fn watch(&self, client: Client, namespace: Option<&str>) -> impl Future<Output = ()> + Send + use<'_> {
        let events =
            watcher(scoped_api::<HubSpotIntegration>(client, namespace), watcher::Config::default()).default_backoff();
        events.for_each(move |event| {
            match event {
                Ok(event) => self.apply(&event),
                Err(e) => tracing::warn!(error = %e, "watching HubSpotIntegrations"),
            }
            std::future::ready(())
        })
    }

    /// Applies one event of a watch of the integrations.
    pub fn apply(&self, event: &watcher::Event<HubSpotIntegration>) {
        self.writer.lock().expect("integration writer lock").apply_watcher_event(event);
        if let watcher::Event::Delete(integration) = event {
            self.reads.lock().expect("integration reads lock").remove(&object_key(integration));
        }
    }

    /// The integration `name` of `namespace`, once the first listing is in; `None` when there
    /// is no such integration.
    pub async fn get(&self, namespace: &str, name: &str) -> Result<Option<Arc<HubSpotIntegration>>, Error> {
        self.store.wait_until_ready().await.map_err(|_| Error::CacheUnavailable("HubSpotIntegration"))?;
        Ok(self.store.get(&ObjectRef::new(name).within(namespace)))
    }

    /// The token the property and mapping reconcilers call HubSpot with for `integration`
    /// (`api_token`), read at most once per [`TOKEN_REFRESH`].
    pub async fn token(
        &self,
        client: &Client,
        integration: &HubSpotIntegration,
    ) -> Result<Result<String, SecretError>, Error> {
        self.reads_of(integration).token.get(TOKEN_REFRESH, || api_token(client, integration)).await
    }

    /// Records a token the integration reconciler has just read, so that a rotation reaches
    /// the other reconcilers without waiting for [`TOKEN_REFRESH`].
    pub async fn token_read(&self, integration: &HubSpotIntegration, token: Result<String, SecretError>) {
        self.reads_of(integration).token.set(token).await;
    }

    /// What `integration`'s receivers report ([`receiver_reports::read`]), read at most once
    /// per [`REPORTS_REFRESH`].
    pub async fn receiver_reports(
        &self,
        client: &Client,
        http: &reqwest::Client,
        integration: &HubSpotIntegration,
    ) -> Result<ReceiverReports, Error> {
        let read = || async { Ok(receiver_reports::read(client, http, integration).await?) };
        self.reads_of(integration).reports.get(REPORTS_REFRESH, read).await
    }

    /// The reads of `integration` at its current uid and generation.
    fn reads_of(&self, integration: &HubSpotIntegration) -> Arc<IntegrationReads> {
        let version = (integration.uid(), integration.metadata.generation);
        let mut reads = self.reads.lock().expect("integration reads lock");
        let entry = reads.entry(object_key(integration)).or_insert_with(|| IntegrationReads::new(version.clone()));
        if entry.version != version {
            *entry = IntegrationReads::new(version);
        }
        entry.clone()
    }
}

impl IntegrationReads {
    fn new(version: (Option<String>, Option<i64>)) -> Arc<IntegrationReads> {
        Arc::new(IntegrationReads { version, token: ReadOnce::default(), reports: ReadOnce::default() })
    }
}

/// A value read at most once per period. The lock is held across the read, so that callers
/// arriving meanwhile wait for its answer; a failed read is not kept.
struct ReadOnce<T> {
    last: tokio::sync::Mutex<Option<(Instant, T)>>,
}

impl<T> Default for ReadOnce<T> {
    fn default() -> Self {
        ReadOnce { last: tokio::sync::Mutex::new(None) }
    }
}

impl<T: Clone> ReadOnce<T> {
    /// The value read within `fresh_for`, else what `read` reads now.
    async fn get<F, Fut>(&self, fresh_for: Duration, read: F) -> Result<T, Error>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let mut last = self.last.lock().await;
        if let Some((at, value)) = last.as_ref()
            && at.elapsed() < fresh_for
        {
            return Ok(value.clone());
        }
        let value = read().await?;
        *last = Some((Instant::now(), value.clone()));
        Ok(value)
    }

    /// Replaces the value with one read just now.
    async fn set(&self, value: T) {
        *self.last.lock().await = Some((Instant::now(), value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_value_is_read_once_per_period_and_a_failed_read_is_not_kept() {
        let once = ReadOnce::<u32>::default();
        let reads = std::sync::atomic::AtomicU32::new(0);
        let read = || async { Ok::<_, Error>(reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1) };
        assert_eq!(once.get(Duration::from_secs(60), read).await.unwrap(), 1);
        assert_eq!(once.get(Duration::from_secs(60), read).await.unwrap(), 1, "fresh: not read again");
        assert_eq!(once.get(Duration::ZERO, read).await.unwrap(), 2, "stale: read again");
        once.set(7).await;
        assert_eq!(once.get(Duration::from_secs(60), read).await.unwrap(), 7, "a value set is fresh");

        let failing = ReadOnce::<u32>::default();
        let failed = failing.get(Duration::from_secs(60), || async { Err(Error::CacheUnavailable("test")) }).await;
        assert!(failed.is_err());
        assert_eq!(failing.get(Duration::from_secs(60), read).await.unwrap(), 3, "the failure was not kept");
    }

    #[tokio::test]
    async fn callers_arriving_during_a_read_share_it() {
        let once = Arc::new(ReadOnce::<u32>::default());
        let reads = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let callers = (0..10).map(|_| {
            let (once, reads) = (once.clone(), reads.clone());
            tokio::spawn(async move {
                once.get(Duration::from_secs(60), || async {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    Ok(reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst))
                })
                .await
                .unwrap()
            })
        });
        for caller in futures::future::join_all(callers).await {
            assert_eq!(caller.unwrap(), 0);
        }
        assert_eq!(reads.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn an_integration_is_found_once_listed_and_its_reads_follow_its_generation() {
        let cache = IntegrationCache::default();
        let integration = |generation: i64| {
            let mut integration = crate::fixtures::integration("http://127.0.0.1:9", &[]);
            integration.metadata.namespace = Some("default".into());
            integration.metadata.uid = Some("uid-1".into());
            integration.metadata.generation = Some(generation);
            integration
        };
        cache.apply(&watcher::Event::Init);
        cache.apply(&watcher::Event::InitApply(integration(1)));
        cache.apply(&watcher::Event::InitDone);
        assert_eq!(cache.get("default", "crm").await.unwrap().unwrap().metadata.generation, Some(1));
        assert!(cache.get("default", "other").await.unwrap().is_none());

        cache.token_read(&integration(1), Ok("first".into())).await;
        let client = Client::new(
            tower_test::mock::pair::<http::Request<kube::client::Body>, http::Response<kube::client::Body>>().0,
            "default",
        );
        assert_eq!(cache.token(&client, &integration(1)).await.unwrap(), Ok("first".into()));
        // A new generation may name another Secret: what was read for the old one is gone.
        assert!(Arc::ptr_eq(&cache.reads_of(&integration(1)), &cache.reads_of(&integration(1))));
        let old = cache.reads_of(&integration(1));
        assert!(!Arc::ptr_eq(&old, &cache.reads_of(&integration(2))));

        cache.apply(&watcher::Event::Delete(integration(2)));
        assert!(cache.get("default", "crm").await.unwrap().is_none());
    }
}
