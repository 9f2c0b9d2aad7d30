//! The properties and property groups HubSpot ships in a new portal, with their options. The
//! catalogue is data (`standard_properties.json`, compiled in and read once): HubSpot's default
//! properties per object type as its documentation lists them, with their internal names,
//! labels, types and field types, groups, the options of the standard enumerations, and the
//! read-only and calculated flags.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use serde::Deserialize;

use super::{ObjectType, OptionsSource, PropertyDef, PropertyGroup, PropertyOption};

/// The property group a custom type's properties land in when they name none.
pub const CUSTOM_OBJECT_GROUP: &str = "custom_object_information";

const CATALOGUE_JSON: &str = include_str!("standard_properties.json");

static CATALOGUE: LazyLock<Catalogue> =
    LazyLock::new(|| serde_json::from_str(CATALOGUE_JSON).expect("standard_properties.json is a valid catalogue"));

/// The catalogue file: one entry per built-in type, and one for every custom type.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Catalogue {
    contacts: TypeCatalogue,
    companies: TypeCatalogue,
    deals: TypeCatalogue,
    tickets: TypeCatalogue,
    custom: TypeCatalogue,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TypeCatalogue {
    groups: Vec<GroupEntry>,
    properties: Vec<PropertyEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupEntry {
    name: String,
    label: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PropertyEntry {
    name: String,
    label: String,
    #[serde(rename = "type")]
    type_: String,
    field_type: String,
    group_name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    options: Vec<OptionEntry>,
    #[serde(default)]
    options_from: Option<OptionsSource>,
    #[serde(default)]
    has_unique_value: bool,
    #[serde(default)]
    read_only_value: bool,
    #[serde(default)]
    calculated: bool,
    #[serde(default)]
    hidden: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OptionEntry {
    label: String,
    value: String,
}

impl Catalogue {
    fn of(&self, object_type: ObjectType) -> &TypeCatalogue {
        match object_type {
            ObjectType::Contacts => &self.contacts,
            ObjectType::Companies => &self.companies,
            ObjectType::Deals => &self.deals,
            ObjectType::Tickets => &self.tickets,
            ObjectType::Custom(_) => &self.custom,
        }
    }
}

/// The properties and groups a new portal has for one object type. Options that come from the
/// account's owners and pipelines are left empty; the store fills them in.
pub fn builtin_schema(object_type: ObjectType, now_ms: i64) -> (BTreeMap<String, PropertyDef>, Vec<PropertyGroup>) {
    let catalogue = CATALOGUE.of(object_type);
    let groups = catalogue
        .groups
        .iter()
        .enumerate()
        .map(|(i, g)| PropertyGroup {
            name: g.name.clone(),
            label: g.label.clone(),
            display_order: i as i64,
            archived: false,
        })
        .collect();
    let properties = catalogue
        .properties
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let def = PropertyDef {
                name: p.name.clone(),
                label: p.label.clone(),
                type_: p.type_.clone(),
                field_type: p.field_type.clone(),
                group_name: p.group_name.clone(),
                description: p.description.clone(),
                options: p
                    .options
                    .iter()
                    .enumerate()
                    .map(|(j, o)| PropertyOption {
                        label: o.label.clone(),
                        value: o.value.clone(),
                        description: None,
                        display_order: Some(j as i64),
                        hidden: false,
                    })
                    .collect(),
                display_order: i as i64,
                has_unique_value: p.has_unique_value,
                hidden: p.hidden,
                form_field: !p.read_only_value,
                hubspot_defined: true,
                read_only_value: p.read_only_value,
                calculated: p.calculated,
                options_from: p.options_from,
                used_by: vec![],
                created_at_ms: now_ms,
                updated_at_ms: now_ms,
                archived: false,
            };
            (def.name.clone(), def)
        })
        .collect();
    (properties, groups)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::field_type_allowed;

    #[test]
    fn builtin_properties_are_hubspot_defined() {
        for t in ObjectType::ALL.into_iter().chain([ObjectType::Custom(1)]) {
            let (props, groups) = builtin_schema(t, 0);
            assert!(props.values().all(|p| p.hubspot_defined));
            for p in props.values() {
                assert_eq!(field_type_allowed(&p.type_, &p.field_type), Some(true), "{t:?} {}", p.name);
                assert!(groups.iter().any(|g| g.name == p.group_name), "{t:?} {} names no group", p.name);
                let static_enumeration = p.type_ == "enumeration" && p.options_from.is_none() && !p.read_only_value;
                assert!(!static_enumeration || !p.options.is_empty(), "{t:?} {} has no options", p.name);
            }
            assert_eq!(props.len(), CATALOGUE.of(t).properties.len(), "{t:?} names a property twice");
            for name in t.always_returned().into_iter().chain(t.default_properties().iter().copied()) {
                assert!(props.contains_key(name), "{t:?} lacks {name}");
            }
        }
    }

    #[test]
    fn the_standard_properties_integrations_map_exist() {
        let named: [(ObjectType, &[&str]); 4] = [
            (
                ObjectType::Contacts,
                &[
                    "jobtitle",
                    "mobilephone",
                    "address",
                    "state",
                    "zip",
                    "country",
                    "hs_lead_status",
                    "hubspot_owner_id",
                ],
            ),
            (
                ObjectType::Companies,
                &["website", "description", "country", "numberofemployees", "annualrevenue", "hubspot_owner_id"],
            ),
            (ObjectType::Deals, &["dealtype", "hubspot_owner_id"]),
            (ObjectType::Tickets, &["hubspot_owner_id"]),
        ];
        for (t, names) in named {
            let (props, _) = builtin_schema(t, 0);
            for name in names {
                assert!(props.get(*name).is_some_and(|p| !p.read_only_value), "{t:?} lacks a writable {name}");
            }
        }
        let (contacts, _) = builtin_schema(ObjectType::Contacts, 0);
        let lead_status: Vec<&str> = contacts["hs_lead_status"].options.iter().map(|o| o.value.as_str()).collect();
        assert_eq!(lead_status[..3], ["NEW", "OPEN", "IN_PROGRESS"]);
        assert!(contacts["hs_object_id"].read_only_value && contacts["hs_email_domain"].calculated);
        assert_eq!(contacts["hubspot_owner_id"].options_from, Some(OptionsSource::Owners));
    }
}
