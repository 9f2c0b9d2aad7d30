//! HubSpot's JSON shapes, as the client sends and receives them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A CRM object (contact, company, deal, ...). Property values are strings or null.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CrmObject {
    pub id: String,
    #[serde(default)]
    pub properties: BTreeMap<String, Option<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
    #[serde(default)]
    pub archived: bool,
}

/// A CRM object with the history of some of its properties (`propertiesWithHistory`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectWithHistory {
    #[serde(flatten)]
    pub object: CrmObject,
    /// Per property its values, newest first.
    #[serde(default)]
    pub properties_with_history: BTreeMap<String, Vec<PropertyVersion>>,
}

/// One value a property had.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PropertyVersion {
    #[serde(default)]
    pub value: String,
    /// When the value was set (RFC 3339).
    pub timestamp: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_id: Option<String>,
}

/// `paging.next` of a list response.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NextPage {
    pub after: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Paging {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<NextPage>,
}

/// One page of a list call; `paging` is absent on the last page.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ObjectPage {
    pub results: Vec<CrmObject>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paging: Option<Paging>,
}

impl ObjectPage {
    pub fn next_after(&self) -> Option<&str> {
        self.paging.as_ref()?.next.as_ref().map(|n| n.after.as_str())
    }
}

/// Body of `POST /crm/v3/objects/{t}/search`: filter groups are ORed, the filters of a group
/// ANDed. HubSpot allows one sort, `limit` ≤ 200, and pages no deeper than 10,000 results.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchRequest {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filter_groups: Vec<FilterGroup>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sorts: Vec<SearchSort>,
    /// Text searched in the type's default searchable properties.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// Properties to return; HubSpot's defaults for the type when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub properties: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FilterGroup {
    pub filters: Vec<Filter>,
}

/// One condition on a property. `value` for comparisons, `highValue` too for `BETWEEN`,
/// `values` for `IN`/`NOT_IN`, nothing for `HAS_PROPERTY`/`NOT_HAS_PROPERTY`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Filter {
    pub property_name: String,
    pub operator: FilterOperator,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high_value: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

impl Filter {
    /// `property <operator> value`.
    pub fn compare(property: &str, operator: FilterOperator, value: impl Into<String>) -> Filter {
        Filter {
            property_name: property.to_string(),
            operator,
            value: Some(value.into()),
            high_value: None,
            values: Vec::new(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FilterOperator {
    Eq,
    Neq,
    Lt,
    Lte,
    Gt,
    Gte,
    Between,
    In,
    NotIn,
    HasProperty,
    NotHasProperty,
    ContainsToken,
    NotContainsToken,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchSort {
    pub property_name: String,
    pub direction: SortDirection,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SortDirection {
    Ascending,
    Descending,
}

/// One page of search results; `total` counts every match, not only this page.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SearchPage {
    pub total: u64,
    pub results: Vec<CrmObject>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paging: Option<Paging>,
}

impl SearchPage {
    pub fn next_after(&self) -> Option<&str> {
        self.paging.as_ref()?.next.as_ref().map(|n| n.after.as_str())
    }
}

/// One input of a batch upsert: `id` is the value of the unique `idProperty`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpsertInput {
    pub id: String,
    pub id_property: String,
    pub properties: BTreeMap<String, String>,
}

/// A result of a batch upsert: the object and whether it was created.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UpsertResult {
    #[serde(flatten)]
    pub object: CrmObject,
    #[serde(default)]
    pub new: bool,
}

/// A legacy timeline event template, as created or updated through
/// `/integrators/timeline/v3/{appId}/event-templates` and as HubSpot answers (with `id`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventTemplate {
    /// HubSpot's id; absent in a create body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub name: String,
    /// `contacts`, `companies`, `deals` or `tickets`.
    pub object_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_template: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail_template: Option<String>,
    #[serde(default)]
    pub tokens: Vec<EventTemplateToken>,
}

/// A token of an event template.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventTemplateToken {
    pub name: String,
    pub label: String,
    /// `string`, `number`, `date` or `enumeration`.
    #[serde(rename = "type")]
    pub token_type: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<EventTemplateTokenOption>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_property_name: Option<String>,
}

/// A value of an enumeration token.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventTemplateTokenOption {
    pub value: String,
    pub label: String,
}

/// One timeline event: the tokens of an app's event template for one record, named by
/// `object_id` or (for contacts) `email`. Events are immutable; an `id` makes resending safe.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TimelineEventInput {
    pub event_template_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// A company by its domain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    pub tokens: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extra_data: Option<serde_json::Value>,
    /// ISO 8601; HubSpot uses the time of the call when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
}

/// A timeline event as HubSpot stored it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TimelineEventResult {
    pub id: String,
    pub event_template_id: String,
    pub object_type: String,
    #[serde(default)]
    pub object_id: Option<String>,
    #[serde(default)]
    pub tokens: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub timestamp: Option<String>,
}

/// One app event occurrence of an event type a project app declares.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppEventInput {
    pub event_type_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// A company by its domain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    pub properties: BTreeMap<String, serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extra_data: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
}

/// An app event as HubSpot stored it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppEventResult {
    pub id: String,
    pub event_type_name: String,
    #[serde(default)]
    pub object_id: Option<String>,
    #[serde(default)]
    pub properties: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub timestamp: Option<String>,
}

/// One custom (behavioral) event occurrence for `/events/v3/send` and its batch form. HubSpot
/// keeps every occurrence it is sent: `uuid` names one but does not deduplicate it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomEventInput {
    /// The event definition's fully qualified name (`pe{portalId}_{name}`).
    pub event_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// ISO 8601; HubSpot uses the time of the call when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub occurred_at: Option<String>,
    pub properties: BTreeMap<String, serde_json::Value>,
}

