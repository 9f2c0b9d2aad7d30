//! Property definitions and groups: adding them under the type's rules, and what uses them.

use serde_json::Value;

use super::Store;
use crate::clock::now_ms;
use crate::error::{ApiFailure, ApiResult};
use crate::schema::{self, GroupCreateBody, ObjectType, PropertyCreateBody, PropertyGroup};

impl Store {
    /// Validates a property definition against the type's schema and stores it; the JSON of
    /// the stored property.
    pub fn add_property(&mut self, t: ObjectType, body: PropertyCreateBody) -> ApiResult<Value> {
        let def = schema::validate_create(body, now_ms())?;
        if self.of(t).properties.contains_key(&def.name) {
            return Err(ApiFailure::already_exists(&format!("Property named '{}' already exists.", def.name)));
        }
        if !self.of(t).groups.iter().any(|g| g.name == def.group_name && !g.archived) {
            return Err(ApiFailure::validation(&format!("Property group {} does not exist.", def.group_name)));
        }
        if def.has_unique_value && self.custom_unique_count(t) >= 10 {
            return Err(ApiFailure::validation("An object type can have at most 10 unique value properties."));
        }
        let created = def.to_json();
        self.of_mut(t).properties.insert(def.name.clone(), def);
        Ok(created)
    }

    /// Stores a new property group; its JSON.
    pub fn add_group(&mut self, t: ObjectType, body: GroupCreateBody) -> ApiResult<Value> {
        let (Some(name), Some(label)) = (body.name.filter(|n| !n.is_empty()), body.label.filter(|l| !l.is_empty()))
        else {
            return Err(ApiFailure::validation("A property group needs a name and a label."));
        };
        if self.of(t).groups.iter().any(|g| g.name == name) {
            return Err(ApiFailure::already_exists(&format!("Property group named '{name}' already exists.")));
        }
        let group = PropertyGroup { name, label, display_order: body.display_order.unwrap_or(-1), archived: false };
        let created = group.to_json();
        self.of_mut(t).groups.push(group);
        Ok(created)
    }

    /// What uses a property: a custom object schema that requires, searches or displays it, a
    /// timeline token that writes it, and what the admin API declared.
    pub fn property_uses(&self, t: ObjectType, name: &str) -> Vec<String> {
        let mut uses: Vec<String> = self.of(t).properties.get(name).map(|def| def.used_by.clone()).unwrap_or_default();
        if let ObjectType::Custom(n) = t
            && let Some(schema) = self.schemas.get(&n).filter(|s| !s.archived)
        {
            let named = schema.required_properties.iter().any(|p| p == name)
                || schema.searchable_properties.iter().any(|p| p == name)
                || schema.primary_display_property.as_deref() == Some(name)
                || schema.secondary_display_properties.iter().any(|p| p == name);
            if named {
                uses.push(format!("the {} object schema", schema.name));
            }
        }
        uses.extend(self.timeline.templates_writing(t, name).map(|id| format!("timeline event template {id}")));
        uses
    }

    /// Number of unique-value properties a type has (HubSpot allows ten custom ones).
    pub fn custom_unique_count(&self, t: ObjectType) -> usize {
        self.of(t).properties.values().filter(|p| p.has_unique_value && !p.hubspot_defined && !p.archived).count()
    }
}
