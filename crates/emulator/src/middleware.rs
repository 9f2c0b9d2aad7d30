//! What happens to every call around its handler: authentication with rate limits and injected
//! faults for HubSpot's API, and the request log.

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::api::{FullPath, Shared};
use crate::auth::Caller;
use crate::auth::oauth::SECRET_FORM_FIELDS;
use crate::error::{ApiFailure, ApiResult, CORRELATION_ID_HEADER, correlation_id};
use crate::faults::FaultAnswer;
use crate::request_log::LoggedRequest;
use crate::shared::Emulator;
use hubspot::bearer_token;

/// Largest request body the log reads (bigger ones are refused, as HubSpot refuses them).
const MAX_BODY_BYTES: usize = 10 * 1024 * 1024;

/// Marks an answer that is a dropped connection: logged with status 0.
#[derive(Clone, Copy)]
struct DroppedConnection;

/// Resolves the bearer token, counts the call against the rate limits and applies any injected
/// fault; every answer to an authenticated call carries the `X-HubSpot-RateLimit-*` headers.
pub async fn authenticate(State(emu): Shared, mut request: Request, next: Next) -> Response {
    let caller = match bearer_caller(&emu, request.headers()) {
        Ok(caller) => caller,
        Err(failure) => return failure.into_response(),
    };
    let (limit_headers, verdict) = admit(&emu, &caller, request.uri().path());
    let mut response = match verdict {
        Ok(()) => {
            let path = request.uri().path().to_string();
            match injected_fault(&emu, &path).await {
                FaultAnswer::Fail(failure) => {
                    emu.requests.lock().expect("request log lock").count_injected_fault();
                    failure.into_response()
                }
                FaultAnswer::DropConnection => {
                    emu.requests.lock().expect("request log lock").count_injected_fault();
                    return dropped_connection();
                }
                FaultAnswer::Serve => {
                    request.extensions_mut().insert(FullPath(path));
                    request.extensions_mut().insert(caller);
                    next.run(request).await
                }
            }
        }
        Err(failure) => {
            emu.requests.lock().expect("request log lock").count_rate_limited();
            failure.into_response()
        }
    };
    response.headers_mut().extend(limit_headers);
    if !response.headers().contains_key(CORRELATION_ID_HEADER)
        && let Ok(id) = HeaderValue::from_str(&correlation_id())
    {
        response.headers_mut().insert(CORRELATION_ID_HEADER, id);
    }
    response
}

/// The caller named by `Authorization: Bearer`: a private-app token, or an OAuth access token
/// (refused with `EXPIRED_AUTHENTICATION` once past its lifetime).
fn bearer_caller(emu: &Emulator, headers: &HeaderMap) -> ApiResult<Caller> {
    if let Some(caller) = emu.tokens.caller_for(headers) {
        return Ok(caller.clone());
    }
    let token = bearer_token(headers).ok_or_else(ApiFailure::invalid_authentication)?;
    let oauth = emu.oauth.lock().expect("oauth lock");
    oauth
        .caller_for_access_token(token, emu.clock.now_ms())
        .unwrap_or_else(|| Err(ApiFailure::invalid_authentication()))
}

/// Counts the call against its rate limit, or refuses it; with the rate-limit headers its
/// answer carries.
fn admit(emu: &Emulator, caller: &Caller, path: &str) -> (HeaderMap, ApiResult<()>) {
    // Search is limited per second on its own, and its answers carry no rate-limit headers.
    if path.ends_with("/search") {
        (HeaderMap::new(), emu.search_limiter.lock().expect("search limiter lock").admit())
    } else if caller.public_app {
        emu.limiter.lock().expect("limiter lock").admit_public_app(caller.app_id)
    } else {
        emu.limiter.lock().expect("limiter lock").admit(caller.app_id)
    }
}

/// The injected fault this call meets, after the delay it adds; `Serve` when there is none.
async fn injected_fault(emu: &Emulator, path: &str) -> FaultAnswer {
    let fault = emu.faults.lock().expect("faults lock").take(path);
    if let Some(delay) = fault.as_ref().map(|f| f.delay).filter(|d| !d.is_zero()) {
        tokio::time::sleep(delay).await;
    }
    fault.map_or(FaultAnswer::Serve, |f| f.answer)
}

/// An answer whose body fails before its first byte: the server closes the connection and
/// the client sees it end with no response.
fn dropped_connection() -> Response {
    let failing = futures::stream::once(async {
        Err::<Bytes, _>(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            "injected fault: connection dropped",
        ))
    });
    let mut response = Response::new(Body::from_stream(failing));
    response.extensions_mut().insert(DroppedConnection);
    response
}

/// Records every API call (not the admin API's) with its answer's status. Token introspection
/// bodies name a token: that value is never recorded.
pub async fn record_request(State(emu): Shared, request: Request, next: Next) -> Response {
    if request.uri().path().starts_with("/_emulator/") {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(_) => return ApiFailure::validation("Request body is too large").into_response(),
    };
    let logged_body = logged_body(&parts.headers, &bytes);
    let method = parts.method.to_string();
    let path = redact_token_path(parts.uri.path());
    let query = parts.uri.query().map(redact_query);
    let response = next.run(Request::from_parts(parts, Body::from(bytes))).await;
    let status =
        if response.extensions().get::<DroppedConnection>().is_some() { 0 } else { response.status().as_u16() };
    let entry = LoggedRequest { method, path, query, body: logged_body, status };
    emu.requests.lock().expect("request log lock").push(entry);
    response
}

/// The body as the log shows it: JSON or form fields, with tokens and secrets redacted.
fn logged_body(headers: &HeaderMap, bytes: &[u8]) -> Value {
    let is_form = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let mut logged_body: Value =
        if is_form { form_fields(bytes) } else { serde_json::from_slice(bytes).unwrap_or(Value::Null) };
    if let Some(token) = logged_body.get_mut("tokenKey") {
        *token = json!("[redacted]");
    }
    for field in SECRET_FORM_FIELDS {
        if let Some(secret) = logged_body.get_mut(*field) {
            *secret = json!("[redacted]");
        }
    }
    logged_body
}

/// A form body (the OAuth endpoints') as a JSON object of its fields; `null` when it is none.
fn form_fields(bytes: &[u8]) -> Value {
    let Ok(uri) = format!("/?{}", String::from_utf8_lossy(bytes)).parse::<axum::http::Uri>() else {
        return Value::Null;
    };
    match axum::extract::Query::<std::collections::BTreeMap<String, String>>::try_from_uri(&uri) {
        Ok(fields) if !bytes.is_empty() => json!(fields.0),
        _ => Value::Null,
    }
}

/// The developer API key travels in `?hapikey=`: the log shows `[redacted]` in its place.
fn redact_query(query: &str) -> String {
    query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if name.eq_ignore_ascii_case("hapikey") => format!("{name}=[redacted]"),
            _ => pair.to_string(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// Token metadata paths name the token: the log shows `[redacted]` in its place.
fn redact_token_path(path: &str) -> String {
    for prefix in ["/oauth/v1/access-tokens/", "/oauth/v1/refresh-tokens/"] {
        if path.starts_with(prefix) && path.len() > prefix.len() {
            return format!("{prefix}[redacted]");
        }
    }
    path.to_string()
}
