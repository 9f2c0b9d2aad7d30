//! The HubSpot API client: every call goes through `send`, which spends the integration's
//! request budget, retries what HubSpot says may be retried, and keeps HubSpot's error details.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, TryStreamExt, stream};
use rand::Rng;
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::Instrument;

use super::auth::{
    Clock, Credentials, IssuedToken, OAuthCredentials, Secret, SystemClock, TokenFile, TokenResponse, TokenSource,
};
use super::budget::{RequestBudget, Tier};
use super::error::{ApiError, CORRELATION_ID_HEADER, Error, Result};
use super::models::*;
use crate::observer::CallObserver;

/// HubSpot accepts at most this many inputs per batch call.
pub const BATCH_LIMIT: usize = 100;
/// Largest page of a search.
pub const SEARCH_PAGE_LIMIT: u32 = 200;
/// HubSpot pages through at most this many results of one search.
pub const SEARCH_RESULTS_CAP: u64 = 10_000;
/// HubSpot's search endpoints have their own limit per account, beside the burst limit.
const SEARCHES_PER_SECOND: u32 = 5;

/// HubSpot accepts at most this many inputs per batch read with `propertiesWithHistory`.
pub const BATCH_WITH_HISTORY_LIMIT: usize = 50;

/// What a batch call made of each input once the inputs HubSpot refuses were isolated.
#[derive(Debug)]
pub struct IsolatedBatch<T> {
    /// Results of the calls HubSpot accepted (in HubSpot's order, which need not be the inputs').
    pub results: Vec<T>,
    /// Positions of the inputs HubSpot accepted.
    pub accepted: Vec<usize>,
    /// Inputs HubSpot refused on their own, with its answer.
    pub rejected: Vec<(usize, ApiError)>,
    /// Why the inputs in neither list were not settled: a retryable failure that outlasted the
    /// retries, or a refusal that is not about the inputs (authentication, scopes, daily limit).
    pub failure: Option<Error>,
}

/// Whether HubSpot refused a batch for what some input holds (a validation error, a conflict,
/// a missing record), so that splitting the batch can tell the bad inputs from the good ones.
fn refuses_inputs(error: &Error) -> bool {
    matches!(error, Error::Api(e) if matches!(e.status, 400 | 404 | 409 | 422) && e.category != "MISSING_SCOPES")
}

