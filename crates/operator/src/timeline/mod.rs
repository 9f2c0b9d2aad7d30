//! `HubSpotTimelineEventType`: how HubSpot learns of an event type. Rendered (the default):
//! the app event's `*-hsmeta.json` in a ConfigMap for the user's HubSpot project; API (legacy
//! public apps): the event template kept through `/integrators/timeline/v3/{appId}/event-templates`.
//!
//! The pure part is in `build`: the hsmeta file and its ConfigMap, the template HubSpot should
//! hold and how a found one differs from it, and which HubSpot API carries the occurrences.

pub mod build;

#[cfg(test)]
mod tests;