/// A custom event occurrence as `GET /events/v3/events` lists it; `id` is the `uuid` it was
/// sent with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomEventOccurrence {
    pub id: String,
    #[serde(default)]
    pub event_type: Option<String>,
    #[serde(default)]
    pub object_id: Option<String>,
    #[serde(default)]
    pub occurred_at: Option<String>,
}

/// Response of the batch endpoints.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchResponse<T> {
    pub status: String,
    pub results: Vec<T>,
    #[serde(default)]
    pub num_errors: Option<u32>,
    #[serde(default)]
    pub errors: Vec<serde_json::Value>,
}

/// One record's associations to another object type, as an Associations v4 batch read answers
/// them: a page of associated records, `paging` when there are more.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssociationsOf {
    pub from: ObjectRef,
    pub to: Vec<AssociatedRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paging: Option<Paging>,
}

/// `{"id": "123"}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ObjectRef {
    pub id: String,
}

/// A record an association leads to. HubSpot writes the id as a JSON number.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssociatedRecord {
    pub to_object_id: u64,
}

/// A property definition.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Property {
    pub name: String,
    pub label: String,
    #[serde(rename = "type")]
    pub type_: String,
    pub field_type: String,
    pub group_name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub has_unique_value: bool,
    #[serde(default)]
    pub hubspot_defined: Option<bool>,
    #[serde(default)]
    pub options: Vec<PropertyOption>,
    #[serde(default)]
    pub hidden: bool,
    #[serde(default)]
    pub form_field: bool,
    #[serde(default)]
    pub display_order: i32,
}

/// Body of a property create call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PropertyCreate {
    pub name: String,
    pub label: String,
    #[serde(rename = "type")]
    pub type_: String,
    pub field_type: String,
    pub group_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub has_unique_value: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<PropertyOption>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub form_field: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_order: Option<i32>,
}

/// Body of a property update (PATCH): only the fields to change. `options` replaces the
/// whole list.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PropertyUpdate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_name: Option<String>,
    #[serde(rename = "fieldType", default, skip_serializing_if = "Option::is_none")]
    pub field_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<Vec<PropertyOption>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub form_field: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_order: Option<i32>,
}

/// A property group.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PropertyGroup {
    pub name: String,
    pub label: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_order: Option<i32>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PropertyOption {
    pub label: String,
    pub value: String,
    #[serde(default)]
    pub display_order: i32,
    #[serde(default)]
    pub hidden: bool,
}

/// Result of private-app token introspection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenInfo {
    pub user_id: u64,
    pub hub_id: u64,
    pub app_id: u64,
    pub scopes: Vec<String>,
}

/// An app's webhook settings (`/webhooks/v3/{appId}/settings`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppWebhookSettings {
    pub target_url: String,
    pub throttling: WebhookThrottling,
}

/// How many webhook requests HubSpot sends at once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookThrottling {
    pub max_concurrent_requests: u32,
}

/// One of an app's webhook subscriptions (`/webhooks/v3/{appId}/subscriptions`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppWebhookSubscription {
    /// HubSpot's documentation shows it as a number, its SDKs as a string: both are read.
    #[serde(deserialize_with = "id_string")]
    pub id: String,
    pub event_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub property_name: Option<String>,
    pub active: bool,
}

fn id_string<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id {
        Text(String),
        Number(u64),
    }
    Ok(match Id::deserialize(deserializer)? {
        Id::Text(text) => text,
        Id::Number(number) => number.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscription_ids_are_read_as_numbers_or_strings() {
        let number: AppWebhookSubscription =
            serde_json::from_str(r#"{"id":2100001,"eventType":"contact.creation","active":true}"#).unwrap();
        let text: AppWebhookSubscription = serde_json::from_str(
            r#"{"id":"2100001","eventType":"contact.creation","active":true,"createdAt":"2026-01-01T00:00:00Z"}"#,
        )
        .unwrap();
        assert_eq!(number, text);
        assert_eq!(number.id, "2100001");
        assert!(
            serde_json::from_str::<AppWebhookSubscription>(r#"{"id":true,"eventType":"x","active":true}"#).is_err()
        );
    }
}

/// A custom (behavioral) event definition, as `/events/v3/event-definitions` answers: a
/// private app's way onto a record's timeline. Occurrences name it by `fully_qualified_name`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventDefinition {
    pub id: String,
    /// The internal name, unique in the account (the path key of the definition).
    pub name: String,
    /// `pe{portalId}_{name}`, as occurrences name the event.
    pub fully_qualified_name: String,
    #[serde(default)]
    pub labels: EventDefinitionLabels,
    /// `CONTACT`, `COMPANY`, `DEAL` or `TICKET`.
    #[serde(default)]
    pub primary_object: String,
    /// Present when asked for (`GET` of one definition, or a list with `includeProperties`).
    #[serde(default)]
    pub properties: Vec<EventDefinitionProperty>,
}

/// `labels` of an event definition.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EventDefinitionLabels {
    #[serde(default)]
    pub singular: Option<String>,
    #[serde(default)]
    pub plural: Option<String>,
}

/// The body creating an event definition (`POST /events/v3/event-definitions`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventDefinitionInput {
    pub label: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `CONTACT`, `COMPANY`, `DEAL` or `TICKET`.
    pub primary_object: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub property_definitions: Vec<EventDefinitionProperty>,
}

/// A property of an event definition, as created (`POST .../{eventName}/property` or in the
/// definition's `propertyDefinitions`) and as HubSpot answers.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EventDefinitionProperty {
    pub name: String,
    pub label: String,
    /// `string`, `number`, `enumeration` or `datetime`.
    #[serde(rename = "type")]
    pub property_type: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<EventTemplateTokenOption>,
}
