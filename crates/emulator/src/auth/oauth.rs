//! OAuth apps (HubSpot's public apps): the apps installed in the account, the authorization
//! codes, refresh tokens and access tokens issued to them, and the grants of the token
//! endpoint. Access tokens expire after the configured lifetime on the emulator's adjustable
//! clock.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use axum::body::Bytes;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Caller, FIRST_USER_ID, all_scopes};
use crate::config::{OAuthApp, RefreshTokenGrant};
use crate::error::{ApiFailure, ApiResult, correlation_id};

/// One configured app with the identity its tokens act as.
pub struct App {
    pub config: OAuthApp,
    pub app_id: u64,
    pub scopes: Arc<BTreeSet<String>>,
}

/// Every token is issued to the installing user of the one emulated account.
pub const INSTALLING_USER_ID: u64 = FIRST_USER_ID;
pub const INSTALLING_USER: &str = "installer@emulator.example";

/// An access token issued to an app, and when it expires.
pub struct AccessToken {
    pub client_id: String,
    pub expires_at_ms: i64,
}

struct AuthCode {
    client_id: String,
    redirect_uri: Option<String>,
}

/// Apps, and the codes and tokens issued to them.
pub struct OAuthState {
    apps: Vec<App>,
    ttl_ms: i64,
    /// Refresh token → client id. Refresh tokens do not expire (HubSpot's are long-lived).
    pub refresh_tokens: HashMap<String, String>,
    pub access_tokens: HashMap<String, AccessToken>,
    codes: HashMap<String, AuthCode>,
}

impl OAuthState {
    /// `first_app_id`: the app id of the first OAuth app; the next ones count up.
    pub fn new(
        apps: &[OAuthApp],
        refresh_tokens: &[RefreshTokenGrant],
        ttl_secs: u64,
        first_app_id: u64,
    ) -> Result<Self, String> {
        let apps: Vec<App> = apps
            .iter()
            .enumerate()
            .map(|(i, a)| App {
                config: a.clone(),
                app_id: first_app_id + i as u64,
                scopes: Arc::new(a.scopes.clone().unwrap_or_else(all_scopes).into_iter().collect()),
            })
            .collect();
        let mut state = OAuthState {
            apps,
            ttl_ms: (ttl_secs as i64).saturating_mul(1000),
            refresh_tokens: HashMap::new(),
            access_tokens: HashMap::new(),
            codes: HashMap::new(),
        };
        for grant in refresh_tokens {
            if state.app(&grant.client_id).is_none() {
                return Err(format!("--refresh-token names client id {:?}, which no --oauth-app has", grant.client_id));
            }
            state.refresh_tokens.insert(grant.token.clone(), grant.client_id.clone());
        }
        Ok(state)
    }

    pub fn app(&self, client_id: &str) -> Option<&App> {
        self.apps.iter().find(|a| a.config.client_id == client_id)
    }

    fn caller(&self, client_id: &str) -> Option<Caller> {
        self.app(client_id).map(|app| Caller {
            app_id: app.app_id,
            user_id: INSTALLING_USER_ID,
            scopes: app.scopes.clone(),
            public_app: true,
        })
    }

    /// Issues a refresh token to `client_id` (the admin API's stand-in for an installation).
    pub fn issue_refresh_token(&mut self, client_id: &str, token: Option<String>) -> ApiResult<String> {
        if self.app(client_id).is_none() {
            return Err(ApiFailure::validation(&format!("no OAuth app has client id {client_id:?}")));
        }
        let token = token.unwrap_or_else(|| format!("na1-{}", correlation_id()));
        self.refresh_tokens.insert(token.clone(), client_id.to_string());
        Ok(token)
    }

    /// Issues a single-use authorization code, as HubSpot does when a user installs the app.
    pub fn issue_code(&mut self, client_id: &str, redirect_uri: Option<String>) -> ApiResult<String> {
        if self.app(client_id).is_none() {
            return Err(ApiFailure::validation(&format!("no OAuth app has client id {client_id:?}")));
        }
        let code = correlation_id();
        self.codes.insert(code.clone(), AuthCode { client_id: client_id.to_string(), redirect_uri });
        Ok(code)
    }