/// Runs a batch call over `inputs` in chunks of at most `BATCH_LIMIT`. When HubSpot refuses a
/// whole chunk for its inputs' content (400, 404, 409, 422: without `objectWriteTraceId` one bad
/// input fails the whole batch), the chunk is split in halves and each half is tried again,
/// until every refused input stands alone and is reported with HubSpot's answer; the rest are
/// written. Any other failure stops the run: the inputs not yet settled are left to the caller
/// to retry. Every call goes through `call`, so through the client's budget and retries.
pub async fn isolate_bad_inputs<'a, I, T, F, Fut>(inputs: &'a [I], mut call: F) -> IsolatedBatch<T>
where
    F: FnMut(&'a [I]) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<T>>>,
{
    let mut batch = IsolatedBatch { results: Vec::new(), accepted: Vec::new(), rejected: Vec::new(), failure: None };
    // Ranges still to send, the next one last.
    let mut todo: Vec<std::ops::Range<usize>> = (0..inputs.len())
        .step_by(BATCH_LIMIT)
        .map(|start| start..(start + BATCH_LIMIT).min(inputs.len()))
        .rev()
        .collect();
    while let Some(range) = todo.pop() {
        match call(&inputs[range.clone()]).await {
            Ok(results) => {
                batch.results.extend(results);
                batch.accepted.extend(range);
            }
            Err(error) if refuses_inputs(&error) => {
                if range.len() == 1 {
                    let Error::Api(api) = error else { unreachable!("refuses_inputs matches API errors only") };
                    batch.rejected.push((range.start, api));
                } else {
                    let middle = range.start + range.len() / 2;
                    todo.push(middle..range.end);
                    todo.push(range.start..middle);
                }
            }
            Err(error) => {
                batch.failure = Some(error);
                break;
            }
        }
    }
    batch
}

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

/// What a request body is.
enum Payload {
    Empty,
    Json(Vec<u8>),
    /// `application/x-www-form-urlencoded` (the OAuth token endpoints).
    Form(Vec<(&'static str, String)>),
}

/// How often and how patiently a call is retried.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Attempts for 5xx, 423 and transport errors (429s wait on the budget and do not count).
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Upper bound on 429 answers waited out for one call.
    pub max_rate_limited: u32,
    /// Timeout of one HTTP request.
    pub request_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 6,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(20),
            max_rate_limited: 30,
            request_timeout: Duration::from_secs(30),
        }
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

    /// Who this client's token belongs to and its scopes: `POST
    /// /oauth/v2/private-apps/get/access-token-info` for a static token, `GET
    /// /oauth/v1/access-tokens/{token}` for an OAuth access token.
    pub async fn introspect_token(&self) -> Result<TokenInfo> {
        match self.credentials.as_ref() {
            Credentials::Static(token) => {
                let body = serde_json::json!({ "tokenKey": token.expose() });
                self.send(
                    "introspect_token",
                    Method::POST,
                    "/oauth/v2/private-apps/get/access-token-info".into(),
                    &[],
                    Some(&body),
                )
                .await
            }
            Credentials::OAuth(_) | Credentials::File(_) => {
                #[derive(serde::Deserialize)]
                struct AccessTokenInfo {
                    user_id: u64,
                    hub_id: u64,
                    app_id: u64,
                    scopes: Vec<String>,
                }
                let token = match self.credentials.as_ref() {
                    Credentials::OAuth(source) => source.access_token(self).await?,
                    Credentials::File(file) => file.read()?,
                    Credentials::Static(_) => unreachable!("matched above"),
                };
                let info: AccessTokenInfo = self
                    .perform(
                        "introspect_token",
                        Method::GET,
                        &format!("{ACCESS_TOKEN_INFO_PATH}{}", token.expose()),
                        &[],
                        &Payload::Empty,
                        None,
                    )
                    .await?;
                Ok(TokenInfo { user_id: info.user_id, hub_id: info.hub_id, app_id: info.app_id, scopes: info.scopes })
            }
        }
    }

    /// One token request (`POST /oauth/v{1,3}/token`), through the same budget and retries as
    /// every call, without a bearer token.
    pub(crate) async fn request_token(&self, path: &str, form: Vec<(&'static str, String)>) -> Result<TokenResponse> {
        self.perform("oauth_token", Method::POST, path, &[], &Payload::Form(form), None).await
    }

    /// One page of `GET /crm/v3/objects/{t}` with only `properties`.
    pub async fn list_objects_page(
        &self,
        object_type: &str,
        properties: &[String],
        after: Option<&str>,
        limit: u32,
    ) -> Result<ObjectPage> {
        let mut query = vec![("limit", limit.clamp(1, 100).to_string()), ("archived", "false".to_string())];
        if !properties.is_empty() {
            query.push(("properties", properties.join(",")));
        }
        if let Some(after) = after {
            query.push(("after", after.to_string()));
        }
        self.send::<(), _>("list_objects", Method::GET, self.objects_path(object_type, ""), &query, None).await
    }

    /// Every object of a type, page by page (`paging.next.after`) as the stream is consumed.
    pub fn objects<'a>(
        &'a self,
        object_type: &'a str,
        properties: &'a [String],
    ) -> impl Stream<Item = Result<CrmObject>> + Send + 'a {
        pages(move |after| async move {
            let page = self.list_objects_page(object_type, properties, after.as_deref(), 100).await?;
            let next = page.next_after().map(str::to_string);
            Ok((page.results, next))
        })
    }

    /// Every object of a type, collected.
    pub async fn list_all_objects(&self, object_type: &str, properties: &[String]) -> Result<Vec<CrmObject>> {
        self.objects(object_type, properties).try_collect().await
    }

    /// One page of `POST /crm/v3/objects/{t}/search`, on the search budget.
    pub async fn search(&self, object_type: &str, request: &SearchRequest) -> Result<SearchPage> {
        self.send("search", Method::POST, self.objects_path(object_type, "/search"), &[], Some(request)).await
    }

    /// Every match of `request`, page by page (200 at a time). Fails with
    /// `Error::SearchCapped` before the first result when the search matches more than HubSpot
    /// pages through, so a caller never takes a truncated result for the whole.
    pub fn search_all<'a>(
        &'a self,
        object_type: &'a str,
        request: SearchRequest,
    ) -> impl Stream<Item = Result<CrmObject>> + Send + 'a {
        pages(move |after| {
            let mut request = request.clone();
            async move {
                request.limit = Some(request.limit.unwrap_or(SEARCH_PAGE_LIMIT).min(SEARCH_PAGE_LIMIT));
                let first = after.is_none();
                request.after = after;
                let page = self.search(object_type, &request).await?;
                if first && page.total > SEARCH_RESULTS_CAP {
                    return Err(Error::SearchCapped { total: page.total });
                }
                let next = page.next_after().map(str::to_string);
                Ok((page.results, next))
            }
        })
    }

    /// `POST /crm/v3/objects/{t}/batch/read` in chunks of 100; ids HubSpot does not know are absent.
    pub async fn batch_read(&self, object_type: &str, properties: &[String], ids: &[String]) -> Result<Vec<CrmObject>> {
        let mut found = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(BATCH_LIMIT) {
            if let Some(observer) = &self.observer {
                observer.batch_read(chunk.len());
            }
            let body = serde_json::json!({
                "properties": properties,
                "propertiesWithHistory": [],
                "inputs": chunk.iter().map(|id| serde_json::json!({ "id": id })).collect::<Vec<_>>(),
            });
            let page: BatchResponse<CrmObject> = self
                .send("batch_read", Method::POST, self.objects_path(object_type, "/batch/read"), &[], Some(&body))
                .await?;
            found.extend(page.results);
        }
        Ok(found)
    }

    /// `POST /crm/v4/associations/{from}/{to}/batch/read` in chunks of 100: per object of `ids`
    /// that has any, the ids of the `to_type` records it is associated with, ascending. HubSpot
    /// answers objects without associations as errors of the batch; they are absent here. An
    /// object with more associations than one answer holds is read on from its cursor.
    pub async fn batch_read_associations(
        &self,
        from_type: &str,
        to_type: &str,
        ids: &[String],
    ) -> Result<BTreeMap<String, Vec<String>>> {
        let path = format!("/crm/v4/associations/{from_type}/{to_type}/batch/read");
        let mut associated: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
        let mut inputs: Vec<serde_json::Value> = ids.iter().map(|id| serde_json::json!({ "id": id })).collect();
        while !inputs.is_empty() {
            let mut read_on = Vec::new();
            for chunk in inputs.chunks(BATCH_LIMIT) {
                let body = serde_json::json!({ "inputs": chunk });
                let page: BatchResponse<AssociationsOf> =
                    self.send("batch_read_associations", Method::POST, path.clone(), &[], Some(&body)).await?;
                for result in page.results {
                    if let Some(next) = result.paging.as_ref().and_then(|p| p.next.as_ref()) {
                        read_on.push(serde_json::json!({ "id": result.from.id, "after": next.after }));
                    }
                    associated.entry(result.from.id).or_default().extend(result.to.iter().map(|to| to.to_object_id));
                }
            }
            inputs = read_on;
        }
        Ok(associated.into_iter().map(|(id, to)| (id, to.iter().map(u64::to_string).collect())).collect())
    }

    /// `POST /crm/v3/objects/{t}/batch/upsert` in chunks of 100.
    pub async fn batch_upsert(&self, object_type: &str, inputs: &[UpsertInput]) -> Result<Vec<UpsertResult>> {
        let mut results = Vec::with_capacity(inputs.len());
        for chunk in inputs.chunks(BATCH_LIMIT) {
            let body = serde_json::json!({ "inputs": chunk });
            let page: BatchResponse<UpsertResult> = self
                .send("batch_upsert", Method::POST, self.objects_path(object_type, "/batch/upsert"), &[], Some(&body))
                .await?;
            results.extend(page.results);
        }
        Ok(results)
    }

    /// Batch upsert that isolates the inputs HubSpot refuses (see `isolate_bad_inputs`).
    pub async fn batch_upsert_isolated(
        &self,
        object_type: &str,
        inputs: &[UpsertInput],
    ) -> IsolatedBatch<UpsertResult> {
        isolate_bad_inputs(inputs, |chunk| self.batch_upsert(object_type, chunk)).await
    }

    /// `POST /integrators/timeline/v3/events/batch/create` in chunks of 100. HubSpot creates
    /// each event on its own: the answer lists what it created and, with HTTP 207, what it refused.
    pub async fn create_timeline_events(
        &self,
        events: &[TimelineEventInput],
    ) -> Result<Vec<BatchResponse<TimelineEventResult>>> {
        self.create_in_batches("create_timeline_events", "/integrators/timeline/v3/events/batch/create".into(), events)
            .await
    }

    /// App events (`/integrators/timeline/v4/events/batch/create`, or the date-versioned path
    /// when one is configured) in chunks of 100, each created on its own as with timeline events.
    pub async fn send_app_events(&self, events: &[AppEventInput]) -> Result<Vec<BatchResponse<AppEventResult>>> {
        let version = if &*self.api_version == "v3" { "v4" } else { &*self.api_version };
        let path = format!("/integrators/timeline/{version}/events/batch/create");
        self.create_in_batches("send_app_events", path, events).await
    }

    async fn create_in_batches<I: Serialize, T: DeserializeOwned>(
        &self,
        operation: &'static str,
        path: String,
        inputs: &[I],
    ) -> Result<Vec<BatchResponse<T>>> {
        let mut answers = Vec::with_capacity(inputs.len().div_ceil(BATCH_LIMIT));
        for chunk in inputs.chunks(BATCH_LIMIT) {
            let body = serde_json::json!({ "inputs": chunk });
            answers.push(self.send(operation, Method::POST, path.clone(), &[], Some(&body)).await?);
        }
        Ok(answers)
    }

    /// `POST /crm/v3/objects/{t}/batch/read` by `id_property` with the history of
    /// `properties`, in chunks of 50; values HubSpot holds no record for are absent. The
    /// results carry `id_property` too, so that each names the id it was read by.
    pub async fn batch_read_with_history(
        &self,
        object_type: &str,
        properties: &[String],
        id_property: &str,
        ids: &[String],
    ) -> Result<Vec<ObjectWithHistory>> {
        let mut found = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(BATCH_WITH_HISTORY_LIMIT) {
            let mut shown = properties.to_vec();
            shown.push(id_property.to_string());
            let body = serde_json::json!({
                "properties": shown,
                "propertiesWithHistory": properties,
                "idProperty": id_property,
                "inputs": chunk.iter().map(|id| serde_json::json!({ "id": id })).collect::<Vec<_>>(),
            });
            let page: BatchResponse<ObjectWithHistory> = self
                .send("batch_read", Method::POST, self.objects_path(object_type, "/batch/read"), &[], Some(&body))
                .await?;
            found.extend(page.results);
        }
        Ok(found)
    }

    /// `GET /crm/v3/properties/{t}`.
    pub async fn list_properties(&self, object_type: &str) -> Result<Vec<Property>> {
        #[derive(serde::Deserialize)]
        struct Properties {
            results: Vec<Property>,
        }
        let list: Properties =
            self.send::<(), _>("list_properties", Method::GET, self.properties_path(object_type), &[], None).await?;
        Ok(list.results)
    }

    /// `GET /crm/v3/properties/{t}`, keeping only the names: the listing of a type with many
    /// properties is large, and a presence check needs nothing else.
    pub async fn list_property_names(&self, object_type: &str) -> Result<Vec<String>> {
        #[derive(serde::Deserialize)]
        struct Named {
            name: String,
        }
        #[derive(serde::Deserialize)]
        struct Properties {
            results: Vec<Named>,
        }
        let list: Properties =
            self.send::<(), _>("list_properties", Method::GET, self.properties_path(object_type), &[], None).await?;
        Ok(list.results.into_iter().map(|p| p.name).collect())
    }

    /// `POST /crm/v3/properties/{t}`.
    pub async fn create_property(&self, object_type: &str, property: &PropertyCreate) -> Result<Property> {
        self.send("create_property", Method::POST, self.properties_path(object_type), &[], Some(property)).await
    }

    /// `GET /crm/v3/properties/{t}/{name}`; `None` when HubSpot has no live property of that name.
    pub async fn get_property(&self, object_type: &str, name: &str) -> Result<Option<Property>> {
        let path = format!("{}/{name}", self.properties_path(object_type));
        match self.send::<(), Property>("get_property", Method::GET, path, &[], None).await {
            Ok(property) => Ok(Some(property)),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `PATCH /crm/v3/properties/{t}/{name}`: changes only the fields `update` sets; its
    /// `options` replace the whole list.
    pub async fn update_property(&self, object_type: &str, name: &str, update: &PropertyUpdate) -> Result<Property> {
        let path = format!("{}/{name}", self.properties_path(object_type));
        self.send("update_property", Method::PATCH, path, &[], Some(update)).await
    }

    /// `DELETE /crm/v3/properties/{t}/{name}` (HubSpot archives the property).
    pub async fn archive_property(&self, object_type: &str, name: &str) -> Result<()> {
        let path = format!("{}/{name}", self.properties_path(object_type));
        self.send::<(), ()>("archive_property", Method::DELETE, path, &[], None).await
    }

    /// `GET /crm/v3/properties/{t}/groups`.
    pub async fn list_property_groups(&self, object_type: &str) -> Result<Vec<PropertyGroup>> {
        #[derive(serde::Deserialize)]
        struct Groups {
            results: Vec<PropertyGroup>,
        }
        let path = format!("{}/groups", self.properties_path(object_type));
        let list: Groups = self.send::<(), _>("list_property_groups", Method::GET, path, &[], None).await?;
        Ok(list.results)
    }

    /// `POST /crm/v3/properties/{t}/groups`.
    pub async fn create_property_group(&self, object_type: &str, group: &PropertyGroup) -> Result<PropertyGroup> {
        let path = format!("{}/groups", self.properties_path(object_type));
        self.send("create_property_group", Method::POST, path, &[], Some(group)).await
    }

    /// `GET /webhooks/v3/{appId}/settings` with the developer API key; `None` when the app has
    /// no webhook settings yet.
    pub async fn get_webhook_settings(&self, app_id: u64, api_key: &Secret) -> Result<Option<AppWebhookSettings>> {
        let path = format!("/webhooks/v3/{app_id}/settings");
        match self.developer_call::<(), _>("get_webhook_settings", Method::GET, &path, api_key, None).await {
            Ok(settings) => Ok(Some(settings)),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `PUT /webhooks/v3/{appId}/settings` with the developer API key.
    pub async fn put_webhook_settings(
        &self,
        app_id: u64,
        api_key: &Secret,
        settings: &AppWebhookSettings,
    ) -> Result<AppWebhookSettings> {
        let path = format!("/webhooks/v3/{app_id}/settings");
        self.developer_call("put_webhook_settings", Method::PUT, &path, api_key, Some(settings)).await
    }

    /// `GET /webhooks/v3/{appId}/subscriptions` with the developer API key.
    pub async fn list_webhook_subscriptions(
        &self,
        app_id: u64,
        api_key: &Secret,
    ) -> Result<Vec<AppWebhookSubscription>> {
        #[derive(serde::Deserialize)]
        struct List {
            results: Vec<AppWebhookSubscription>,
        }
        let path = format!("/webhooks/v3/{app_id}/subscriptions");
        let list: List =
            self.developer_call::<(), _>("list_webhook_subscriptions", Method::GET, &path, api_key, None).await?;
        Ok(list.results)
    }

    /// `POST /webhooks/v3/{appId}/subscriptions` with the developer API key.
    pub async fn create_webhook_subscription(
        &self,
        app_id: u64,
        api_key: &Secret,
        event_type: &str,
        property_name: Option<&str>,
        active: bool,
    ) -> Result<AppWebhookSubscription> {
        let mut body = serde_json::json!({ "eventType": event_type, "active": active });
        if let Some(property) = property_name {
            body["propertyName"] = serde_json::json!(property);
        }
        let path = format!("/webhooks/v3/{app_id}/subscriptions");
        self.developer_call("create_webhook_subscription", Method::POST, &path, api_key, Some(&body)).await
    }

    /// `POST /webhooks/v3/{appId}/subscriptions/batch/update` with the developer API key:
    /// sets `active` of each `(id, active)`. A partial failure (207) is an error naming the
    /// ids HubSpot did not update.
    pub async fn update_webhook_subscriptions(
        &self,
        app_id: u64,
        api_key: &Secret,
        changes: &[(String, bool)],
    ) -> Result<()> {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Answer {
            #[serde(default)]
            errors: Vec<serde_json::Value>,
        }
        let inputs: Vec<serde_json::Value> = changes
            .iter()
            .map(|(id, active)| {
                // HubSpot documents the id as a number; a non-numeric id is sent as it is.
                let id = id.parse::<u64>().map_or_else(|_| serde_json::json!(id), |n| serde_json::json!(n));
                serde_json::json!({ "id": id, "active": active })
            })
            .collect();
        let path = format!("/webhooks/v3/{app_id}/subscriptions/batch/update");
        let body = serde_json::json!({ "inputs": inputs });
        let answer: Answer =
            self.developer_call("update_webhook_subscriptions", Method::POST, &path, api_key, Some(&body)).await?;
        match answer.errors.first() {
            None => Ok(()),
            Some(error) => Err(Error::Api(ApiError::from_body(207, error.to_string().as_bytes()))),
        }
    }

    /// `DELETE /webhooks/v3/{appId}/subscriptions/{id}` with the developer API key. A
    /// subscription already gone is not an error.
    pub async fn delete_webhook_subscription(&self, app_id: u64, api_key: &Secret, id: &str) -> Result<()> {
        let path = format!("/webhooks/v3/{app_id}/subscriptions/{id}");
        match self.developer_call::<(), ()>("delete_webhook_subscription", Method::DELETE, &path, api_key, None).await {
            Err(e) if e.status() == Some(404) => Ok(()),
            other => other,
        }
    }

    /// A call of the app management API: authenticated with the developer API key in the
    /// `hapikey` query parameter instead of the integration's token. Only the path is logged.
    async fn developer_call<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        operation: &'static str,
        method: Method,
        path: &str,
        api_key: &Secret,
        body: Option<&B>,
    ) -> Result<T> {
        let payload = match body {
            Some(body) => {
                Payload::Json(serde_json::to_vec(body).map_err(|e| Error::Decode(format!("{operation}: {e}")))?)
            }
            None => Payload::Empty,
        };
        let query = [("hapikey", api_key.expose().to_string())];
        self.perform(operation, method, path, &query, &payload, None).await
    }

    fn objects_path(&self, object_type: &str, suffix: &str) -> String {
        match &*self.api_version {
            "v3" => format!("/crm/v3/objects/{object_type}{suffix}"),
            date => format!("/crm/objects/{date}/{object_type}{suffix}"),
        }
    }

    fn properties_path(&self, object_type: &str) -> String {
        match &*self.api_version {
            "v3" => format!("/crm/v3/properties/{object_type}"),
            date => format!("/crm/properties/{date}/{object_type}"),
        }
    }

    /// An authenticated call with a JSON body. An OAuth client sends a fresh access token and,
    /// should HubSpot still call it expired, renews it and tries once more.
    async fn send<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        operation: &'static str,
        method: Method,
        path: String,
        query: &[(&str, String)],
        body: Option<&B>,
    ) -> Result<T> {
        let payload = match body {
            Some(body) => {
                Payload::Json(serde_json::to_vec(body).map_err(|e| Error::Decode(format!("{operation}: {e}")))?)
            }
            None => Payload::Empty,
        };
        match self.credentials.as_ref() {
            Credentials::Static(token) => self.perform(operation, method, &path, query, &payload, Some(token)).await,
            Credentials::File(file) => {
                self.perform(operation, method, &path, query, &payload, Some(&file.read()?)).await
            }
            Credentials::OAuth(source) => {
                let token = source.access_token(self).await?;
                match self.perform(operation, method.clone(), &path, query, &payload, Some(&token)).await {
                    Err(Error::Api(e)) if e.status == 401 && e.category == "EXPIRED_AUTHENTICATION" => {
                        tracing::warn!(correlation_id = %e.correlation_id, "HubSpot called the access token expired; renewing it");
                        let renewed = source.replace_expired(self, &token).await?;
                        self.perform(operation, method, &path, query, &payload, Some(&renewed)).await
                    }
                    other => other,
                }
            }
        }
    }

    /// The one place a request is made: budget, retries, error mapping, metrics.
    async fn perform<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        payload: &Payload,
        bearer: Option<&Secret>,
    ) -> Result<T> {
        let url = format!("{}{}", self.base_url.trim_end_matches('/'), path);
        // The span of the whole call, retries included: the last answer's status and correlation
        // id (what HubSpot support asks for), and how many attempts it took.
        let span = tracing::debug_span!(
            "hubspot.request",
            operation,
            method = %method,
            path = %loggable_path(path),
            status = tracing::field::Empty,
            correlation_id = tracing::field::Empty,
            attempts = tracing::field::Empty,
            "otel.status_code" = tracing::field::Empty,
        );
        let call = async {
            let mut failures = 0u32;
            let mut rate_limited = 0u32;
            let mut attempts = 0u32;
            let budget = if operation == "search" { &self.search_budget } else { &self.budget };
            loop {
                attempts += 1;
                tracing::Span::current().record("attempts", attempts);
                let permit = budget.acquire().await;
                let mut request = self.http.request(method.clone(), &url);
                if let Some(token) = bearer {
                    request = request.bearer_auth(token.expose());
                }
                if !query.is_empty() {
                    request = request.query(query);
                }
                request = match payload {
                    Payload::Empty => request,
                    Payload::Json(bytes) => {
                        request.header(http::header::CONTENT_TYPE, "application/json").body(bytes.clone())
                    }
                    Payload::Form(fields) => request.form(fields),
                };
                let started = std::time::Instant::now();
                let outcome = request.send().await;
                budget.settle(permit);
                if let Some(observer) = &self.observer {
                    observer.request_took(started.elapsed().as_secs_f64());
                }
                let retry_delay = match outcome {
                    Err(e) => {
                        self.count(operation, "transport_error");
                        failures += 1;
                        if failures >= self.retry.max_attempts {
                            return Err(Error::Transport(without_url(e)));
                        }
                        tracing::warn!(attempt = failures, error = %without_url(e), "HubSpot request failed; retrying");
                        self.backoff(failures)
                    }
                    Ok(response) => {
                        if operation != "search" {
                            self.budget.observe(response.headers());
                        }
                        let status = response.status();
                        let span = tracing::Span::current();
                        span.record("status", status.as_u16());
                        if let Some(id) = response.headers().get(CORRELATION_ID_HEADER).and_then(|id| id.to_str().ok())
                        {
                            span.record("correlation_id", id);
                        }
                        let retry_after = retry_after(response.headers());
                        let bytes = response.bytes().await.map_err(|e| Error::Transport(without_url(e)))?;
                        if status.is_success() {
                            self.count(operation, "ok");
                            return serde_json::from_slice(if bytes.is_empty() { b"null" } else { &bytes })
                                .map_err(|e| Error::Decode(format!("{operation}: {e}")));
                        }
                        let error = ApiError::from_body(status.as_u16(), &bytes);
                        if !error.correlation_id.is_empty() {
                            span.record("correlation_id", error.correlation_id.as_str());
                        }
                        self.count(operation, status.as_str());
                        if status == StatusCode::TOO_MANY_REQUESTS {
                            if error.policy_name.as_deref() == Some("DAILY") {
                                return Err(Error::DailyLimitExhausted { correlation_id: error.correlation_id });
                            }
                            rate_limited += 1;
                            if rate_limited > self.retry.max_rate_limited {
                                return Err(error.into());
                            }
                            let wait = retry_after.unwrap_or_else(|| budget.time_to_window_end());
                            budget.pause(wait);
                            tracing::warn!(correlation_id = %error.correlation_id, wait_ms = wait.as_millis() as u64, "HubSpot rate limit reached; waiting");
                            Duration::ZERO
                        } else if is_retryable(status) {
                            failures += 1;
                            if failures >= self.retry.max_attempts {
                                return Err(error.into());
                            }
                            tracing::warn!(status = status.as_u16(), category = %error.category, correlation_id = %error.correlation_id, "HubSpot answered a retryable error");
                            retry_after.unwrap_or_else(|| self.backoff(failures))
                        } else {
                            return Err(error.into());
                        }
                    }
                };
                tokio::time::sleep(retry_delay).await;
            }
        };
        let outcome = call.instrument(span.clone()).await;
        if outcome.is_err() {
            span.record("otel.status_code", "error");
        }
        outcome
    }

    /// Exponential backoff with full jitter.
    fn backoff(&self, failures: u32) -> Duration {
        let ceiling = self.retry.initial_backoff.saturating_mul(1 << failures.min(16)).min(self.retry.max_backoff);
        ceiling.mul_f64(rand::rng().random_range(0.5..=1.0))
    }

    fn count(&self, operation: &str, outcome: &str) {
        if let Some(observer) = &self.observer {
            observer.call_ended(operation, outcome);
        }
    }
}

