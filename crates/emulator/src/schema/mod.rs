//! Object types, property definitions and property groups: what HubSpot ships in a new
//! portal, and the rules HubSpot applies to custom properties and to property values.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::clock::iso8601;
use crate::error::{ApiFailure, ApiResult};
use hubspot::webhook::subscription_prefix;

pub mod builtin;

/// HubSpot's answer to a path naming no object type it knows.
pub fn unknown_object_type(s: &str) -> ApiFailure {
    ApiFailure::validation(&format!("Unable to infer object type from: {s}"))
}

/// The CRM object types the emulator serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ObjectType {
    Contacts,
    Companies,
    Deals,
    Tickets,
    /// A custom object type defined through `/crm/v3/schemas`: objectTypeId `2-<n>`.
    Custom(u32),
}

impl ObjectType {
    /// The types every account has.
    pub const ALL: [ObjectType; 4] =
        [ObjectType::Contacts, ObjectType::Companies, ObjectType::Deals, ObjectType::Tickets];

    /// Accepts what HubSpot accepts in paths: the plural name, the singular name or the
    /// object type id (`0-1`, `0-2`, `0-3`, `0-5`).
    pub fn parse(s: &str) -> ApiResult<Self> {
        match s.to_ascii_lowercase().as_str() {
            "contacts" | "contact" | "0-1" => Ok(ObjectType::Contacts),
            "companies" | "company" | "0-2" => Ok(ObjectType::Companies),
            "deals" | "deal" | "0-3" => Ok(ObjectType::Deals),
            "tickets" | "ticket" | "0-5" => Ok(ObjectType::Tickets),
            other => match other.strip_prefix("2-").and_then(|n| n.parse::<u32>().ok()) {
                Some(n) => Ok(ObjectType::Custom(n)),
                None => Err(unknown_object_type(s)),
            },
        }
    }

    /// HubSpot's object type id: `0-1` for contacts, `2-<n>` for custom objects.
    pub fn object_type_id(self) -> String {
        match self {
            ObjectType::Contacts => "0-1".into(),
            ObjectType::Companies => "0-2".into(),
            ObjectType::Deals => "0-3".into(),
            ObjectType::Tickets => "0-5".into(),
            ObjectType::Custom(n) => format!("2-{n}"),
        }
    }