    /// The caller behind an OAuth access token, or HubSpot's 401 for an expired one. `None`
    /// when the emulator never issued it.
    pub fn caller_for_access_token(&self, token: &str, now_ms: i64) -> Option<ApiResult<Caller>> {
        let issued = self.access_tokens.get(token)?;
        if issued.expires_at_ms <= now_ms {
            let minutes = (now_ms - issued.expires_at_ms) / 60_000;
            return Some(Err(expired_authentication(minutes)));
        }
        Some(self.caller(&issued.client_id).ok_or_else(ApiFailure::invalid_authentication))
    }

    fn issue_access_token(&mut self, client_id: &str, now_ms: i64) -> String {
        let token = format!("emu-{}", hex::encode(rand::random::<[u8; 24]>()));
        self.access_tokens.insert(
            token.clone(),
            AccessToken { client_id: client_id.to_string(), expires_at_ms: now_ms + self.ttl_ms },
        );
        token
    }

    /// `POST /oauth/v{1,3}/token`.
    pub fn grant(&mut self, form: &TokenForm, portal_id: u64, now_ms: i64) -> Result<Value, TokenError> {
        let client_id = form.client_id.as_deref().filter(|c| !c.is_empty()).ok_or(TokenError::BadClientId)?;
        let app = self.app(client_id).ok_or(TokenError::BadClientId)?;
        if form.client_secret.as_deref() != Some(app.config.client_secret.as_str()) {
            return Err(TokenError::BadClientSecret);
        }
        let refresh_token = match form.grant_type.as_deref() {
            Some("refresh_token") => {
                let token = form.refresh_token.as_deref().ok_or(TokenError::BadRefreshToken)?;
                match self.refresh_tokens.get(token) {
                    Some(owner) if owner == client_id => Some(token.to_string()),
                    _ => return Err(TokenError::BadRefreshToken),
                }
            }
            Some("authorization_code") => {
                let code = form.code.as_deref().ok_or(TokenError::BadAuthCode)?;
                match self.codes.get(code) {
                    Some(issued) if issued.client_id == client_id => {
                        if issued.redirect_uri.is_some() && issued.redirect_uri != form.redirect_uri {
                            return Err(TokenError::RedirectUriMismatch);
                        }
                    }
                    _ => return Err(TokenError::BadAuthCode),
                }
                self.codes.remove(code);
                Some(self.issue_refresh_token(client_id, None).map_err(|_| TokenError::BadClientId)?)
            }
            // An app-level token without a refresh token (RFC 6749 §4.4.3).
            Some("client_credentials") => None,
            _ => return Err(TokenError::BadGrantType),
        };
        let scopes: Vec<String> = self.app(client_id).map(|a| a.scopes.iter().cloned().collect()).unwrap_or_default();
        let access_token = self.issue_access_token(client_id, now_ms);
        let mut body = json!({
            "token_type": "bearer",
            "access_token": access_token,
            "expires_in": self.ttl_ms / 1000,
            "hub_id": portal_id,
            "scopes": scopes,
        });
        if let Some(refresh_token) = refresh_token {
            body["refresh_token"] = json!(refresh_token);
        }
        Ok(body)
    }
}

/// HubSpot's 401 for an access token past its lifetime.
fn expired_authentication(minutes_ago: i64) -> ApiFailure {
    ApiFailure {
        status: StatusCode::UNAUTHORIZED,
        body: json!({
            "status": "error",
            "message": format!("The OAuth token used to make this call expired {minutes_ago} minute(s) ago."),
            "correlationId": correlation_id(),
            "category": "EXPIRED_AUTHENTICATION",
        }),
    }
}

