//! The Secrets and ConfigMap that carry files: the rendered receiver config, an OAuth app's
//! access token, and `webhooks-hsmeta.json`.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use model::api::HubSpotIntegration;

use super::*;

/// Directory the managed access token Secret of an OAuth integration is mounted at.
pub const ACCESS_TOKEN_DIR: &str = "/var/run/hubspot-operator/access-token";
/// Key of the access token in the managed access token Secret (and its file name).
pub const ACCESS_TOKEN_KEY: &str = "token";
/// Annotation of the managed access token Secret: when HubSpot stops accepting the token.
pub const ACCESS_TOKEN_EXPIRES_AT_ANNOTATION: &str = "hubspot.io/access-token-expires-at";
/// Annotation of the managed access token Secret: when the operator replaces the token.
pub const ACCESS_TOKEN_REFRESH_AT_ANNOTATION: &str = "hubspot.io/access-token-refresh-at";
/// Key of the rendered `webhooks-hsmeta.json` in its ConfigMap.
pub const HSMETA_KEY: &str = "webhooks-hsmeta.json";

/// Name of the ConfigMap holding the rendered `webhooks-hsmeta.json`.
pub fn hsmeta_config_map_name(integration: &HubSpotIntegration) -> String {
    format!("{}-webhooks-hsmeta", integration.name_any())
}

/// The Secret holding the rendered config file.
pub fn config_secret(integration: &HubSpotIntegration, owner: &OwnerReference, config_yaml: &str) -> Secret {
    Secret {
        metadata: child_metadata(integration, config_secret_name(integration), owner),
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([(CONFIG_KEY.to_string(), ByteString(config_yaml.as_bytes().to_vec()))])),
        ..Default::default()
    }
}

/// The managed Secret holding an OAuth app's current access token, which the receiver pods
/// mount. Its annotations say when the token expires and when the operator replaces it
/// (RFC 3339 times).
pub fn access_token_secret(
    integration: &HubSpotIntegration,
    owner: &OwnerReference,
    token: &str,
    refresh_at: Timestamp,
    expires_at: Timestamp,
) -> Secret {
    let mut metadata = child_metadata(integration, access_token_secret_name(integration), owner);
    metadata.annotations = Some(BTreeMap::from([
        (ACCESS_TOKEN_EXPIRES_AT_ANNOTATION.to_string(), expires_at.to_string()),
        (ACCESS_TOKEN_REFRESH_AT_ANNOTATION.to_string(), refresh_at.to_string()),
    ]));
    Secret {
        metadata,
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([(ACCESS_TOKEN_KEY.to_string(), ByteString(token.as_bytes().to_vec()))])),
        ..Default::default()
    }
}

/// The ConfigMap holding `webhooks-hsmeta.json` (pretty-printed, as it goes into a project).
pub fn webhooks_hsmeta_config_map(
    integration: &HubSpotIntegration,
    owner: &OwnerReference,
    hsmeta: &serde_json::Value,
) -> ConfigMap {
    let file = serde_json::to_string_pretty(hsmeta).expect("JSON values always serialise") + "\n";
    let mut metadata = child_metadata(integration, hsmeta_config_map_name(integration), owner);
    if let Some(labels) = metadata.labels.as_mut() {
        labels.insert("app.kubernetes.io/component".into(), "webhooks".into());
    }
    ConfigMap { metadata, data: Some(BTreeMap::from([(HSMETA_KEY.to_string(), file)])), ..Default::default() }
}

/// The access token in a managed access token Secret and when it is due for replacement, if
/// the Secret holds both.
pub fn stored_access_token(secret: &Secret) -> Option<(String, Timestamp)> {
    let refresh_at = secret.annotations().get(ACCESS_TOKEN_REFRESH_AT_ANNOTATION)?.parse().ok()?;
    let token = std::str::from_utf8(&secret.data.as_ref()?.get(ACCESS_TOKEN_KEY)?.0).ok()?.trim().to_string();
    (!token.is_empty()).then_some((token, refresh_at))
}
