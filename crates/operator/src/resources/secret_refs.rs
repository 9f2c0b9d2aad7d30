//! Which Secrets an integration and its mappings reference: the ones to read (and watch)
//! before rendering its config or calling HubSpot.

use crate::secrets::SecretError;
use model::api::integration::{CredentialKind, JetStreamLogSettings};
use model::api::mapping::{Destination, Source};
use model::api::{HubSpotIntegration, PropertyMapping, SecretKeyRef};

use super::*;

/// The Secret key holding the token to call HubSpot with: the private app token, or for an
/// OAuth app the access token in the managed Secret.
pub fn api_token_ref(integration: &HubSpotIntegration) -> Result<SecretKeyRef, SecretError> {
    Ok(match integration.spec.credentials.kind()? {
        CredentialKind::PrivateAppToken(reference) => reference.clone(),
        CredentialKind::OAuth(_) => {
            SecretKeyRef { name: access_token_secret_name(integration), key: ACCESS_TOKEN_KEY.into() }
        }
    })
}

/// Every Secret name that rendering the config of `integration` with `mappings` reads, and that
/// authenticating with its credentials reads (for an OAuth app also the managed Secret holding
/// its access token), in first-use order without repeats. The reconciler reads exactly these
/// Secrets and nothing else, so whatever the build resolves must be enumerated here.
pub fn referenced_secret_names(integration: &HubSpotIntegration, mappings: &[&PropertyMapping]) -> Vec<String> {
    let credentials = &integration.spec.credentials;
    let managed_access_token = credentials
        .oauth
        .as_ref()
        .map(|_| SecretKeyRef { name: access_token_secret_name(integration), key: ACCESS_TOKEN_KEY.into() });
    let oauth = credentials.oauth.iter().flat_map(|o| [&o.client_secret, &o.refresh_token]);
    let token = credentials.private_app_token.iter().chain(oauth).chain(managed_access_token.as_ref());
    let client_secret = integration.spec.webhooks.iter().map(|w| &w.client_secret);
    let developer_api_key =
        integration.spec.webhooks.iter().filter_map(|w| Some(&w.management.as_ref()?.api.as_ref()?.developer_api_key));
    let ingest_token = integration.spec.receiver.ingest.iter().map(|i| &i.token_secret_ref);
    let admin_token = integration.spec.receiver.admin.iter().filter_map(|a| a.token_secret_ref.as_ref());
    let destinations = mappings.iter().flat_map(|m| &m.spec.destinations).flat_map(Destination::secret_refs);
    let event_log = jetstream_log(integration).and_then(|j| j.url_secret.as_ref());
    let sources = mappings.iter().flat_map(|m| &m.spec.sources).flat_map(Source::secret_refs);
    let mut names: Vec<String> = Vec::new();
    for reference in token
        .chain(client_secret)
        .chain(developer_api_key)
        .chain(ingest_token)
        .chain(admin_token)
        .chain(event_log)
        .chain(destinations)
        .chain(sources)
    {
        if !names.contains(&reference.name) {
            names.push(reference.name.clone());
        }
    }
    names
}

fn jetstream_log(integration: &HubSpotIntegration) -> Option<&JetStreamLogSettings> {
    integration.spec.receiver.event_log.as_ref()?.jetstream.as_ref()
}
