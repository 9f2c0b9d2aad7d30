//! Building and sending one request: the request budget, retries with backoff, HubSpot's error
//! answers, `Retry-After` and rate-limit headers, and what the observer is told. Every call of
//! every API family ends in `perform`.

use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::Instrument;

use super::HubSpotClient;
use crate::auth::{Credentials, Secret};
use crate::budget::RequestBudget;
use crate::error::{ApiError, CORRELATION_ID_HEADER, Error, Result, decode_error};

/// Calls of this operation spend the search budget instead of the burst budget: HubSpot limits
/// searches separately, and their answers carry no rate-limit headers.
pub(super) const SEARCH_OPERATION: &str = "search";

/// The path of OAuth access token metadata, which ends with the token: the one path logs must
/// not show whole.
pub(super) const ACCESS_TOKEN_INFO_PATH: &str = "/oauth/v1/access-tokens/";

/// What a request body is.
pub(super) enum Payload {
    Empty,
    Json(Vec<u8>),
    /// `application/x-www-form-urlencoded` (the OAuth token endpoints).
    Form(Vec<(&'static str, String)>),
}

impl Payload {
    /// `body` as JSON, or no body.
    // The client's own error, which every request returns.
    #[allow(clippy::result_large_err)]
    fn json<B: Serialize + ?Sized>(operation: &str, body: Option<&B>) -> Result<Self> {
        match body {
            Some(body) => Ok(Payload::Json(serde_json::to_vec(body).map_err(|e| decode_error(operation, &e))?)),
            None => Ok(Payload::Empty),
        }
    }
}

/// What one call has used of its retries so far.
#[derive(Default)]
struct RetriesUsed {
    /// 5xx, 423 and transport errors.
    failures: u32,
    /// 429 answers waited out.
    rate_limited: u32,
}

impl HubSpotClient {
    /// An authenticated call with a JSON body. An OAuth client sends a fresh access token and,
    /// should HubSpot still call it expired, renews it and tries once more.
    pub(super) async fn send<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        operation: &'static str,
        method: Method,
        path: String,
        query: &[(&str, String)],
        body: Option<&B>,
    ) -> Result<T> {
        let payload = Payload::json(operation, body)?;
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

    /// A call of the app management API: authenticated with the developer API key in the
    /// `hapikey` query parameter instead of the integration's token. Only the path is logged.
    pub(super) async fn developer_call<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        operation: &'static str,
        method: Method,
        path: &str,
        api_key: &Secret,
        body: Option<&B>,
    ) -> Result<T> {
        let payload = Payload::json(operation, body)?;
        let query = [("hapikey", api_key.expose().to_string())];
        self.perform(operation, method, path, &query, &payload, None).await
    }

    /// The one place a request is made: budget, retries, error mapping, metrics.
    pub(super) async fn perform<T: DeserializeOwned>(
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
            let mut retries = RetriesUsed::default();
            let mut attempts = 0u32;
            let is_search = operation == SEARCH_OPERATION;
            let budget = if is_search { &self.search_budget } else { &self.budget };
            loop {
                attempts += 1;
                tracing::Span::current().record("attempts", attempts);
                let permit = budget.acquire().await;
                let request = self.build_request(method.clone(), &url, query, payload, bearer);
                let started = Instant::now();
                let outcome = request.send().await;
                budget.settle(permit);
                if let Some(observer) = &self.observer {
                    observer.request_took(started.elapsed().as_secs_f64());
                }
                let retry_delay = match outcome {
                    Err(e) => {
                        self.count(operation, "transport_error");
                        retries.failures += 1;
                        if retries.failures >= self.retry.max_attempts {
                            return Err(Error::Transport(without_url(e)));
                        }
                        tracing::warn!(attempt = retries.failures, error = %without_url(e), "HubSpot request failed; retrying");
                        self.retry.backoff(retries.failures)
                    }
                    Ok(response) => {
                        if !is_search {
                            self.budget.observe(response.headers());
                        }
                        let status = response.status();
                        let retry_after = retry_after(response.headers());
                        let bytes = read_answer(response).await?;
                        if status.is_success() {
                            self.count(operation, "ok");
                            return decode(operation, &bytes);
                        }
                        let error = ApiError::from_body(status.as_u16(), &bytes);
                        if !error.correlation_id.is_empty() {
                            tracing::Span::current().record("correlation_id", error.correlation_id.as_str());
                        }
                        self.count(operation, status.as_str());
                        self.delay_before_retrying(status, error, retry_after, budget, &mut retries)?
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

    /// One HTTP request of a call; each attempt builds its own.
    fn build_request(
        &self,
        method: Method,
        url: &str,
        query: &[(&str, String)],
        payload: &Payload,
        bearer: Option<&Secret>,
    ) -> reqwest::RequestBuilder {
        let mut request = self.http.request(method, url);
        if let Some(token) = bearer {
            request = request.bearer_auth(token.expose());
        }
        if !query.is_empty() {
            request = request.query(query);
        }
        match payload {
            Payload::Empty => request,
            Payload::Json(bytes) => request.header(http::header::CONTENT_TYPE, "application/json").body(bytes.clone()),
            Payload::Form(fields) => request.form(fields),
        }
    }

    /// How long to wait before trying a refused call again, or the error to give up with. A 429
    /// pauses the budget and waits out the rate limit without counting as a failure, unless it
    /// is the daily limit, which lasts until the day's reset; 423 and 5xx back off; anything
    /// else is final.
    // The client's own error, which every request returns.
    #[allow(clippy::result_large_err)]
    fn delay_before_retrying(
        &self,
        status: StatusCode,
        error: ApiError,
        retry_after: Option<Duration>,
        budget: &RequestBudget,
        retries: &mut RetriesUsed,
    ) -> Result<Duration> {
        if status == StatusCode::TOO_MANY_REQUESTS {
            if error.policy_name.as_deref() == Some("DAILY") {
                return Err(Error::DailyLimitExhausted { correlation_id: error.correlation_id });
            }
            retries.rate_limited += 1;
            if retries.rate_limited > self.retry.max_rate_limited {
                return Err(error.into());
            }
            let wait = retry_after.unwrap_or_else(|| budget.time_to_window_end());
            budget.pause(wait);
            tracing::warn!(correlation_id = %error.correlation_id, wait_ms = wait.as_millis() as u64, "HubSpot rate limit reached; waiting");
            Ok(Duration::ZERO)
        } else if is_retryable(status) {
            retries.failures += 1;
            if retries.failures >= self.retry.max_attempts {
                return Err(error.into());
            }
            tracing::warn!(status = status.as_u16(), category = %error.category, correlation_id = %error.correlation_id, "HubSpot answered a retryable error");
            Ok(retry_after.unwrap_or_else(|| self.retry.backoff(retries.failures)))
        } else {
            Err(error.into())
        }
    }

    fn count(&self, operation: &str, outcome: &str) {
        if let Some(observer) = &self.observer {
            observer.call_ended(operation, outcome);
        }
    }
}

/// The body of an answer, once its status and correlation id are on the call's span.
async fn read_answer(response: reqwest::Response) -> Result<Bytes> {
    let span = tracing::Span::current();
    span.record("status", response.status().as_u16());
    if let Some(id) = response.headers().get(CORRELATION_ID_HEADER).and_then(|id| id.to_str().ok()) {
        span.record("correlation_id", id);
    }
    response.bytes().await.map_err(|e| Error::Transport(without_url(e)))
}

/// A successful answer's body; an empty body reads as JSON `null`.
// The client's own error, which every request returns.
#[allow(clippy::result_large_err)]
fn decode<T: DeserializeOwned>(operation: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(if bytes.is_empty() { b"null" } else { bytes }).map_err(|e| decode_error(operation, &e))
}

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