/// Items of consecutive pages: `fetch(after)` returns a page's items and the cursor of the next
/// page, `None` on the last. Pages are fetched only as the stream is consumed.
fn pages<'a, T, F, Fut>(fetch: F) -> impl Stream<Item = Result<T>> + Send + 'a
where
    T: Send + 'a,
    F: Fn(Option<String>) -> Fut + Send + 'a,
    Fut: std::future::Future<Output = Result<(Vec<T>, Option<String>)>> + Send + 'a,
{
    // `None`: the last page was taken; `Some(after)`: the cursor of the next.
    stream::try_unfold((fetch, Some(None::<String>)), |(fetch, cursor)| async move {
        let Some(after) = cursor else { return Ok::<_, Error>(None) };
        let (items, next) = fetch(after).await?;
        Ok(Some((stream::iter(items.into_iter().map(Ok::<T, Error>)), (fetch, next.map(Some)))))
    })
    .try_flatten()
}

/// The path of OAuth access token metadata, which ends with the token.
const ACCESS_TOKEN_INFO_PATH: &str = "/oauth/v1/access-tokens/";

/// `path` as logs may show it: without a token in it.
fn loggable_path(path: &str) -> &str {
    if path.starts_with(ACCESS_TOKEN_INFO_PATH) { "/oauth/v1/access-tokens/[redacted]" } else { path }
}

