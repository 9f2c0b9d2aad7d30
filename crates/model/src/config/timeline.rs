//! The timeline event types a receiver takes occurrences of, as the controller renders them.

use serde::{Deserialize, Serialize};

use crate::api::timeline::{Carrier, TimelineObjectType, TimelineToken};

/// One `HubSpotTimelineEventType` HubSpot knows, whose occurrences the receiver takes at
/// `POST /timeline/{namespace}/{name}` and sends to HubSpot through `carrier`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TimelineEventTypeConfig {
    /// Namespace of the `HubSpotTimelineEventType` (the integration's).
    pub namespace: String,
    /// Name of the `HubSpotTimelineEventType` resource: the last segment of its path.
    pub name: String,
    /// The kind of record the occurrences land on.
    pub object_type: TimelineObjectType,
    /// The HubSpot API that carries the occurrences.
    pub carrier: Carrier,
    /// What HubSpot calls the type, as each occurrence names it: the legacy event template's id
    /// (`TimelineEvents`), the app event type's name `ae{portalId}_{uid}` (`AppEvents`), or the
    /// custom event definition's fully qualified name (`CustomEvents`).
    pub hubspot_name: String,
    /// The tokens each occurrence carries, which the receiver checks every occurrence against.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tokens: Vec<TimelineToken>,
}

impl TimelineEventTypeConfig {
    /// `namespace/name` of the resource, for logs, metrics and stored occurrences.
    pub fn qualified_name(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}