/// Why a token request was refused. The token endpoints answer 400 with their own `status` code
/// (`{"status": "BAD_REFRESH_TOKEN", "message": "...", "correlationId": "..."}`), which clients
/// match on, plus the `category` HubSpot's OpenAPI description of the endpoint requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    BadGrantType,
    BadClientId,
    BadClientSecret,
    BadRefreshToken,
    BadAuthCode,
    RedirectUriMismatch,
}

impl TokenError {
    pub fn into_failure(self) -> ApiFailure {
        let (status, message) = match self {
            TokenError::BadGrantType => ("BAD_GRANT_TYPE", "missing or unknown grant type"),
            TokenError::BadClientId => ("BAD_CLIENT_ID", "missing or unknown client id"),
            TokenError::BadClientSecret => ("BAD_CLIENT_SECRET", "missing or invalid client secret"),
            TokenError::BadRefreshToken => ("BAD_REFRESH_TOKEN", "missing or invalid refresh token"),
            TokenError::BadAuthCode => ("BAD_AUTH_CODE", "missing or unknown auth code"),
            TokenError::RedirectUriMismatch => {
                ("MISMATCH_REDIRECT_URI_AUTH_CODE", "redirect URI does not match initial auth code URL")
            }
        };
        ApiFailure {
            status: StatusCode::BAD_REQUEST,
            body: json!({
                "status": status,
                "message": message,
                "correlationId": correlation_id(),
                "category": "VALIDATION_ERROR",
            }),
        }
    }
}

/// The form fields of the token and introspection endpoints.
#[derive(Deserialize, Default)]
pub struct TokenForm {
    pub grant_type: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub refresh_token: Option<String>,
    pub code: Option<String>,
    pub redirect_uri: Option<String>,
    pub token: Option<String>,
}

/// Reads an `application/x-www-form-urlencoded` body with the parser of axum's query extractor
/// (the encoding is the same).
pub fn parse_form(body: &Bytes) -> ApiResult<TokenForm> {
    let uri = format!("/?{}", String::from_utf8_lossy(body))
        .parse()
        .map_err(|_| ApiFailure::validation("Invalid form body"))?;
    axum::extract::Query::<TokenForm>::try_from_uri(&uri)
        .map(|q| q.0)
        .map_err(|e| ApiFailure::validation(&format!("Invalid form body: {e}")))
}