    /// The prefix of the type's webhook subscription types (`contact`); custom objects have
    /// the generic `object.*` events, which name the type in `objectTypeId`.
    pub fn event_prefix(self) -> &'static str {
        match self {
            ObjectType::Custom(_) => "object",
            t => subscription_prefix(t.plural()),
        }
    }

    /// Plural name used in paths and scopes (`contacts`; `custom` for every custom type).
    pub fn plural(self) -> &'static str {
        match self {
            ObjectType::Contacts => "contacts",
            ObjectType::Companies => "companies",
            ObjectType::Deals => "deals",
            ObjectType::Tickets => "tickets",
            ObjectType::Custom(_) => "custom",
        }
    }

    /// The upper-case singular HubSpot uses in messages (`CONTACT`); a custom type's id.
    pub fn shouting(self) -> String {
        match self {
            ObjectType::Contacts => "CONTACT".into(),
            ObjectType::Companies => "COMPANY".into(),
            ObjectType::Deals => "DEAL".into(),
            ObjectType::Tickets => "TICKET".into(),
            ObjectType::Custom(_) => self.object_type_id(),
        }
    }

    /// `hs_createdate` for custom objects, `createdate` for the others.
    pub fn create_date_property(self) -> &'static str {
        match self {
            ObjectType::Custom(_) => "hs_createdate",
            _ => "createdate",
        }
    }

    /// `lastmodifieddate` for contacts, `hs_lastmodifieddate` for the others.
    pub fn last_modified_property(self) -> &'static str {
        match self {
            ObjectType::Contacts => "lastmodifieddate",
            _ => "hs_lastmodifieddate",
        }
    }

    /// Properties a search's `query` looks in.
    pub fn builtin_searchable(self) -> &'static [&'static str] {
        match self {
            ObjectType::Contacts => &["firstname", "lastname", "email", "phone", "company", "website"],
            ObjectType::Companies => &["name", "domain", "website", "phone"],
            ObjectType::Deals => &["dealname"],
            ObjectType::Tickets => &["subject", "content"],
            ObjectType::Custom(_) => &[],
        }
    }

    /// Properties a list or read without `properties` returns.
    pub fn default_properties(self) -> &'static [&'static str] {
        match self {
            ObjectType::Contacts => &["firstname", "lastname", "email"],
            ObjectType::Companies => &["name", "domain"],
            ObjectType::Deals => &["dealname", "amount", "closedate", "pipeline", "dealstage"],
            ObjectType::Tickets => {
                &["subject", "content", "hs_pipeline", "hs_pipeline_stage", "hs_ticket_category", "hs_ticket_priority"]
            }
            ObjectType::Custom(_) => &[],
        }
    }

    /// Properties every object answer carries, whatever was asked for.
    pub fn always_returned(self) -> [&'static str; 3] {
        ["hs_object_id", self.create_date_property(), self.last_modified_property()]
    }

    /// Values HubSpot requires when an object of a built-in type is created (a custom type's
    /// come from its schema).
    pub fn builtin_required_on_create(self) -> &'static [&'static str] {
        match self {
            // A ticket needs its status; its pipeline defaults to the account's default one.
            ObjectType::Tickets => &["hs_pipeline_stage"],
            _ => &[],
        }
    }

    // Tickets predate the `crm.objects.*` scope names: HubSpot guards their objects and their
    // properties with the one `tickets` scope.

    pub fn read_scope(self) -> String {
        match self {
            ObjectType::Tickets => "tickets".into(),
            _ => format!("crm.objects.{}.read", self.plural()),
        }
    }

    pub fn write_scope(self) -> String {
        match self {
            ObjectType::Tickets => "tickets".into(),
            _ => format!("crm.objects.{}.write", self.plural()),
        }
    }

    pub fn schema_read_scope(self) -> String {
        match self {
            ObjectType::Tickets => "tickets".into(),
            _ => format!("crm.schemas.{}.read", self.plural()),
        }
    }

    pub fn schema_write_scope(self) -> String {
        match self {
            ObjectType::Tickets => "tickets".into(),
            _ => format!("crm.schemas.{}.write", self.plural()),
        }
    }
}

/// Id of the ticket pipeline every account starts with.
pub const DEFAULT_TICKET_PIPELINE: &str = "0";

/// One option of an enumeration property.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PropertyOption {
    pub label: String,
    pub value: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub display_order: Option<i64>,
    #[serde(default)]
    pub hidden: bool,
}

/// Account data that supplies an enumeration's options.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum OptionsSource {
    /// The owners' ids (`hubspot_owner_id`).
    Owners,
    /// The ids of the type's pipelines (`pipeline`, `hs_pipeline`).
    Pipelines,
    /// The ids of every stage of the type's pipelines (`dealstage`, `hs_pipeline_stage`).
    PipelineStages,
}

/// A property definition as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PropertyDef {
    pub name: String,
    pub label: String,
    pub type_: String,
    pub field_type: String,
    pub group_name: String,
    pub description: String,
    pub options: Vec<PropertyOption>,
    pub display_order: i64,
    pub has_unique_value: bool,
    pub hidden: bool,
    pub form_field: bool,
    pub hubspot_defined: bool,
    /// Values only HubSpot writes (ids, timestamps).
    pub read_only_value: bool,
    /// HubSpot computes the value from other data (`calculated` in its JSON).
    #[serde(default)]
    pub calculated: bool,
    /// Where the options come from when the account's data defines them (owners, pipelines)
    /// rather than the definition; the store keeps `options` in step with that data.
    #[serde(default)]
    pub options_from: Option<OptionsSource>,
    /// What else in the account uses the property (a workflow, a list, a report), as
    /// `/_emulator/properties/{t}/{name}/used-by` declares it; such a property cannot be archived.
    #[serde(default)]
    pub used_by: Vec<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub archived: bool,
}

