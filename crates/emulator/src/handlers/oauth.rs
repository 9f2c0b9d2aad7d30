//! Token endpoints. OAuth apps (HubSpot's public apps): the token endpoint
//! (`/oauth/v1/token`, `/oauth/v3/token`) with the authorization-code, refresh-token and
//! client-credentials grants, and token metadata (`/oauth/v1/access-tokens/{token}`,
//! `/oauth/v1/refresh-tokens/{token}`, `/oauth/v3/token/introspect`). Private apps: token
//! introspection at `/oauth/v2/private-apps/get/access-token-info`.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use crate::api::{Shared, json_response, parse_json};
use crate::auth::oauth::{INSTALLING_USER, INSTALLING_USER_ID, TokenError, parse_form};
use crate::error::{ApiFailure, ApiResult};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TokenInfoRequest {
    token_key: Option<String>,
}

/// `POST /oauth/v2/private-apps/get/access-token-info` `{"tokenKey"}` → `{userId, hubId, appId,
/// scopes}`.
pub async fn private_app_token_info(State(emu): Shared, body: Bytes) -> ApiResult<Response> {
    let request: TokenInfoRequest = parse_json(&body)?;
    let token = request.token_key.ok_or_else(|| ApiFailure::validation("tokenKey is required"))?;
    let caller = emu.tokens.get(&token).ok_or_else(ApiFailure::invalid_authentication)?;
    Ok(json_response(
        StatusCode::OK,
        json!({
            "userId": caller.user_id,
            "hubId": emu.config.portal_id,
            "appId": caller.app_id,
            "scopes": caller.scopes.iter().collect::<Vec<_>>(),
        }),
    ))
}

/// `POST /oauth/v1/token` and `POST /oauth/v3/token`.
pub async fn token(State(emu): Shared, body: Bytes) -> Response {
    let form = match parse_form(&body) {
        Ok(f) => f,
        Err(failure) => return failure.into_response(),
    };
    let now = emu.clock.now_ms();
    let mut oauth = emu.oauth.lock().expect("oauth lock");
    match oauth.grant(&form, emu.config.portal_id, now) {
        Ok(body) => (StatusCode::OK, axum::Json(body)).into_response(),
        Err(e) => e.into_failure().into_response(),
    }
}

fn token_not_found() -> ApiFailure {
    ApiFailure::not_found("Token not found or expired")
}

/// `GET /oauth/v1/access-tokens/{token}`.
pub async fn access_token_info(State(emu): Shared, Path(token): Path<String>) -> ApiResult<Response> {
    let now = emu.clock.now_ms();
    let oauth = emu.oauth.lock().expect("oauth lock");
    let issued = oauth.access_tokens.get(&token).filter(|t| t.expires_at_ms > now).ok_or_else(token_not_found)?;
    let app = oauth.app(&issued.client_id).ok_or_else(token_not_found)?;
    // HubSpot lists the internal id of each scope's scope group beside the scopes; the numbers
    // mean nothing outside HubSpot, so positions stand in for them.
    let scope_group_pks: Vec<usize> = (1..=app.scopes.len()).collect();
    Ok(axum::Json(json!({
        "token": token,
        "user": INSTALLING_USER,
        "hub_domain": hub_domain(emu.config.portal_id),
        "scopes": app.scopes.iter().collect::<Vec<_>>(),
        "scope_to_scope_group_pks": scope_group_pks,
        "trial_scopes": [],
        "trial_scope_to_scope_group_pks": [],
        "hub_id": emu.config.portal_id,
        "app_id": app.app_id,
        "expires_in": (issued.expires_at_ms - now) / 1000,
        "user_id": INSTALLING_USER_ID,
        "token_type": "access",
    }))
    .into_response())
}

fn hub_domain(portal_id: u64) -> String {
    format!("emulator-{portal_id}.hubspot.example")
}

/// `GET /oauth/v1/refresh-tokens/{token}`.
pub async fn refresh_token_info(State(emu): Shared, Path(token): Path<String>) -> ApiResult<Response> {
    let oauth = emu.oauth.lock().expect("oauth lock");
    let client_id = oauth.refresh_tokens.get(&token).ok_or_else(token_not_found)?;
    let app = oauth.app(client_id).ok_or_else(token_not_found)?;
    Ok(axum::Json(json!({
        "token": token,
        "user": INSTALLING_USER,
        "hub_domain": hub_domain(emu.config.portal_id),
        "scopes": app.scopes.iter().collect::<Vec<_>>(),
        "hub_id": emu.config.portal_id,
        "client_id": client_id,
        "user_id": INSTALLING_USER_ID,
        "token_type": "refresh",
    }))
    .into_response())
}

/// `DELETE /oauth/v1/refresh-tokens/{token}`: revokes it (the app is uninstalled).
pub async fn revoke_refresh_token(State(emu): Shared, Path(token): Path<String>) -> ApiResult<StatusCode> {
    let mut oauth = emu.oauth.lock().expect("oauth lock");
    oauth.refresh_tokens.remove(&token).ok_or_else(token_not_found)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /oauth/v3/token/introspect` (RFC 7662 style): `{active: false}` for a token that is
/// unknown, expired or another app's.
pub async fn introspect(State(emu): Shared, body: Bytes) -> ApiResult<Response> {
    let form = parse_form(&body)?;
    let now = emu.clock.now_ms();
    let oauth = emu.oauth.lock().expect("oauth lock");
    let client_id = form.client_id.as_deref().unwrap_or_default();
    let app = oauth.app(client_id).ok_or_else(|| TokenError::BadClientId.into_failure())?;
    if form.client_secret.as_deref() != Some(app.config.client_secret.as_str()) {
        return Err(TokenError::BadClientSecret.into_failure());
    }
    let token = form.token.as_deref().unwrap_or_default();
    let scope = app.scopes.iter().cloned().collect::<Vec<_>>().join(" ");
    let common = |token_type: &str| {
        json!({
            "active": true,
            "client_id": client_id,
            "hub_id": emu.config.portal_id,
            "user_id": INSTALLING_USER_ID,
            "scope": scope,
            "token_type": token_type,
        })
    };
    let answer = if let Some(issued) =
        oauth.access_tokens.get(token).filter(|t| t.client_id == client_id && t.expires_at_ms > now)
    {
        let mut v = common("access_token");
        v["exp"] = json!(issued.expires_at_ms / 1000);
        v
    } else if oauth.refresh_tokens.get(token).is_some_and(|owner| owner == client_id) {
        common("refresh_token")
    } else {
        json!({ "active": false })
    };
    Ok(axum::Json(answer).into_response())
}
