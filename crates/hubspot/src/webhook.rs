//! HubSpot's webhook event, as delivered in batches of up to 100 to the target URL.

use serde::{Deserialize, Serialize};

/// One event of a webhook batch. Values are hints only: the current record is always fetched.
/// Fields some event types leave out default, so a valid batch is never refused (HubSpot drops a
/// batch it could not deliver for 24 hours).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookEvent {
    pub event_id: u64,
    pub subscription_id: u64,
    pub portal_id: u64,
    #[serde(default)]
    pub app_id: u64,
    /// Epoch milliseconds of the change.
    pub occurred_at: i64,
    /// For example `contact.propertyChange` or `object.creation`.
    pub subscription_type: String,
    #[serde(default)]
    pub attempt_number: u32,
    /// Absent on association changes, which name `fromObjectId` and `toObjectId` instead.
    #[serde(default)]
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub association_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_object_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_object_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub association_removed: Option<bool>,
}

/// What identifies one delivery, independent of `attemptNumber`: HubSpot repeats deliveries and
/// `eventId` alone is not unique.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DeliveryIdentity {
    pub portal_id: u64,
    pub subscription_id: u64,
    pub event_id: u64,
    pub object_id: u64,
    pub occurred_at: i64,
    /// `(fromObjectId, toObjectId)` of an association change.
    pub association: Option<(u64, u64)>,
}

impl DeliveryIdentity {
    /// The identity as one string, e.g. `62515:3:7:0:1700000000000:123>456`.
    pub fn key(&self) -> String {
        let mut key = format!(
            "{}:{}:{}:{}:{}",
            self.portal_id, self.subscription_id, self.event_id, self.object_id, self.occurred_at
        );
        if let Some((from, to)) = self.association {
            key.push_str(&format!(":{from}>{to}"));
        }
        key
    }

    /// Reads back what [`key`](Self::key) wrote.
    pub fn parse_key(key: &str) -> Option<DeliveryIdentity> {
        let mut parts = key.split(':');
        let mut number = || parts.next()?.parse::<u64>().ok();
        let (portal_id, subscription_id, event_id, object_id) = (number()?, number()?, number()?, number()?);
        let occurred_at = parts.next()?.parse().ok()?;
        let association = match parts.next() {
            None => None,
            Some(pair) => {
                let (from, to) = pair.split_once('>')?;
                Some((from.parse().ok()?, to.parse().ok()?))
            }
        };
        if parts.next().is_some() {
            return None;
        }
        Some(DeliveryIdentity { portal_id, subscription_id, event_id, object_id, occurred_at, association })
    }
}

impl WebhookEvent {
    pub fn delivery_identity(&self) -> DeliveryIdentity {
        DeliveryIdentity {
            portal_id: self.portal_id,
            subscription_id: self.subscription_id,
            event_id: self.event_id,
            object_id: self.object_id,
            occurred_at: self.occurred_at,
            association: self.from_object_id.zip(self.to_object_id),
        }
    }

    /// The [`DeliveryIdentity`] as one string.
    pub fn dedup_key(&self) -> String {
        self.delivery_identity().key()
    }

    /// The CRM object type (`contacts`, `companies`, ...) the event is about, if it is a CRM
    /// object event.
    pub fn object_type(&self) -> Option<String> {
        let prefix = self.subscription_type.split('.').next()?;
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
        object_type_of_prefix(prefix).map(str::to_string)
    }

    /// The event's action: `creation`, `deletion`, `propertyChange`, `merge`, ...
    pub fn action(&self) -> &str {
        self.subscription_type.split_once('.').map(|(_, a)| a).unwrap_or("")
    }

    /// The object type on the other side of an `associationChange`, from its
    /// `associationType` (`CONTACT_TO_COMPANY` → `companies`), when it is a standard object.
    pub fn associated_object_type(&self) -> Option<&'static str> {
        let (_, to) = self.association_type.as_deref()?.split_once("_TO_")?;
        object_type_of_prefix(&to.to_ascii_lowercase())
    }
}

/// The object type of a subscription type's singular prefix (`contact` → `contacts`).
fn object_type_of_prefix(prefix: &str) -> Option<&'static str> {
    Some(match prefix {
        "contact" => "contacts",
        "company" => "companies",
        "deal" => "deals",
        "ticket" => "tickets",
        "line_item" => "line_items",
        "product" => "products",
        _ => return None,
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delivery_key_reads_back_and_nothing_else_does() {
        let plain = DeliveryIdentity {
            portal_id: 62515,
            subscription_id: 3,
            event_id: u64::MAX,
            object_id: 9,
            occurred_at: -5,
            association: None,
        };
        assert_eq!(DeliveryIdentity::parse_key(&plain.key()), Some(plain));
        for bad in ["", "1:2:3:4", "1:2:3:4:5:6", "1:2:3:4:5:6>", "1:2:3:4:5:6>7:8", "a:2:3:4:5", "1:2:3:4:5:6>7>8"] {
            assert_eq!(DeliveryIdentity::parse_key(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn association_change_without_object_id_parses() {
        let body = r#"[{"eventId":7,"subscriptionId":3,"portalId":62515,"appId":54321,"occurredAt":1700000000000,
            "subscriptionType":"contact.associationChange","attemptNumber":0,"changeSource":"USER",
            "associationType":"CONTACT_TO_COMPANY","fromObjectId":123,"toObjectId":456,"associationRemoved":false,
            "isPrimaryAssociation":false}]"#;
        let events: Vec<WebhookEvent> = serde_json::from_str(body).unwrap();
        assert_eq!(events[0].action(), "associationChange");
        assert_eq!((events[0].from_object_id, events[0].to_object_id), (Some(123), Some(456)));
        assert_eq!(events[0].dedup_key(), "62515:3:7:0:1700000000000:123>456");
        assert_eq!(DeliveryIdentity::parse_key(&events[0].dedup_key()), Some(events[0].delivery_identity()));
        assert_eq!(events[0].associated_object_type(), Some("companies"));
        let mut other = events[0].clone();
        other.association_type = Some("LINE_ITEM_TO_DEAL".into());
        assert_eq!(other.associated_object_type(), Some("deals"));
        other.association_type = Some("CONTACT_TO_2-123456".into());
        assert_eq!(other.associated_object_type(), None);
    }

    #[test]
    fn object_events_name_their_type() {
        let mut e: WebhookEvent = serde_json::from_str(
            r#"{"eventId":1,"subscriptionId":1,"portalId":1,"occurredAt":1,"subscriptionType":"object.creation","objectId":9,"objectTypeId":"0-2"}"#,
        )
        .unwrap();
        assert_eq!(e.object_type().as_deref(), Some("companies"));
        e.subscription_type = "deal.propertyChange".into();
        assert_eq!(e.object_type().as_deref(), Some("deals"));
        e.subscription_type = "conversation.creation".into();
        assert_eq!(e.object_type(), None);
    }
}
