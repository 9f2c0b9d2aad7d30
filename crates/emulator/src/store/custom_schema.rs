//! Custom object types as stored: each schema's definition, and the association type ids
//! between a custom type and the types it associates with.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::clock::iso8601;
use crate::schema::ObjectType;

/// The `n` of the first custom type's objectTypeId `2-<n>`.
pub const FIRST_TYPE_NUMBER: u32 = 3_000_001;

/// A custom object type's definition.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CustomSchema {
    pub id: u32,
    pub name: String,
    pub singular_label: String,
    pub plural_label: String,
    pub description: Option<String>,
    pub required_properties: Vec<String>,
    pub searchable_properties: Vec<String>,
    pub primary_display_property: Option<String>,
    pub secondary_display_properties: Vec<String>,
    /// objectTypeIds of the types its objects can be associated with.
    pub associated_objects: Vec<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub archived: bool,
}

impl CustomSchema {
    pub fn object_type(&self) -> ObjectType {
        ObjectType::Custom(self.id)
    }

    pub fn fully_qualified_name(&self, portal_id: u64) -> String {
        format!("p{portal_id}_{}", self.name)
    }

    /// HubSpot's ObjectTypeDefinition: the schema without its properties and associations.
    pub fn definition_json(&self, portal_id: u64) -> Value {
        let mut v = json!({
            "id": self.id.to_string(),
            "objectTypeId": self.object_type().object_type_id(),
            "name": self.name,
            "fullyQualifiedName": self.fully_qualified_name(portal_id),
            "labels": { "singular": self.singular_label, "plural": self.plural_label },
            "requiredProperties": self.required_properties,
            "searchableProperties": self.searchable_properties,
            "secondaryDisplayProperties": self.secondary_display_properties,
            "portalId": portal_id,
            "archived": self.archived,
            "createdAt": iso8601(self.created_at_ms),
            "updatedAt": iso8601(self.updated_at_ms),
        });
        if let Some(p) = &self.primary_display_property {
            v["primaryDisplayProperty"] = json!(p);
        }
        if let Some(d) = &self.description {
            v["description"] = json!(d);
        }
        v
    }
}

/// The association type ids between a custom type and another type: (custom → other,
/// other → custom). HubSpot allocates these per account; numbers derived from the pair serve
/// the same purpose here.
pub fn association_type_ids(custom: u32, other_type_id: &str) -> (u32, u32) {
    let other: u32 = other_type_id.split('-').nth(1).and_then(|n| n.parse().ok()).unwrap_or(0);
    let slot =
        if other_type_id.starts_with("2-") { 50 + other.saturating_sub(FIRST_TYPE_NUMBER) % 50 } else { other % 50 };
    let forward = 10_000 + custom.saturating_sub(FIRST_TYPE_NUMBER) * 200 + slot * 2;
    (forward, forward + 1)
}
