//! The HubSpot API client, in two layers. `transport` makes every request: it spends the
//! integration's request budget, retries what HubSpot says may be retried (as the client's
//! `retry` policy says), keeps HubSpot's error details and tells the observer. Each other
//! module holds the calls of one HubSpot API family and builds them on the transport, which
//! knows of no particular API.

mod associations;
mod batch;
mod custom_events;
mod oauth;
mod objects;
mod paging;
mod properties;
mod retry;
mod search;
mod timeline;
mod transport;
mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use crate::auth::{Clock, Credentials, IssuedToken, OAuthCredentials, Secret, SystemClock, TokenFile, TokenSource};
use crate::budget::{RequestBudget, Tier};
use crate::error::Result;
use crate::observer::CallObserver;

// Only modules that build on nothing here are re-exported: the API families build on the client.
pub use batch::{BATCH_LIMIT, BATCH_WITH_HISTORY_LIMIT, IsolatedBatch, isolate_bad_inputs};
pub use paging::{SEARCH_PAGE_LIMIT, SEARCH_RESULTS_CAP};
pub use retry::RetryPolicy;

/// HubSpot's search endpoints have their own limit per account, beside the burst limit.
const SEARCHES_PER_SECOND: u32 = 5;

/// How to reach HubSpot with a static token (private app or service key). OAuth apps use
/// `HubSpotClient::new_oauth`.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientSettings {
    pub base_url: String,
    /// `v3` or a date version such as `2026-03`.
    pub api_version: String,
    pub access_token: String,
    pub tier: Tier,
}

impl std::fmt::Debug for ClientSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientSettings")
            .field("base_url", &self.base_url)
            .field("api_version", &self.api_version)
            .field("tier", &self.tier)
            .finish_non_exhaustive()
    }
}

/// A HubSpot API client for one integration. Cheap to clone; clones share the budget.
#[derive(Clone)]
pub struct HubSpotClient {
    http: reqwest::Client,
    base_url: Arc<str>,
    api_version: Arc<str>,
    credentials: Arc<Credentials>,
    budget: Arc<RequestBudget>,
    /// Search calls spend this instead of `budget`: HubSpot limits them separately, per second,
    /// and their answers carry no rate-limit headers.
    search_budget: Arc<RequestBudget>,
    retry: RetryPolicy,
    observer: Option<Arc<dyn CallObserver>>,
}

impl HubSpotClient {
    /// A client authenticating with the static token of `settings`.
    pub fn new(settings: ClientSettings) -> Self {
        let credentials = Credentials::Static(Secret::new(settings.access_token));
        Self::with_credentials(settings.base_url, settings.api_version, settings.tier, credentials)
    }

    /// A client of an OAuth app's installation: it gets access tokens with the refresh token
    /// and renews them ahead of their expiry.
    pub fn new_oauth(
        base_url: impl Into<String>,
        api_version: impl Into<String>,
        tier: Tier,
        credentials: OAuthCredentials,
    ) -> Self {
        let source = TokenSource::new(credentials, Arc::new(SystemClock));
        Self::with_credentials(base_url.into(), api_version.into(), tier, Credentials::OAuth(source))
    }

    /// A client that sends the OAuth access token found in the file at `path`, which something
    /// else keeps fresh (the receiver reads the operator's managed Secret this way). The file is
    /// read for every request, so a replaced token is used from the next request on.
    pub fn new_with_token_file(
        base_url: impl Into<String>,
        api_version: impl Into<String>,
        tier: Tier,
        path: impl Into<std::path::PathBuf>,
    ) -> Self {
        let file = TokenFile::new(path.into());
        Self::with_credentials(base_url.into(), api_version.into(), tier, Credentials::File(file))
    }

    fn with_credentials(base_url: String, api_version: String, tier: Tier, credentials: Credentials) -> Self {
        let budget = Arc::new(RequestBudget::for_tier(tier));
        let retry = RetryPolicy::default();
        let http = reqwest::Client::builder()
            .user_agent(concat!("hubspot-operator/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .timeout(retry.request_timeout)
            .build()
            .expect("the TLS backend initialises");
        Self {
            http,
            base_url: base_url.into(),
            api_version: api_version.into(),
            credentials: Arc::new(credentials),
            budget,
            search_budget: Arc::new(RequestBudget::new(SEARCHES_PER_SECOND, Duration::from_secs(1))),
            retry,
            observer: None,
        }
    }

    /// Reads the time for access token expiry from `clock` (tests use a `ManualClock`). Call it
    /// before the first request: the cached access token is dropped.
    pub async fn with_token_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        if let Credentials::OAuth(source) = self.credentials.as_ref() {
            let credentials = source.credentials().await;
            self.credentials = Arc::new(Credentials::OAuth(TokenSource::new(credentials, clock)));
        }
        self
    }

    /// An OAuth client uses `token`, issued earlier, until `valid_for` has passed instead of
    /// asking for a new one first. Other clients are unchanged.
    pub async fn with_access_token(self, token: Secret, valid_for: Duration) -> Self {
        if let Credentials::OAuth(source) = self.credentials.as_ref() {
            source.adopt(token, valid_for).await;
        }
        self
    }

    /// A new access token from an OAuth client's token endpoint, which the client uses from now
    /// on. `None` for a client of another kind, which has no token endpoint.
    pub async fn renew_access_token(&self) -> Option<Result<IssuedToken>> {
        match self.credentials.as_ref() {
            Credentials::OAuth(source) => Some(source.renew(self).await),
            Credentials::Static(_) | Credentials::File(_) => None,
        }
    }

    /// Shares `budget` with other clients of the same integration.
    pub fn with_budget(mut self, budget: Arc<RequestBudget>) -> Self {
        self.budget = budget;
        self
    }

    /// Shares the search budget with other clients of the same account.
    pub fn with_search_budget(mut self, budget: Arc<RequestBudget>) -> Self {
        self.search_budget = budget;
        self
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// This client making each call once on a 5xx or a transport error, for calls whose repetition
    /// is not safe (custom events, which HubSpot does not deduplicate); a 429 is still waited out
    /// and retried, as HubSpot took nothing.
    pub fn single_attempt(&self) -> Self {
        let mut client = self.clone();
        client.retry.max_attempts = 1;
        client
    }

    /// Tells `observer` of every call: its operation and outcome, request times, batch sizes.
    pub fn with_observer(mut self, observer: Arc<dyn CallObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    pub fn budget(&self) -> &Arc<RequestBudget> {
        &self.budget
    }

    pub fn search_budget(&self) -> &Arc<RequestBudget> {
        &self.search_budget
    }
}
