//! The status step, pure: from the authentication and what the API server holds to the
//! integration's status, and the Events announcing how it changed.

use model::api::{HubSpotIntegration, HubSpotIntegrationStatus};

use super::apply::Applied;
use crate::events::EventToPublish;
use crate::resources;
use crate::status::{
    Authentication, INTEGRATION_EVENTS, ReceiverRollout, condition_events, config_change_event, integration_status,
};
use crate::webhooks;

/// The status `integration` gets after a visit that authenticated as `auth` and left `applied`.
pub fn status(integration: &HubSpotIntegration, auth: &Authentication, applied: &Applied) -> HubSpotIntegrationStatus {
    let generation = integration.metadata.generation;
    let receiver_url =
        matches!(applied.receiver, ReceiverRollout::Deployed { .. }).then(|| resources::receiver_url(integration));
    let webhooks_condition = applied.webhooks.as_ref().map(|outcome| webhooks::webhooks_condition(outcome, generation));
    let mut status = integration_status(
        integration,
        auth,
        &applied.receiver,
        receiver_url,
        webhooks_condition,
        applied.exposure.as_ref(),
    );
    status.webhook_subscription_ids = applied.webhook_subscription_ids.clone();
    if applied.config_hash.is_some() {
        status.receiver_config_hash = applied.config_hash.clone();
    }
    status
}

/// The Events announcing the change from `previous` to `current`: conditions that turned, and
/// a new receiver config.
pub fn announcements(previous: &HubSpotIntegrationStatus, current: &HubSpotIntegrationStatus) -> Vec<EventToPublish> {
    let mut announcements = condition_events(&previous.conditions, &current.conditions, INTEGRATION_EVENTS);
    announcements
        .extend(config_change_event(previous.receiver_config_hash.as_deref(), current.receiver_config_hash.as_deref()));
    announcements
}
