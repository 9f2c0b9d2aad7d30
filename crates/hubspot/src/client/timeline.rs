//! Timeline events and app events, created in batches.

use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::HubSpotClient;
use super::batch::BATCH_LIMIT;
use crate::error::Result;
use crate::models::{AppEventInput, AppEventResult, BatchResponse, TimelineEventInput, TimelineEventResult};

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
