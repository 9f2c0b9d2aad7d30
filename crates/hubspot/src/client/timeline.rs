//! Timeline events and app events, created in batches; custom events, sent and read back;
//! legacy event templates, managed with the developer API key.

use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::HubSpotClient;
use super::batch::BATCH_LIMIT;
use crate::auth::Secret;
use crate::error::Result;
use crate::models::{
    AppEventInput, AppEventResult, BatchResponse, CustomEventInput, CustomEventOccurrence, EventTemplate, Paging,
    TimelineEventInput, TimelineEventResult,
};

impl HubSpotClient {
    /// `POST /integrators/timeline/v3/events/batch/create` in chunks of 100. HubSpot creates
    /// each event on its own: the answer lists what it created and, with HTTP 207, what it refused.
    pub async fn create_timeline_events(
        &self,
        events: &[TimelineEventInput],
    ) -> Result<Vec<BatchResponse<TimelineEventResult>>> {
        self.create_in_batches("create_timeline_events", "/integrators/timeline/v3/events/batch/create".into(), events)
            .await
    }

    /// App events (`/integrators/timeline/v4/events/batch/create`, or the date-versioned path
    /// when one is configured) in chunks of 100, each created on its own as with timeline events.
    pub async fn send_app_events(&self, events: &[AppEventInput]) -> Result<Vec<BatchResponse<AppEventResult>>> {
        let version = if &*self.api_version == "v3" { "v4" } else { &*self.api_version };
        let path = format!("/integrators/timeline/{version}/events/batch/create");
        self.create_in_batches("send_app_events", path, events).await
    }

    /// `POST /events/v3/send/batch`: custom event occurrences, all stored (204) or none (400
    /// naming each bad input by index in its `errors`). HubSpot does not deduplicate them, so a
    /// caller that cannot tell whether a call went through looks first
    /// ([`Self::list_custom_events`]); give this client a retry policy of one attempt for it.
    pub async fn send_custom_events(&self, events: &[CustomEventInput]) -> Result<()> {
        let body = serde_json::json!({ "inputs": events });
        let _: Option<serde_json::Value> =
            self.send("send_custom_events", Method::POST, "/events/v3/send/batch".into(), &[], Some(&body)).await?;
        Ok(())
    }

    /// `GET /events/v3/events?objectType=&objectId=&eventType=`: every occurrence of
    /// `event_type` on one record, all pages.
    pub async fn list_custom_events(
        &self,
        object_type: &str,
        object_id: &str,
        event_type: &str,
    ) -> Result<Vec<CustomEventOccurrence>> {
        #[derive(serde::Deserialize)]
        struct Page {
            results: Vec<CustomEventOccurrence>,
            #[serde(default)]
            paging: Option<Paging>,
        }
        let mut found = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let mut query = vec![
                ("objectType", object_type.to_string()),
                ("objectId", object_id.to_string()),
                ("eventType", event_type.to_string()),
                ("limit", "100".to_string()),
            ];
            if let Some(after) = &after {
                query.push(("after", after.clone()));
            }
            let page: Page =
                self.send::<(), _>("list_custom_events", Method::GET, "/events/v3/events".into(), &query, None).await?;
            found.extend(page.results);
            match page.paging.and_then(|p| p.next) {
                Some(next) => after = Some(next.after),
                None => return Ok(found),
            }
        }
    }

    /// `GET /integrators/timeline/v3/{appId}/event-templates`: every event template of the app.
    pub async fn list_event_templates(&self, app_id: u64, api_key: &Secret) -> Result<Vec<EventTemplate>> {
        #[derive(serde::Deserialize)]
        struct List {
            results: Vec<EventTemplate>,
        }
        let path = format!("/integrators/timeline/v3/{app_id}/event-templates");
        let list: List =
            self.developer_call::<(), _>("list_event_templates", Method::GET, &path, api_key, None).await?;
        Ok(list.results)
    }

    /// `GET /integrators/timeline/v3/{appId}/event-templates/{id}`; `None` when HubSpot has no
    /// such template.
    pub async fn get_event_template(&self, app_id: u64, api_key: &Secret, id: &str) -> Result<Option<EventTemplate>> {
        let path = format!("/integrators/timeline/v3/{app_id}/event-templates/{id}");
        match self.developer_call::<(), _>("get_event_template", Method::GET, &path, api_key, None).await {
            Ok(template) => Ok(Some(template)),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `POST /integrators/timeline/v3/{appId}/event-templates`: the template with its tokens.
    pub async fn create_event_template(
        &self,
        app_id: u64,
        api_key: &Secret,
        template: &EventTemplate,
    ) -> Result<EventTemplate> {
        let path = format!("/integrators/timeline/v3/{app_id}/event-templates");
        self.developer_call("create_event_template", Method::POST, &path, api_key, Some(template)).await
    }

    /// `PUT /integrators/timeline/v3/{appId}/event-templates/{id}`: replaces the template's
    /// name, templates and tokens (HubSpot never changes its object type).
    pub async fn update_event_template(
        &self,
        app_id: u64,
        api_key: &Secret,
        id: &str,
        template: &EventTemplate,
    ) -> Result<EventTemplate> {
        let path = format!("/integrators/timeline/v3/{app_id}/event-templates/{id}");
        let body = EventTemplate { id: Some(id.to_string()), ..template.clone() };
        self.developer_call("update_event_template", Method::PUT, &path, api_key, Some(&body)).await
    }

    /// `DELETE /integrators/timeline/v3/{appId}/event-templates/{id}`, with the template's
    /// events; a template already gone counts as deleted.
    pub async fn delete_event_template(&self, app_id: u64, api_key: &Secret, id: &str) -> Result<()> {
        let path = format!("/integrators/timeline/v3/{app_id}/event-templates/{id}");
        match self.developer_call::<(), ()>("delete_event_template", Method::DELETE, &path, api_key, None).await {
            Err(e) if e.status() == Some(404) => Ok(()),
            other => other,
        }
    }

    async fn create_in_batches<I: Serialize, T: DeserializeOwned>(
        &self,
        operation: &'static str,
        path: String,
        inputs: &[I],
    ) -> Result<Vec<BatchResponse<T>>> {
        let mut answers = Vec::with_capacity(inputs.len().div_ceil(BATCH_LIMIT));
        for chunk in inputs.chunks(BATCH_LIMIT) {
            let body = serde_json::json!({ "inputs": chunk });
            answers.push(self.send(operation, Method::POST, path.clone(), &[], Some(&body)).await?);
        }
        Ok(answers)
    }
}