impl PropertyDef {
    /// HubSpot's JSON for a property.
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "updatedAt": iso8601(self.updated_at_ms),
            "createdAt": iso8601(self.created_at_ms),
            "name": self.name,
            "label": self.label,
            "type": self.type_,
            "fieldType": self.field_type,
            "description": self.description,
            "groupName": self.group_name,
            "options": self.options.iter().enumerate().map(|(i, o)| json!({
                "label": o.label,
                "value": o.value,
                "description": o.description.clone().unwrap_or_default(),
                "displayOrder": o.display_order.unwrap_or(i as i64),
                "hidden": o.hidden,
            })).collect::<Vec<_>>(),
            "displayOrder": self.display_order,
            "calculated": self.calculated,
            "externalOptions": self.options_from == Some(OptionsSource::Owners),
            "hasUniqueValue": self.has_unique_value,
            "hidden": self.hidden,
            "modificationMetadata": {
                "archivable": !self.hubspot_defined,
                "readOnlyDefinition": self.hubspot_defined,
                "readOnlyValue": self.read_only_value,
            },
            "formField": self.form_field,
            "archived": self.archived,
        });
        if self.hubspot_defined {
            v["hubspotDefined"] = Value::Bool(true);
        }
        if self.options_from == Some(OptionsSource::Owners) {
            v["referencedObjectType"] = json!("OWNER");
        }
        v
    }

    /// Checks a value before it is written; HubSpot's per-property error detail on failure.
    pub fn check_value(&self, value: &str) -> Result<(), Value> {
        if value.is_empty() {
            return Ok(());
        }
        let invalid = |error: &str, message: String| {
            Err(json!({
                "isValid": false,
                "message": message,
                "error": error,
                "name": self.name,
                "localizedErrorMessage": message,
            }))
        };
        // HubSpot checks the shape of contact emails.
        if self.name == "email" && self.hubspot_defined && !looks_like_email(value) {
            return invalid("INVALID_EMAIL", format!("Email address {value} is invalid"));
        }
        match self.type_.as_str() {
            "number" if value.trim().parse::<f64>().map(|n| !n.is_finite()).unwrap_or(true) => {
                invalid("INVALID_FLOAT", format!("{value} was not a valid number."))
            }
            "bool" if !matches!(value, "true" | "false") => {
                invalid("INVALID_BOOLEAN", format!("{value} was not a valid boolean."))
            }
            "enumeration" => {
                // Checkboxes hold several values separated by semicolons.
                let unknown = value.split(';').find(|v| !self.options.iter().any(|o| o.value == *v));
                match unknown {
                    Some(v) if self.options_from == Some(OptionsSource::Owners) => {
                        invalid("INVALID_OWNER_ID", format!("{v} is not a valid owner id"))
                    }
                    Some(v) => invalid(
                        "INVALID_OPTION",
                        format!(
                            "{v} was not one of the allowed options: [{}]",
                            self.options.iter().map(|o| o.value.as_str()).collect::<Vec<_>>().join(", ")
                        ),
                    ),
                    None => Ok(()),
                }
            }
            "date" | "datetime" if !looks_like_date(value) => {
                invalid("INVALID_DATE", format!("{value} was not a valid date or epoch milliseconds."))
            }
            _ => Ok(()),
        }
    }
}

/// `local@domain.tld`, without spaces.
fn looks_like_email(value: &str) -> bool {
    let value = value.trim();
    match value.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.contains('@')
                && domain.split('.').count() >= 2
                && domain.split('.').all(|part| !part.is_empty())
                && !value.contains(char::is_whitespace)
        }
        None => false,
    }
}

