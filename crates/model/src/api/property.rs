//! `HubSpotProperty`: one custom HubSpot property (and the property group it lives in) managed
//! as code.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use super::mapping::IntegrationRef;

/// Condition types set on a `HubSpotProperty`.
pub mod condition_types {
    pub const READY: &str = "Ready";
    pub const SYNCED: &str = "Synced";
}

/// Reasons of the `Synced` condition that describe HubSpot's side.
pub mod synced_reasons {
    /// The property matches the spec; nothing was written.
    pub const IN_SYNC: &str = "InSync";
    /// The property differs from the spec (`status.drift` lists the fields) and was not changed.
    pub const DRIFTED: &str = "Drifted";
    /// The property differed from the spec and was updated.
    pub const UPDATED: &str = "Updated";
    /// The property did not exist and was created.
    pub const CREATED: &str = "Created";
    /// An existing property of the same name was taken over.
    pub const ADOPTED: &str = "Adopted";
    /// The property does not exist and the management policy forbids creating it.
    pub const NOT_FOUND: &str = "NotFound";
    /// The property is defined by HubSpot and is never modified.
    pub const HUBSPOT_DEFINED: &str = "HubSpotDefined";
    /// The spec asks for a change HubSpot does not allow (type or uniqueness).
    pub const CONFLICT: &str = "Conflict";
    /// HubSpot could not be asked or refused a call; `status.lastError` has the details.
    pub const FAILED: &str = "Failed";
}

/// A custom HubSpot property, declared in Git and kept as declared: created when missing,
/// adopted when a property of the same name exists, repaired (or only reported) when changed
/// in HubSpot, and archived on deletion when `deletionPolicy` is `Delete`.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "hubspot.io",
    version = "v1alpha1",
    kind = "HubSpotProperty",
    namespaced,
    status = "HubSpotPropertyStatus",
    shortname = "hsp",
    category = "hubspot",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Synced\")].reason"}"#,
    printcolumn = r#"{"name":"Object","type":"string","jsonPath":".spec.objectType"}"#,
    printcolumn = r#"{"name":"Name","type":"string","jsonPath":".spec.name","description":"HubSpot internal property name"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(
    validation = Rule::new(
        "(self.type == 'bool' && self.fieldType == 'booleancheckbox') || \
         (self.type == 'enumeration' && self.fieldType in ['checkbox', 'radio', 'select', 'booleancheckbox']) || \
         ((self.type == 'date' || self.type == 'datetime') && self.fieldType == 'date') || \
         (self.type == 'string' && self.fieldType in ['text', 'textarea', 'file', 'html', 'phonenumber']) || \
         (self.type == 'number' && self.fieldType == 'number') || \
         (self.type == 'phone_number' && self.fieldType == 'phonenumber')"
    ).message("fieldType is not valid for this type: bool→booleancheckbox; enumeration→checkbox|radio|select|booleancheckbox; date, datetime→date; string→text|textarea|file|html|phonenumber; number→number; phone_number→phonenumber"),
    validation = Rule::new("self.type != 'enumeration' || (has(self.options) && size(self.options) > 0)")
        .message("a property of type enumeration needs options"),
    validation = Rule::new("!has(self.group) || self.group.name == self.groupName")
        .message("group.name must equal groupName"),
)]
#[serde(rename_all = "camelCase")]
pub struct HubSpotPropertySpec {
    /// The `HubSpotIntegration` (same namespace) whose portal and credentials are used.
    pub integration_ref: IntegrationRef,
    /// HubSpot object type the property belongs to: contacts, companies, deals, tickets, or a
    /// custom object type id.
    #[schemars(length(min = 1))]
    pub object_type: String,
    /// HubSpot internal name of the property (lowercase letters, digits and underscores,
    /// starting with a letter). Immutable: HubSpot cannot rename a property.
    #[x_kube(
        validation = Rule::new("self == oldSelf").message("name is immutable"),
        validation = Rule::new("self.matches('^[a-z][a-z0-9_]*$')")
            .message("name must start with a lowercase letter and contain only lowercase letters, digits and underscores"),
    )]
    #[schemars(length(min = 1, max = 100))]
    pub name: String,
    /// Label shown in HubSpot.
    #[schemars(length(min = 1))]
    pub label: String,
    /// Description shown in HubSpot. When unset, HubSpot's value is left alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Data type of the property's values. HubSpot does not allow changing it once created.
    #[serde(rename = "type")]
    pub type_: PropertyType,
    /// How the property is edited in HubSpot's forms and UI; must suit `type`.
    pub field_type: FieldType,
    /// Internal name of the property group the property belongs to.
    #[schemars(length(min = 1))]
    pub group_name: String,
    /// Creates the group `groupName` with this label when it does not exist. Without it the
    /// group must exist already.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<PropertyGroupSpec>,
    /// Choices of an `enumeration` property, in order. They replace HubSpot's whole list.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<PropertyOptionSpec>,
    /// Whether every record must have a different value (usable as `idProperty`). Immutable:
    /// HubSpot cannot change it once the property exists.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self == oldSelf").message("hasUniqueValue is immutable"))]
    pub has_unique_value: bool,
    /// Hides the property in HubSpot's UI. When unset, HubSpot's value is left alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden: Option<bool>,
    /// Whether the property can be used in HubSpot forms. When unset, HubSpot's value is left alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub form_field: Option<bool>,
    /// Position of the property within its group (lower first; -1 places it last). When
    /// unset, HubSpot's value is left alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_order: Option<i32>,
    /// What happens in HubSpot when this resource is deleted: `Orphan` (default) leaves the
    /// property, `Delete` archives it (the resource goes away only once HubSpot confirms).
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// `Manage` (default) creates and repairs the property; `ObserveOnly` adopts and reports
    /// drift but never writes to HubSpot.
    #[serde(default)]
    pub management_policy: ManagementPolicy,
}

