//! Custom (behavioral) event definitions under `/events/v3/event-definitions`, kept with the
//! integration's own token (scope `behavioral_events.event_definitions.read_write`).

use reqwest::Method;

use super::HubSpotClient;
use crate::error::Result;
use crate::models::{EventDefinition, EventDefinitionInput, EventDefinitionProperty};

const DEFINITIONS_PATH: &str = "/events/v3/event-definitions";

impl HubSpotClient {
    /// `GET /events/v3/event-definitions/{eventName}` with its properties; `None` when the
    /// account has no definition of that internal name.
    pub async fn get_event_definition(&self, name: &str) -> Result<Option<EventDefinition>> {
        let path = format!("{DEFINITIONS_PATH}/{name}");
        match self.send::<(), EventDefinition>("get_event_definition", Method::GET, path, &[], None).await {
            Ok(definition) => Ok(Some(definition)),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `POST /events/v3/event-definitions`: the definition with its properties.
    pub async fn create_event_definition(&self, definition: &EventDefinitionInput) -> Result<EventDefinition> {
        self.send("create_event_definition", Method::POST, DEFINITIONS_PATH.into(), &[], Some(definition)).await
    }

    /// `PATCH /events/v3/event-definitions/{eventName}`: the label (the only field of the
    /// spec HubSpot lets change; the name and primary object never do).
    pub async fn update_event_definition_label(&self, name: &str, label: &str) -> Result<EventDefinition> {
        let path = format!("{DEFINITIONS_PATH}/{name}");
        let body = serde_json::json!({ "label": label });
        self.send("update_event_definition", Method::PATCH, path, &[], Some(&body)).await
    }

    /// `POST /events/v3/event-definitions/{eventName}/property`: adds one property (existing
    /// ones cannot be changed).
    pub async fn create_event_definition_property(
        &self,
        name: &str,
        property: &EventDefinitionProperty,
    ) -> Result<EventDefinitionProperty> {
        let path = format!("{DEFINITIONS_PATH}/{name}/property");
        self.send("create_event_definition_property", Method::POST, path, &[], Some(property)).await
    }
}
