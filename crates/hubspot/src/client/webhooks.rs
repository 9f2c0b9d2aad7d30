//! The webhooks API of an app: its webhook settings and event subscriptions, managed with the
//! developer API key.

use reqwest::Method;

use super::HubSpotClient;
use crate::auth::Secret;
use crate::error::{ApiError, Error, Result};
use crate::models::{AppWebhookSettings, AppWebhookSubscription};

impl HubSpotClient {
    /// `GET /webhooks/v3/{appId}/settings` with the developer API key; `None` when the app has
    /// no webhook settings yet.
    pub async fn get_webhook_settings(&self, app_id: u64, api_key: &Secret) -> Result<Option<AppWebhookSettings>> {
        let path = format!("/webhooks/v3/{app_id}/settings");
        match self.developer_call::<(), _>("get_webhook_settings", Method::GET, &path, api_key, None).await {
            Ok(settings) => Ok(Some(settings)),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `PUT /webhooks/v3/{appId}/settings` with the developer API key.
    pub async fn put_webhook_settings(
        &self,
        app_id: u64,
        api_key: &Secret,
        settings: &AppWebhookSettings,
    ) -> Result<AppWebhookSettings> {
        let path = format!("/webhooks/v3/{app_id}/settings");
        self.developer_call("put_webhook_settings", Method::PUT, &path, api_key, Some(settings)).await
    }

    /// `GET /webhooks/v3/{appId}/subscriptions` with the developer API key.
    pub async fn list_webhook_subscriptions(
        &self,
        app_id: u64,
        api_key: &Secret,
    ) -> Result<Vec<AppWebhookSubscription>> {
        #[derive(serde::Deserialize)]
        struct List {
            results: Vec<AppWebhookSubscription>,
        }
        let path = format!("/webhooks/v3/{app_id}/subscriptions");
        let list: List =
            self.developer_call::<(), _>("list_webhook_subscriptions", Method::GET, &path, api_key, None).await?;
        Ok(list.results)
    }

    /// `POST /webhooks/v3/{appId}/subscriptions` with the developer API key.
    pub async fn create_webhook_subscription(
        &self,
        app_id: u64,
        api_key: &Secret,
        event_type: &str,
        property_name: Option<&str>,
        active: bool,
    ) -> Result<AppWebhookSubscription> {
        let mut body = serde_json::json!({ "eventType": event_type, "active": active });
        if let Some(property) = property_name {
            body["propertyName"] = serde_json::json!(property);
        }
        let path = format!("/webhooks/v3/{app_id}/subscriptions");
        self.developer_call("create_webhook_subscription", Method::POST, &path, api_key, Some(&body)).await
    }

    /// `POST /webhooks/v3/{appId}/subscriptions/batch/update` with the developer API key:
    /// sets `active` of each `(id, active)`. A partial failure (207) is an error naming the
    /// ids HubSpot did not update.
    pub async fn update_webhook_subscriptions(
        &self,
        app_id: u64,
        api_key: &Secret,
        changes: &[(String, bool)],
    ) -> Result<()> {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Answer {
            #[serde(default)]
            errors: Vec<serde_json::Value>,
        }
        let inputs: Vec<serde_json::Value> = changes
            .iter()
            .map(|(id, active)| {
                // HubSpot documents the id as a number; a non-numeric id is sent as it is.
                let id = id.parse::<u64>().map_or_else(|_| serde_json::json!(id), |n| serde_json::json!(n));
                serde_json::json!({ "id": id, "active": active })
            })
            .collect();
        let path = format!("/webhooks/v3/{app_id}/subscriptions/batch/update");
        let body = serde_json::json!({ "inputs": inputs });
        let answer: Answer =
            self.developer_call("update_webhook_subscriptions", Method::POST, &path, api_key, Some(&body)).await?;
        match answer.errors.first() {
            None => Ok(()),
            Some(error) => Err(Error::Api(ApiError::from_body(207, error.to_string().as_bytes()))),
        }
    }

    /// `DELETE /webhooks/v3/{appId}/subscriptions/{id}` with the developer API key. A
    /// subscription already gone is not an error.
    pub async fn delete_webhook_subscription(&self, app_id: u64, api_key: &Secret, id: &str) -> Result<()> {
        let path = format!("/webhooks/v3/{app_id}/subscriptions/{id}");
        match self.developer_call::<(), ()>("delete_webhook_subscription", Method::DELETE, &path, api_key, None).await {
            Err(e) if e.status() == Some(404) => Ok(()),
            other => other,
        }
    }
}
