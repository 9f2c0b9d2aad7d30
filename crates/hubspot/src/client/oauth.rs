//! The OAuth API: what a token is, and the token endpoints.

use reqwest::Method;

use super::HubSpotClient;
use super::transport::{ACCESS_TOKEN_INFO_PATH, Payload};
use crate::auth::{Credentials, Secret, TokenRequests, TokenResponse};
use crate::error::Result;
use crate::models::TokenInfo;

impl HubSpotClient {
    /// Who this client's token belongs to and its scopes: `POST
    /// /oauth/v2/private-apps/get/access-token-info` for a static token, `GET
    /// /oauth/v1/access-tokens/{token}` for an OAuth access token.
    pub async fn introspect_token(&self) -> Result<TokenInfo> {
        match self.credentials.as_ref() {
            Credentials::Static(token) => self.private_app_token_info(token).await,
            Credentials::OAuth(source) => self.access_token_info(&source.access_token(self).await?).await,
            Credentials::File(file) => self.access_token_info(&file.read()?).await,
        }
    }

    /// `POST /oauth/v2/private-apps/get/access-token-info`, authenticated with the token itself.
    async fn private_app_token_info(&self, token: &Secret) -> Result<TokenInfo> {
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

    /// `GET /oauth/v1/access-tokens/{token}`: the token in the path is all the authentication.
    async fn access_token_info(&self, token: &Secret) -> Result<TokenInfo> {
        #[derive(serde::Deserialize)]
        struct AccessTokenInfo {
            user_id: u64,
            hub_id: u64,
            app_id: u64,
            scopes: Vec<String>,
        }
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

impl TokenRequests for HubSpotClient {
    /// One token request (`POST /oauth/v{1,3}/token`), through the same budget and retries as
    /// every call, without a bearer token.
    async fn request_token(&self, path: &str, form: Vec<(&'static str, String)>) -> Result<TokenResponse> {
        self.perform("oauth_token", Method::POST, path, &[], &Payload::Form(form), None).await
    }
}
