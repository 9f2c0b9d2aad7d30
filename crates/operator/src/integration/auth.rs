//! The authentication step: checks the integration's credentials with HubSpot and, for an
//! OAuth app, keeps its access token fresh in the managed Secret. It is I/O (HubSpot, and the
//! write of the managed Secret), so it is a step of its own beside the pure build.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::Api;
use kube::{Resource, ResourceExt};

use crate::kube_api::apply;
use crate::resources;
use crate::secrets::SecretStore;
use crate::status::Authentication;
use crate::{Context, Error};
use hubspot::{HubSpotClient, OAuthCredentials, Secret as HubSpotSecret};
use model::api::HubSpotIntegration;
use model::api::integration::CredentialKind;

/// How long from now until `at`; zero once it has passed.
fn until(at: Timestamp) -> Duration {
    Duration::try_from(at.duration_since(Timestamp::now())).unwrap_or(Duration::ZERO)
}

/// Checks `integration`'s credentials with HubSpot. For an OAuth app, also keeps its access
/// token in the managed Secret fresh and returns when that token is next due for replacement.
pub async fn authenticate(
    integration: &HubSpotIntegration,
    secrets: &SecretStore,
    ctx: &Context,
) -> Result<(Authentication, Option<Timestamp>), Error> {
    let oauth = match integration.spec.credentials.kind() {
        Err(e) => return Ok((Authentication::TokenUnavailable(e.into()), None)),
        Ok(CredentialKind::PrivateAppToken(reference)) => {
            // Read just now: the property and mapping reconcilers take a rotation from here.
            ctx.integrations.token_read(integration, secrets.value(reference)).await;
            let auth = match secrets.value(reference) {
                Err(e) => Authentication::TokenUnavailable(e),
                Ok(token) => introspect(&ctx.hubspot_client(integration, token)).await,
            };
            return Ok((auth, None));
        }
        Ok(CredentialKind::OAuth(oauth)) => oauth,
    };
    // Read on every reconcile, so rotated client secrets and refresh tokens take effect.
    let credentials = match (secrets.value(&oauth.client_secret), secrets.value(&oauth.refresh_token)) {
        (Ok(client_secret), Ok(refresh_token)) => OAuthCredentials {
            client_id: oauth.client_id.clone(),
            client_secret: HubSpotSecret::new(client_secret),
            refresh_token: HubSpotSecret::new(refresh_token),
            token_endpoint: oauth.token_endpoint.unwrap_or_default(),
        },
        (Err(e), _) | (_, Err(e)) => return Ok((Authentication::TokenUnavailable(e), None)),
    };
    let client = ctx.hubspot_oauth_client(integration, credentials);
    let now = Timestamp::now();
    let stored =
        secrets.get(&resources::access_token_secret_name(integration)).and_then(resources::stored_access_token);
    if let Some((token, refresh_at)) = stored.filter(|(_, refresh_at)| now < *refresh_at) {
        let with_stored = client.clone().with_access_token(HubSpotSecret::new(token), until(refresh_at)).await;
        match with_stored.introspect_token().await {
            Ok(info) => return Ok((Authentication::Succeeded(info), Some(refresh_at))),
            // HubSpot no longer knows the stored token (revoked, or the Secret was restored
            // from elsewhere): replace it now rather than when it is due.
            Err(hubspot::Error::Api(e)) if e.status == 401 || e.status == 404 => {
                tracing::info!(integration = %integration.name_any(), category = %e.category, "HubSpot refused the stored access token; requesting a new one");
            }
            Err(e) => return Ok((Authentication::Failed(e), Some(refresh_at))),
        }
    }
    let issued = match client.renew_access_token().await {
        Some(Ok(issued)) => issued,
        // The managed Secret keeps the last good token, which may still be valid.
        Some(Err(e)) => return Ok((Authentication::Failed(e), None)),
        None => unreachable!("an OAuth client has a token endpoint"),
    };
    // Counted from before the request: HubSpot's lifetime started no earlier.
    let lifetime = SignedDuration::try_from(issued.expires_in).unwrap_or(SignedDuration::MAX);
    let expires_at = now.saturating_add(lifetime).expect("a duration");
    let refresh_at = now.saturating_add(lifetime / 2).expect("a duration");
    let owner =
        integration.controller_owner_ref(&()).ok_or_else(|| Error::MissingObjectKey(integration.name_any(), "uid"))?;
    let secret = resources::access_token_secret(integration, &owner, issued.token.expose(), refresh_at, expires_at);
    let namespace = integration.namespace().unwrap_or_default();
    apply(&Api::<Secret>::namespaced(ctx.client.clone(), &namespace), &secret).await?;
    ctx.integrations.token_read(integration, Ok(issued.token.expose().to_string())).await;
    Ok((introspect(&client).await, Some(refresh_at)))
}

async fn introspect(client: &HubSpotClient) -> Authentication {
    match client.introspect_token().await {
        Ok(info) => Authentication::Succeeded(info),
        Err(e) => Authentication::Failed(e),
    }
}
