//! HubSpot's webhook event, as delivered in batches of up to 100 to the target URL.

use serde::{Deserialize, Serialize};

/// One event of a webhook batch. Values are hints only: the current record is always fetched.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookEvent {
    pub event_id: u64,
    pub subscription_id: u64,
    pub portal_id: u64,
    pub app_id: u64,
    /// Epoch milliseconds of the change.
    pub occurred_at: i64,
    /// For example `contact.propertyChange` or `object.creation`.
    pub subscription_type: String,
    pub attempt_number: u32,
    pub object_id: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change_source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change_flag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub property_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub property_value: Option<String>,
    /// Set on generic `object.*` events, for example `0-1` for contacts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_type_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_object_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_object_ids: Option<Vec<u64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_object_id: Option<u64>,
}

impl WebhookEvent {
    /// Identity of a delivery, independent of `attemptNumber`: HubSpot repeats deliveries and
    /// `eventId` alone is not unique.
    pub fn dedup_key(&self) -> String {
        format!("{}:{}:{}:{}:{}", self.portal_id, self.subscription_id, self.event_id, self.object_id, self.occurred_at)
    }

    /// The CRM object type (`contacts`, `companies`, ...) the event is about, if it is a CRM
    /// object event.
    pub fn object_type(&self) -> Option<String> {
        let prefix = self.subscription_type.split('.').next()?;
        let from_name = |name: &str| -> Option<&'static str> {
            Some(match name {
                "contact" => "contacts",
                "company" => "companies",
                "deal" => "deals",
                "ticket" => "tickets",
                "line_item" => "line_items",
                "product" => "products",
                _ => return None,
            })
        };
        if prefix == "object" {
            let id = self.object_type_id.as_deref()?;
            return Some(match id {
                "0-1" => "contacts".into(),
                "0-2" => "companies".into(),
                "0-3" => "deals".into(),
                "0-5" => "tickets".into(),
                "0-8" => "line_items".into(),
                "0-7" => "products".into(),
                other => other.to_string(),
            });
        }
        from_name(prefix).map(str::to_string)
    }

    /// The event's action: `creation`, `deletion`, `propertyChange`, `merge`, ...
    pub fn action(&self) -> &str {
        self.subscription_type.split_once('.').map(|(_, a)| a).unwrap_or("")
    }
}

/// HubSpot's singular object name used in subscription types (`contacts` → `contact`).
pub fn subscription_prefix(object_type: &str) -> &str {
    match object_type {
        "contacts" => "contact",
        "companies" => "company",
        "deals" => "deal",
        "tickets" => "ticket",
        "line_items" => "line_item",
        "products" => "product",
        _ => "object",
    }
}
