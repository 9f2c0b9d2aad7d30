//! Where and how an integration calls HubSpot: the API settings and the credentials.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::api::SecretKeyRef;

/// HubSpot API connection settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiSettings {
    /// Base URL of the HubSpot API. Point it at `hubspot-operator emulator` for tests.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// API path version: `v3` (numbered paths) or a date version such as `2026-03`.
    #[serde(default = "default_api_version")]
    pub version: String,
    /// The account's subscription tier; sizes the request budget until HubSpot's rate-limit
    /// headers are seen. One of free, starter, professional, enterprise, addon.
    #[serde(default)]
    pub tier: hubspot::Tier,
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self { base_url: default_base_url(), version: default_api_version(), tier: Default::default() }
    }
}

fn default_base_url() -> String {
    "https://api.hubapi.com".into()
}
pub(crate) fn default_api_version() -> String {
    "v3".into()
}

/// Credentials to call HubSpot with: exactly one of `privateAppToken` and `oauth`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "has(self.privateAppToken) != has(self.oauth)",
    "message": "exactly one credential kind: set privateAppToken or oauth"
}]))]
pub struct Credentials {
    /// A private app or service key access token (`pat-…`), read from a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_app_token: Option<SecretKeyRef>,
    /// An OAuth app's installation. The operator exchanges the refresh token for access tokens
    /// and keeps the current one in the Secret `<integration>-hubspot-access-token`, which the
    /// receiver pods mount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth: Option<OAuthSettings>,
}

/// The credentials of an OAuth app's installation in one HubSpot account.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OAuthSettings {
    /// The app's client id (not secret).
    #[schemars(length(min = 1))]
    pub client_id: String,
    /// Secret key holding the app's client secret.
    pub client_secret: SecretKeyRef,
    /// Secret key holding the installation's refresh token. A rotated value takes effect on the
    /// next reconcile.
    pub refresh_token: SecretKeyRef,
    /// Which token endpoint issues access tokens: `v3` (the default) or `v1` (deprecated by
    /// HubSpot, unsupported from 2027-02-16).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint: Option<hubspot::auth::TokenEndpoint>,
}

/// The credential kind of an integration, as `Credentials::kind` finds it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum CredentialKind<'a> {
    PrivateAppToken(&'a SecretKeyRef),
    OAuth(&'a OAuthSettings),
}

impl Credentials {
    /// The one credential kind set. The API server enforces exactly one; manifests read without
    /// it (`dev` mode) get this error.
    pub fn kind(&self) -> Result<CredentialKind<'_>, CredentialsError> {
        match (&self.private_app_token, &self.oauth) {
            (Some(token), None) => Ok(CredentialKind::PrivateAppToken(token)),
            (None, Some(oauth)) => Ok(CredentialKind::OAuth(oauth)),
            _ => Err(CredentialsError),
        }
    }
}

/// `spec.credentials` sets both or neither credential kind.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("spec.credentials must set exactly one of privateAppToken and oauth")]
pub struct CredentialsError;