/// Epoch milliseconds, or an ISO 8601 date / date-time.
fn looks_like_date(value: &str) -> bool {
    if value.parse::<i64>().is_ok() {
        return true;
    }
    let b = value.as_bytes();
    b.len() >= 10
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[5..7].iter().all(u8::is_ascii_digit)
        && b[7] == b'-'
        && b[8..10].iter().all(u8::is_ascii_digit)
}

/// A property group as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PropertyGroup {
    pub name: String,
    pub label: String,
    pub display_order: i64,
    pub archived: bool,
}

impl PropertyGroup {
    pub fn to_json(&self) -> Value {
        json!({ "name": self.name, "label": self.label, "displayOrder": self.display_order, "archived": self.archived })
    }
}

/// Valid `type` → `fieldType` pairs.
pub fn field_type_allowed(type_: &str, field_type: &str) -> Option<bool> {
    let allowed: &[&str] = match type_ {
        "bool" => &["booleancheckbox"],
        "enumeration" => &["checkbox", "radio", "select", "booleancheckbox"],
        "date" | "datetime" => &["date"],
        "string" => &["text", "textarea", "file", "html", "phonenumber"],
        "number" => &["number", "calculation_equation"],
        "phone_number" => &["phonenumber"],
        _ => return None,
    };
    Some(allowed.contains(&field_type))
}

/// Body of a property create call, with every field optional so that missing ones are
/// reported the way HubSpot does rather than as a JSON error.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PropertyCreateBody {
    pub name: Option<String>,
    pub label: Option<String>,
    #[serde(rename = "type")]
    pub type_: Option<String>,
    pub field_type: Option<String>,
    pub group_name: Option<String>,
    pub description: Option<String>,
    #[serde(default)]
    pub options: Vec<PropertyOption>,
    pub display_order: Option<i64>,
    #[serde(default)]
    pub has_unique_value: bool,
    #[serde(default)]
    pub hidden: bool,
    pub form_field: Option<bool>,
}

/// Body of a property group create call; missing fields are reported as HubSpot reports them.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupCreateBody {
    pub name: Option<String>,
    pub label: Option<String>,
    pub display_order: Option<i64>,
}

/// Body of a property update: every field optional; `options` replaces the whole list.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PropertyUpdateBody {
    pub label: Option<String>,
    #[serde(rename = "type")]
    pub type_: Option<String>,
    pub field_type: Option<String>,
    pub group_name: Option<String>,
    pub description: Option<String>,
    pub options: Option<Vec<PropertyOption>>,
    pub display_order: Option<i64>,
    pub hidden: Option<bool>,
    pub form_field: Option<bool>,
}

fn detail(message: String, code: &str, field: &str) -> Value {
    json!({ "message": message, "code": code, "context": { "field": [field] } })
}