/// Data types of HubSpot properties.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PropertyType {
    Bool,
    Date,
    Datetime,
    Enumeration,
    Number,
    PhoneNumber,
    String,
}

impl PropertyType {
    /// HubSpot's name of the type.
    pub fn as_str(self) -> &'static str {
        match self {
            PropertyType::Bool => "bool",
            PropertyType::Date => "date",
            PropertyType::Datetime => "datetime",
            PropertyType::Enumeration => "enumeration",
            PropertyType::Number => "number",
            PropertyType::PhoneNumber => "phone_number",
            PropertyType::String => "string",
        }
    }
}

/// Field types (UI controls) of HubSpot properties.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    Booleancheckbox,
    Checkbox,
    Date,
    File,
    Html,
    Number,
    Phonenumber,
    Radio,
    Select,
    Text,
    Textarea,
}

impl FieldType {
    /// HubSpot's name of the field type.
    pub fn as_str(self) -> &'static str {
        match self {
            FieldType::Booleancheckbox => "booleancheckbox",
            FieldType::Checkbox => "checkbox",
            FieldType::Date => "date",
            FieldType::File => "file",
            FieldType::Html => "html",
            FieldType::Number => "number",
            FieldType::Phonenumber => "phonenumber",
            FieldType::Radio => "radio",
            FieldType::Select => "select",
            FieldType::Text => "text",
            FieldType::Textarea => "textarea",
        }
    }
}

/// A property group to create when missing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PropertyGroupSpec {
    /// Internal name of the group; must equal `groupName`.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Label of the group shown in HubSpot.
    #[schemars(length(min = 1))]
    pub label: String,
}

/// One choice of an enumeration property.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PropertyOptionSpec {
    /// Text shown in HubSpot.
    pub label: String,
    /// Value stored on records.
    pub value: String,
    /// Position among the options; defaults to the option's index in this list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_order: Option<i32>,
    /// Hides the option in HubSpot's forms.
    #[serde(default)]
    pub hidden: bool,
}

/// What deleting the resource does in HubSpot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DeletionPolicy {
    /// Leave the property in HubSpot.
    #[default]
    Orphan,
    /// Archive the property in HubSpot.
    Delete,
}

/// How far the operator may act on HubSpot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ManagementPolicy {
    /// Create the property when missing and repair drift.
    #[default]
    Manage,
    /// Adopt the property and report drift; never write to HubSpot.
    ObserveOnly,
}

/// Observed state of a `HubSpotProperty`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HubSpotPropertyStatus {
    /// `Ready` (the property exists as declared, or is observed) and `Synced` (how HubSpot's
    /// side compares with the spec: InSync, Drifted, Updated, Created, Adopted, NotFound,
    /// HubSpotDefined, Conflict, Failed).
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The generation the conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Whether HubSpot defines this property itself (such properties are never modified).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hubspot_defined: Option<bool>,
    /// When the property was read from HubSpot on the last visit that changed this status. A
    /// visit that finds nothing new writes no status; the time of every visit is the metric
    /// `hubspot_operator_property_last_sync_timestamp_seconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<Time>,
    /// Spec fields whose value differs in HubSpot (left as they are under `ObserveOnly`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drift: Vec<String>,
    /// The last failed HubSpot call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<LastError>,
    /// The last `hubspot.io/reconcile-requested-at` value a full reconcile handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_reconcile_at: Option<String>,
}

/// A failed HubSpot call, as HubSpot described it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastError {
    /// HubSpot's message, or why HubSpot could not be asked.
    pub message: String,
    /// HubSpot's correlation id of the failed call, for HubSpot support.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// When the call failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<Time>,
}