fn is_retryable(status: StatusCode) -> bool {
    status == StatusCode::LOCKED || status.is_server_error()
}

fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    let secs: f64 = headers.get(http::header::RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(3600.0)))
}

/// reqwest errors carry the URL, which never holds a secret here but is noise in status messages.
fn without_url(e: reqwest::Error) -> String {
    e.without_url().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error(status: u16, category: &str) -> Error {
        Error::Api(ApiError {
            status,
            category: category.into(),
            message: "m".into(),
            correlation_id: "c".into(),
            required_scopes: vec![],
            policy_name: None,
        })
    }

    #[tokio::test]
    async fn isolation_reports_each_refused_input_and_keeps_the_rest() {
        let inputs: Vec<u32> = (0..250).collect();
        let mut calls: Vec<usize> = Vec::new();
        let batch = isolate_bad_inputs(&inputs, |chunk: &[u32]| {
            calls.push(chunk.len());
            let refused = chunk.iter().any(|i| *i == 7 || *i == 130);
            let answer = if refused { Err(api_error(400, "VALIDATION_ERROR")) } else { Ok(chunk.to_vec()) };
            async move { answer }
        })
        .await;
        assert!(batch.failure.is_none());
        assert_eq!(batch.rejected.iter().map(|(i, e)| (*i, e.status)).collect::<Vec<_>>(), vec![(7, 400), (130, 400)]);
        let mut accepted = batch.accepted.clone();
        accepted.sort();
        assert_eq!(accepted, (0..250).filter(|i| *i != 7 && *i != 130).map(|i| i as usize).collect::<Vec<_>>());
        assert_eq!(batch.results.len(), 248);
        assert!(calls.iter().all(|n| *n <= BATCH_LIMIT), "{calls:?}");
    }

    #[tokio::test]
    async fn failures_not_about_inputs_stop_and_leave_the_rest_unsettled() {
        let inputs: Vec<u32> = (0..250).collect();
        for error in [|| api_error(503, "UNKNOWN"), || api_error(403, "MISSING_SCOPES"), || api_error(401, "X")] {
            let mut call_count = 0;
            let batch = isolate_bad_inputs(&inputs, |chunk: &[u32]| {
                call_count += 1;
                let answer = if call_count == 2 { Err(error()) } else { Ok(chunk.to_vec()) };
                async move { answer }
            })
            .await;
            assert_eq!(batch.accepted, (0..100).collect::<Vec<_>>());
            assert!(batch.rejected.is_empty());
            assert!(batch.failure.is_some());
            assert_eq!(call_count, 2);
        }
    }
}