/// Form fields that are secrets and never reach the request log.
pub const SECRET_FORM_FIELDS: &[&str] = &["client_secret", "refresh_token", "code", "token"];

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> OAuthState {
        let apps = vec!["cid:secret=crm.objects.contacts.read".parse().unwrap()];
        let grants = vec!["rt-1=cid".parse().unwrap()];
        OAuthState::new(&apps, &grants, 1800, 900).unwrap()
    }

    fn form(pairs: &[(&str, &str)]) -> TokenForm {
        let body = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&");
        parse_form(&Bytes::from(body)).unwrap()
    }

    #[test]
    fn apps_and_grants_parse() {
        let app: OAuthApp = "id:very-secret=a, b".parse().unwrap();
        assert_eq!((app.client_id.as_str(), app.client_secret.as_str()), ("id", "very-secret"));
        assert_eq!(app.scopes, Some(vec!["a".to_string(), "b".to_string()]));
        assert_eq!("id:sec".parse::<OAuthApp>().unwrap().scopes, None);
        assert!("id".parse::<OAuthApp>().is_err());
        assert!(":sec".parse::<OAuthApp>().is_err());
        assert!("rt".parse::<RefreshTokenGrant>().is_err());
        assert!(!format!("{app:?}").contains("very-secret"), "Debug hides the secret");
        let grant: RefreshTokenGrant = "na1-refresh=id".parse().unwrap();
        assert!(!format!("{grant:?}").contains("na1-refresh"), "Debug hides the token");
        let err = OAuthState::new(&[], &["rt=nobody".parse().unwrap()], 1800, 1).err().unwrap();
        assert!(err.contains("nobody"));
    }

    #[test]
    fn refresh_grant_issues_tokens_that_expire() {
        let mut oauth = state();
        let ok = form(&[
            ("grant_type", "refresh_token"),
            ("client_id", "cid"),
            ("client_secret", "secret"),
            ("refresh_token", "rt-1"),
        ]);
        let answer = oauth.grant(&ok, 62515, 0).unwrap();
        assert_eq!((answer["token_type"].as_str(), answer["expires_in"].as_i64()), (Some("bearer"), Some(1800)));
        assert_eq!(answer["refresh_token"], "rt-1");
        let token = answer["access_token"].as_str().unwrap();
        let caller = oauth.caller_for_access_token(token, 1_799_999).unwrap().unwrap();
        assert_eq!((caller.app_id, caller.public_app), (900, true));
        assert!(caller.require_any(&["crm.objects.contacts.write".into()]).is_err());
        let expired = oauth.caller_for_access_token(token, 1_800_000 + 5 * 60_000).unwrap().unwrap_err();
        assert_eq!((expired.status, expired.category()), (StatusCode::UNAUTHORIZED, "EXPIRED_AUTHENTICATION"));
        assert!(expired.message().contains("expired 5 minute(s) ago"));
        assert!(oauth.caller_for_access_token("other", 0).is_none());
    }

    #[test]
    fn refusals_name_what_is_wrong() {
        let mut oauth = state();
        let status = |oauth: &mut OAuthState, pairs: &[(&str, &str)]| {
            oauth.grant(&form(pairs), 62515, 0).unwrap_err().into_failure().body["status"].as_str().unwrap().to_string()
        };
        let app = [("client_id", "cid"), ("client_secret", "secret")];
        let with = |extra: &[(&'static str, &'static str)]| [&app[..], extra].concat();
        assert_eq!(
            status(&mut oauth, &with(&[("grant_type", "refresh_token"), ("refresh_token", "nope")])),
            "BAD_REFRESH_TOKEN"
        );
        assert_eq!(status(&mut oauth, &with(&[("grant_type", "password")])), "BAD_GRANT_TYPE");
        assert_eq!(
            status(&mut oauth, &with(&[("grant_type", "authorization_code"), ("code", "nope")])),
            "BAD_AUTH_CODE"
        );
        assert_eq!(
            status(&mut oauth, &[("grant_type", "refresh_token"), ("client_id", "x"), ("client_secret", "secret")]),
            "BAD_CLIENT_ID"
        );
        assert_eq!(
            status(
                &mut oauth,
                &[
                    ("grant_type", "refresh_token"),
                    ("client_id", "cid"),
                    ("client_secret", "wrong"),
                    ("refresh_token", "rt-1")
                ]
            ),
            "BAD_CLIENT_SECRET"
        );
    }

    #[test]
    fn codes_are_single_use_and_bound_to_their_redirect_uri() {
        let mut oauth = state();
        let code = oauth.issue_code("cid", Some("https://app.example/cb".into())).unwrap();
        let exchange = |uri: &str| {
            let mut f =
                form(&[("grant_type", "authorization_code"), ("client_id", "cid"), ("client_secret", "secret")]);
            f.code = Some(code.clone());
            f.redirect_uri = Some(uri.into());
            f
        };
        assert_eq!(
            oauth.grant(&exchange("https://evil.example/cb"), 62515, 0).unwrap_err(),
            TokenError::RedirectUriMismatch
        );
        let answer = oauth.grant(&exchange("https://app.example/cb"), 62515, 0).unwrap();
        let refresh = answer["refresh_token"].as_str().unwrap();
        assert!(oauth.refresh_tokens.contains_key(refresh));
        assert_eq!(oauth.grant(&exchange("https://app.example/cb"), 62515, 0).unwrap_err(), TokenError::BadAuthCode);
        let app_token = oauth
            .grant(
                &form(&[("grant_type", "client_credentials"), ("client_id", "cid"), ("client_secret", "secret")]),
                62515,
                0,
            )
            .unwrap();
        assert!(app_token.get("refresh_token").is_none());
    }
}
