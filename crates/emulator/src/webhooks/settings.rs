//! The app's webhook configuration: its target URL, how many requests may be in flight, and
//! its subscriptions. Delivery reads it as it goes: only events of active subscriptions are
//! sent, to the current `targetUrl`, with at most `maxConcurrentRequests` requests in flight.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::clock::iso8601;
use crate::config::Subscription;

/// Most subscriptions one app may have.
pub const MAX_SUBSCRIPTIONS: usize = 1000;
/// HubSpot's default and smallest allowed `maxConcurrentRequests`.
pub const DEFAULT_MAX_CONCURRENT_REQUESTS: usize = 10;
pub const MIN_MAX_CONCURRENT_REQUESTS: usize = 5;
/// Id of the first subscription.
pub const FIRST_SUBSCRIPTION_ID: u64 = 2_100_001;

/// Every event type the emulator emits, which an app subscribes to when no `--subscription`
/// is given.
fn every_event_type() -> Vec<String> {
    ["contact", "company", "deal", "ticket", "object"]
        .iter()
        .flat_map(|o| {
            ["creation", "deletion", "propertyChange", "associationChange", "merge"].map(|a| format!("{o}.{a}"))
        })
        .collect()
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SubscriptionRecord {
    pub id: u64,
    pub event_type: String,
    /// For `propertyChange`: only this property's changes (none: every property's).
    pub property_name: Option<String>,
    pub active: bool,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    /// One of the "every event" subscriptions the emulator starts with when no
    /// `--subscription` is given: they deliver, but the management API neither lists nor
    /// changes them (HubSpot's API cannot express `object.*` or an all-properties
    /// `propertyChange`), and the app's first subscription made through the API replaces them.
    #[serde(default)]
    pub implicit: bool,
}

impl SubscriptionRecord {
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "id": self.id.to_string(),
            "eventType": self.event_type,
            "active": self.active,
            "createdAt": iso8601(self.created_at_ms),
            "updatedAt": iso8601(self.updated_at_ms),
        });
        if let Some(p) = &self.property_name {
            v["propertyName"] = json!(p);
        }
        v
    }

    fn covers(&self, subscription_type: &str, property: Option<&str>) -> bool {
        self.active
            && self.event_type == subscription_type
            && self.property_name.as_deref().is_none_or(|wanted| property == Some(wanted))
    }
}

/// The app's webhook settings and subscriptions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AppWebhooks {
    pub target_url: Option<String>,
    pub max_concurrent_requests: usize,
    pub settings_created_at_ms: i64,
    pub settings_updated_at_ms: i64,
    pub subscriptions: BTreeMap<u64, SubscriptionRecord>,
}

/// Shared by the store (which asks what to emit), delivery and the management API.
pub type SharedWebhooks = Arc<Mutex<AppWebhooks>>;

impl AppWebhooks {
    /// The configuration flags describe: their target URL and subscriptions (every event type
    /// when none are given), all active.
    pub fn new(target_url: Option<String>, subscriptions: &[Subscription], now: i64) -> Self {
        let implicit = subscriptions.is_empty();
        let initial: Vec<(String, Option<String>)> = if implicit {
            every_event_type().into_iter().map(|t| (t, None)).collect()
        } else {
            subscriptions.iter().map(|s| (s.subscription_type.clone(), s.property_name.clone())).collect()
        };
        let subscriptions = initial
            .into_iter()
            .zip(FIRST_SUBSCRIPTION_ID..)
            .map(|((event_type, property_name), id)| {
                let record = SubscriptionRecord {
                    id,
                    event_type,
                    property_name,
                    active: true,
                    created_at_ms: now,
                    updated_at_ms: now,
                    implicit,
                };
                (id, record)
            })
            .collect();
        Self {
            target_url,
            max_concurrent_requests: DEFAULT_MAX_CONCURRENT_REQUESTS,
            settings_created_at_ms: now,
            settings_updated_at_ms: now,
            subscriptions,
        }
    }

    /// The id of the active subscription an event falls under; none when nothing would be
    /// delivered (no target URL, or no such subscription).
    pub fn subscription_for(&self, subscription_type: &str, property: Option<&str>) -> Option<u64> {
        self.target_url.as_ref()?;
        // A subscription to one property's changes is the more specific match.
        let mut matching: Vec<&SubscriptionRecord> =
            self.subscriptions.values().filter(|s| s.covers(subscription_type, property)).collect();
        matching.sort_by_key(|s| s.property_name.is_none());
        matching.first().map(|s| s.id)
    }

    pub fn settings_json(&self) -> Option<Value> {
        let url = self.target_url.as_ref()?;
        Some(json!({
            "targetUrl": url,
            "throttling": { "maxConcurrentRequests": self.max_concurrent_requests, "period": "SECONDLY" },
            "createdAt": iso8601(self.settings_created_at_ms),
            "updatedAt": iso8601(self.settings_updated_at_ms),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_active_subscriptions_with_a_target_match() {
        let flags: Vec<Subscription> =
            vec!["contact.propertyChange".parse().unwrap(), "contact.propertyChange:email".parse().unwrap()];
        let mut webhooks = AppWebhooks::new(None, &flags, 0);
        assert_eq!(webhooks.subscription_for("contact.propertyChange", Some("email")), None, "no target URL");
        webhooks.target_url = Some("http://127.0.0.1:1/hooks".into());
        let specific = webhooks.subscription_for("contact.propertyChange", Some("email")).unwrap();
        assert_eq!(webhooks.subscriptions[&specific].property_name.as_deref(), Some("email"));
        let general = webhooks.subscription_for("contact.propertyChange", Some("firstname")).unwrap();
        webhooks.subscriptions.get_mut(&general).unwrap().active = false;
        assert_eq!(webhooks.subscription_for("contact.propertyChange", Some("firstname")), None);
        assert_eq!(webhooks.subscription_for("deal.creation", None), None);
        let everything = AppWebhooks::new(Some("http://x/".into()), &[], 0);
        assert!(everything.subscription_for("ticket.merge", None).is_some());
    }
}