/// Checks a create body field by field and builds the definition; HubSpot's 400 with every
/// problem listed otherwise.
pub fn validate_create(body: PropertyCreateBody, now_ms: i64) -> ApiResult<PropertyDef> {
    let mut problems = vec![];
    let mut required = |v: &Option<String>, field: &str| -> String {
        match v.as_deref().map(str::trim) {
            Some(s) if !s.is_empty() => s.to_string(),
            _ => {
                problems.push(detail(format!("{field} is required"), "REQUIRED_FIELD", field));
                String::new()
            }
        }
    };
    let name = required(&body.name, "name");
    let label = required(&body.label, "label");
    let type_ = required(&body.type_, "type");
    let field_type = required(&body.field_type, "fieldType");
    let group_name = required(&body.group_name, "groupName");
    if !name.is_empty() && !valid_property_name(&name) {
        problems.push(detail(
            format!("Property name {name} is invalid: it must start with a lowercase letter and contain only lowercase letters, numbers and underscores"),
            "INVALID_PROPERTY_NAME",
            "name",
        ));
    }
    if !type_.is_empty() && !field_type.is_empty() {
        match field_type_allowed(&type_, &field_type) {
            None => problems.push(detail(
                format!("{type_} is not a valid property type: expected one of bool, date, datetime, enumeration, number, phone_number, string"),
                "INVALID_TYPE",
                "type",
            )),
            Some(false) => problems.push(detail(
                format!("fieldType {field_type} is not valid for a property of type {type_}"),
                "INVALID_FIELD_TYPE",
                "fieldType",
            )),
            Some(true) => {}
        }
    }
    problems.extend(option_problems(&body.options));
    if !problems.is_empty() {
        return Err(property_validation_failure(problems));
    }
    Ok(PropertyDef {
        name,
        label,
        type_,
        field_type,
        group_name,
        description: body.description.unwrap_or_default(),
        options: body.options,
        display_order: body.display_order.unwrap_or(-1),
        has_unique_value: body.has_unique_value,
        hidden: body.hidden,
        form_field: body.form_field.unwrap_or(false),
        hubspot_defined: false,
        read_only_value: false,
        calculated: false,
        options_from: None,
        used_by: vec![],
        created_at_ms: now_ms,
        updated_at_ms: now_ms,
        archived: false,
    })
}

/// Applies an update to a custom property, with the same checks as create.
pub fn apply_update(def: &mut PropertyDef, body: PropertyUpdateBody, now_ms: i64) -> ApiResult<()> {
    let type_ = body.type_.clone().unwrap_or_else(|| def.type_.clone());
    let field_type = body.field_type.clone().unwrap_or_else(|| def.field_type.clone());
    let mut problems = vec![];
    match field_type_allowed(&type_, &field_type) {
        None => problems.push(detail(format!("{type_} is not a valid property type"), "INVALID_TYPE", "type")),
        Some(false) => problems.push(detail(
            format!("fieldType {field_type} is not valid for a property of type {type_}"),
            "INVALID_FIELD_TYPE",
            "fieldType",
        )),
        Some(true) => {}
    }
    if let Some(options) = &body.options {
        problems.extend(option_problems(options));
    }
    if body.label.as_deref().is_some_and(|l| l.trim().is_empty()) {
        problems.push(detail("label must not be empty".into(), "REQUIRED_FIELD", "label"));
    }
    if !problems.is_empty() {
        return Err(property_validation_failure(problems));
    }
    def.type_ = type_;
    def.field_type = field_type;
    if let Some(v) = body.label {
        def.label = v;
    }
    if let Some(v) = body.group_name {
        def.group_name = v;
    }
    if let Some(v) = body.description {
        def.description = v;
    }
    if let Some(v) = body.options {
        def.options = v;
    }
    if let Some(v) = body.display_order {
        def.display_order = v;
    }
    if let Some(v) = body.hidden {
        def.hidden = v;
    }
    if let Some(v) = body.form_field {
        def.form_field = v;
    }
    def.updated_at_ms = now_ms;
    Ok(())
}

fn option_problems(options: &[PropertyOption]) -> Vec<Value> {
    let mut problems = vec![];
    let mut seen = std::collections::BTreeSet::new();
    for o in options {
        if o.label.trim().is_empty() || o.value.trim().is_empty() {
            problems.push(detail("every option needs a label and a value".into(), "INVALID_OPTION", "options"));
        } else if !seen.insert(o.value.as_str()) {
            problems.push(detail(format!("option value {} is used twice", o.value), "DUPLICATE_OPTION", "options"));
        }
    }
    problems
}

fn property_validation_failure(problems: Vec<Value>) -> ApiFailure {
    let summary: Vec<&str> = problems.iter().filter_map(|p| p["message"].as_str()).collect();
    ApiFailure::validation(&format!("Property definition is invalid: {}", summary.join("; "))).with_errors(problems)
}

fn valid_property_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

#[cfg(test)]
mod tests;
